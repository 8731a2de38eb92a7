"""Robustness figures: accuracy against the level of a corruption, one panel per corruption, one line per series
(an evaluation's overall and per-answer-type accuracy, or an ablation's rows with their range over seeds)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from mmfuse.viz.figures import _save, _wrap

__all__ = ["plot_robustness"]

Series = Mapping[str, Any]  # {"levels": [...], "accuracy": [...], optional "low": [...], "high": [...]}


def plot_robustness(panels: Mapping[str, Mapping[str, Series]], path: Path | str,
                    title: str = "Accuracy under corruption", strong: Sequence[str] = ("overall",)) -> Path:
    """One panel per corruption (``panels``: title → series label → series), accuracy (%) against level.

    A series' ``low`` / ``high`` (per level) are drawn as a shaded band (an ablation row's range over seeds);
    ``None`` accuracies (nothing scored) are left out. Series named in ``strong`` are drawn thicker and dark.
    Returns ``path`` (PNG).
    """
    if not panels:
        raise ValueError("panels is empty")
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(4.6 * cols + 1.2, 3.6 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (name, series) in zip(axes, panels.items()):
        for i, (label, s) in enumerate(series.items()):
            pts = [(lv, a) for lv, a in zip(s["levels"], s["accuracy"]) if a is not None]
            if not pts:
                continue
            xs, ys = zip(*pts)
            colour = "#37474f" if label in strong else f"C{i % 10}"
            # past ten series the colours repeat: the line style and marker tell them apart
            style, marker = ("-", "--", ":")[i // 10 % 3], "osD"[i // 10 % 3]
            ax.plot(xs, ys, marker=marker, markersize=3.5, lw=2.2 if label in strong else 1.4, color=colour,
                    ls=style, label=_wrap(label, 28, 2))
            if s.get("low") is not None and s.get("high") is not None:
                low, high = ([math.nan if v is None else v for v in s[k]] for k in ("low", "high"))
                ax.fill_between(s["levels"], low, high, color=colour, alpha=0.15, lw=0)
        ax.set_title(_wrap(name, 40))
        ax.set_xlabel("corruption level")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(fontsize=7 if len(series) > 8 else 8, frameon=False, ncols=2 if len(series) > 8 else 1)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(_wrap(title, 90))
    return _save(fig, path)
