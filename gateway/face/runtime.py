"""onnxruntime session creation with providers, thread count and clear load errors."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from gateway.errors import ModelError

log = logging.getLogger(__name__)


def available_providers() -> list[str]:
    """Execution providers this onnxruntime build offers."""
    import onnxruntime as ort

    return list(ort.get_available_providers())


def ort_session(model_path: Path, providers: tuple[str, ...], threads: int) -> Any:
    """An InferenceSession on the first available of ``providers`` (CPU always appended)."""
    import onnxruntime as ort

    have = set(ort.get_available_providers())
    chosen = [p for p in providers if p in have]
    missing = [p for p in providers if p not in have]
    if missing:
        log.warning("face: execution providers %s not available, using %s", missing, chosen)
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    # Several sessions run one after another in the same thread: spinning pool threads of
    # one session would steal the (few) cores from the next one.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(model_path), sess_options=opts, providers=chosen)
    except Exception as exc:
        raise ModelError(f"onnxruntime cannot load {model_path}: {exc}") from exc
