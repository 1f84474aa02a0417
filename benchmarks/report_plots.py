"""The PNG plots of benchmarks/report (skipped, not fatal, without matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from report_sections import flatten
from report_steps import Results, Step


def plt_or_none() -> Any:
    try:
        import matplotlib as mpl
    except ImportError:
        return None
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_roc(pairs_steps: list[Step], out: Path, title: str) -> Path | None:
    from gateway.eval.plots import plot_roc_det

    curves = {}
    for s in pairs_steps:
        if s.data and "scores" in s.data:
            curves[s.data["pipeline"]] = (s.data["scores"]["genuine"], s.data["scores"]["impostor"])
    if not curves:
        return None
    return plot_roc_det(curves, out, title, (1e-2, 1e-3))


def plot_latency(face: Step, out: Path) -> Path | None:
    """Per-stage medians (bench_face.py ``stages_ms``) and the whole step vs plain OpenCV."""
    plt = plt_or_none()
    if plt is None or not isinstance(face.data, dict):
        return None
    stages = face.data.get("stages_ms")
    step = face.data.get("step_ms") or {}
    if not isinstance(stages, dict) or not stages:
        flat = flatten(face.data)
        stages = {k: v for k, v in flat.items() if k.lower().endswith(("_ms", ".ms"))}
        if not stages:
            return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), width_ratios=(3, 2))
    names = list(stages)
    ax1.barh(names, [float(stages[k]) for k in names], color="tab:blue")
    ax1.set(xlabel="ms (median)", title="Face pipeline stages (bench_face.py)")
    ax1.invert_yaxis()
    bars = {
        k: float(step[k]) for k in ("gateway", "opencv", "gateway_opencv_embedder") if k in step
    }
    if bars:
        ax2.bar(
            list(bars), list(bars.values()), color=["tab:blue", "tab:grey", "tab:cyan"][: len(bars)]
        )
        ax2.set(ylabel="ms (median)", title="Whole step: detect+embed+1:N (10k)")
        ax2.tick_params(axis="x", labelrotation=15)
    else:
        ax2.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_search(res: dict[str, Any], out: Path) -> Path | None:
    plt = plt_or_none()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.plot(res["sizes"], res["numpy_ms"], "o-", label="numpy matmul + top-2 (reference)")
    if len(res["gateway_ms"]) == len(res["sizes"]):
        ax.plot(res["sizes"], res["gateway_ms"], "s-", label="gateway.face.gallery.Gallery.search")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="gallery size (templates)",
        ylabel="ms per search (median)",
        title="1:N search time vs gallery size (128-d)",
    )
    ax.axvline(100_000, color="grey", ls=":", lw=0.8)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_enrolment(rows: list[dict[str, Any]], out: Path) -> Path | None:
    plt = plt_or_none()
    if plt is None or not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for pipe in sorted({r["pipeline"] for r in rows}):
        for flip in (False, True):
            for gate in (False, True):
                sel = [
                    r
                    for r in rows
                    if r["pipeline"] == pipe
                    and r["flip"] == flip
                    and r["quality_gate"] == gate
                    and r["fusion"] == "max"
                    and r.get("fnir@0.01") is not None
                ]
                if not sel:
                    continue
                ax.plot(
                    [r["enrol_images"] for r in sel],
                    [r["fnir@0.01"] for r in sel],
                    "o-",
                    label=f"{pipe}, flip {'on' if flip else 'off'}, gate {'on' if gate else 'off'}",
                )
    ax.set(
        xlabel="enrolment images per person",
        ylabel="FNIR at FPIR 1%",
        xticks=[1, 3, 5],
        title="Enrolment count, flip fusion, quality gate (LFW dev, max fusion)",
    )
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def make_plots(res: Results, out: Path) -> dict[str, Path | None]:
    """Every plot the results allow, keyed by name (None: not drawn)."""
    plots: dict[str, Path | None] = {}
    plots["roc"] = (
        plot_roc(res.pairs_steps, out / "roc_det.png", res.pairs_file.name)
        if res.pairs_steps
        else None
    )
    face = res.steps.get("face")
    plots["latency"] = plot_latency(face, out / "latency.png") if face is not None else None
    plots["search"] = plot_search(res.search, out / "search_scaling.png") if res.search else None
    erows = res.enrol_rows
    plots["enrolment"] = plot_enrolment(erows, out / "enrolment.png") if erows else None
    return plots
