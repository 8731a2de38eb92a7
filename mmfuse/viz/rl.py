"""RL training curves: the mean score (reward before the KL term) and the KL to the reference per rollout
batch, for one or several runs on shared axes (the README's PPO / REINFORCE comparison); and the score against
the sampled answers spent (``tools/benchmark_rl.py``'s estimators at an equal budget)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from mmfuse.viz.figures import save_pyplot
from mmfuse.viz.logs import read_lightning_logs

PANELS = (("rl/score", "mean score (VQA accuracy of sampled answers)"), ("rl/kl", "KL to reference (nats / answer)"),
          ("rl/entropy", "policy entropy (nats / token)"))


def smooth(values: list[float], window: int) -> list[float]:
    """Trailing moving average over ``window`` points (the first points average what there is)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def write_rl_curves(runs: Mapping[str, Path | str], path: Path | str, window: int = 10) -> Path:
    """Plot ``PANELS`` against the rollout batch for each ``name -> run directory`` (its Lightning logs);
    raw values faint, a ``window``-batch moving average solid. Returns ``path`` (PNG)."""
    fig, axes = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 3.6), squeeze=False)
    for i, (name, run_dir) in enumerate(runs.items()):
        series = read_lightning_logs(run_dir)
        color = f"C{i}"
        for ax, (tag, label) in zip(axes[0], PANELS):
            points = series.get(tag, [])
            if not points:
                continue
            xs = list(range(1, len(points) + 1))  # one point per rollout batch
            ys = [v for _, v in points]
            ax.plot(xs, ys, color=color, alpha=0.2, linewidth=0.8)
            ax.plot(xs, smooth(ys, window), color=color, label=name, linewidth=1.6)
            ax.set_title(label, fontsize=10)
            ax.set_xlabel("rollout batch")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    return save_pyplot(fig, path, dpi=110)


def score_vs_answers(run_dir: Path | str, answers_per_batch: int, window: int = 10) -> tuple[list[int], list[float]]:
    """A run's ``rl/score`` (:func:`smooth`-ed over ``window`` batches) against the sampled answers spent so far:
    point ``i`` (one per rollout batch, as :func:`write_rl_curves`) sits at ``(i + 1) * answers_per_batch``."""
    ys = [v for _, v in read_lightning_logs(run_dir).get("rl/score", [])]
    return [(i + 1) * answers_per_batch for i in range(len(ys))], smooth(ys, window)


def write_score_vs_answers(runs: Mapping[str, tuple[Path | str, int]], path: Path | str, window: int = 10) -> Path:
    """One line per ``name -> (run directory, sampled answers per rollout batch)`` (G × questions a batch): the
    smoothed training score against the cumulative sampled answers (:func:`score_vs_answers`), so estimators
    that spread the same answers over fewer questions compare at equal cost. Returns ``path`` (PNG)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for i, (name, (run_dir, per_batch)) in enumerate(runs.items()):
        xs, ys = score_vs_answers(run_dir, per_batch, window)
        if xs:
            ax.plot(xs, ys, color=f"C{i}", label=name, linewidth=1.6)
    ax.set_xlabel("sampled answers (training)")
    ax.set_ylabel(f"mean score ({window}-batch moving average)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return save_pyplot(fig, path, dpi=110)
