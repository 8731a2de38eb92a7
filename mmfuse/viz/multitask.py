"""The multi-task picture of a run: each task's loss and weight, and the conflict between tasks (cosine of
their gradients on the shared parameters), per epoch."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from mmfuse.viz.logs import Series, read_lightning_logs

PANELS = (("train/loss/", "task loss (train, epoch mean)"), ("weight/", "loss weight (epoch mean)"),
          ("conflict/cos/", "cos(∇L_a, ∇L_b) on shared params"))


def _by_epoch(series: Series, tag: str) -> tuple[list[float], list[float]]:
    """``tag``'s values against the epoch they were logged in (the ``epoch`` column at that step)."""
    epoch_at = dict(series.get("epoch", []))
    xs, ys = [], []
    for step, value in series[tag]:
        xs.append(epoch_at.get(step, float("nan")) + 1)
        ys.append(value)
    return xs, ys


def plot_multitask(series: Series, title: str = "") -> plt.Figure | None:
    """Three panels (task losses, task weights, gradient cosines) or None when nothing was logged."""
    present = [(prefix, label, sorted(t for t in series if t.startswith(prefix) and "_step" not in t))
               for prefix, label in PANELS]
    present = [p for p in present if p[2]]
    if not present:
        return None
    fig, axes = plt.subplots(1, len(present), figsize=(5 * len(present), 3.6), squeeze=False)
    for ax, (prefix, label, tags) in zip(axes[0], present):
        for tag in tags:
            xs, ys = _by_epoch(series, tag)
            ax.plot(xs, ys, marker="o", ms=3, label=tag[len(prefix):].removesuffix("_epoch"))
        if prefix == "conflict/cos/":
            ax.axhline(0.0, color="grey", lw=0.8, ls="--")  # below 0: the tasks pull against each other
        elif prefix == "train/loss/" and min(v for t in tags for _, v in series[t]) > 0:
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(label, fontsize=10)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def write_multitask_plot(run_dir: Path | str, name: str = "multitask.png") -> Path | None:
    """``<run_dir>/plots/multitask.png`` from the run's logs; None when the run logged no task series."""
    run_dir = Path(run_dir)
    fig = plot_multitask(read_lightning_logs(run_dir), title=run_dir.name)
    if fig is None:
        return None
    out = run_dir / "plots" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
