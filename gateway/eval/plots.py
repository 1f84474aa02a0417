"""ROC / DET plots (matplotlib, the optional ``eval`` extra)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.errors import GatewayError
from gateway.eval import metrics


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend; a clear error when the extra is missing."""
    try:
        import matplotlib as mpl
    except ImportError as exc:
        raise GatewayError("plots need matplotlib: pip install 'access-gateway[eval]'") from exc
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    return plt


Curves = Mapping[str, tuple[npt.ArrayLike, npt.ArrayLike]]


def plot_roc_det(curves: Curves, out: Path, title: str, fars: Sequence[float] = ()) -> Path:
    """ROC (TAR vs FAR, log x) and DET (FNMR vs FMR, log-log) of (genuine, impostor) sets."""
    plt = pyplot()
    fig, (ax_roc, ax_det) = plt.subplots(1, 2, figsize=(11, 4.5))
    for label, (gen, imp) in curves.items():
        _, far, tar = metrics.roc(gen, imp)
        n_imp = np.asarray(imp).size
        n_gen = np.asarray(gen).size
        floor_far = 1.0 / n_imp
        floor_frr = 1.0 / n_gen
        ax_roc.plot(np.maximum(far, floor_far / 2), tar, label=label)
        ax_det.plot(
            np.maximum(far, floor_far / 2), np.maximum(1.0 - tar, floor_frr / 2), label=label
        )
    for f in fars:
        ax_roc.axvline(f, color="grey", lw=0.5, ls=":")
        ax_det.axvline(f, color="grey", lw=0.5, ls=":")
    ax_roc.set(xscale="log", xlabel="FAR (false accept rate)", ylabel="TAR", title=f"ROC - {title}")
    ax_det.set(xscale="log", yscale="log", xlabel="FMR", ylabel="FNMR", title=f"DET - {title}")
    for ax in (ax_roc, ax_det):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.text(
        0.5,
        0.005,
        "rates below 1/N (N = comparisons) are drawn at 1/(2N): not measurable there",
        ha="center",
        fontsize=7,
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
