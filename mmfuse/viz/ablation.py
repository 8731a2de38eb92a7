"""The ablation harness's figures: each row's test accuracy (mean over seeds, bar = range) against its
parameter count and against its wall time, so a fusion's accuracy is read next to what it costs; with
``--corrupt``, each row's accuracy against the corruption level (``ablation_robustness.png``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from mmfuse.viz.figures import save_pyplot
from mmfuse.viz.robustness import plot_robustness


def write_ablation_plot(summaries: Sequence[Mapping[str, Any]], path: Path | str) -> Path:
    """Two panels (accuracy vs parameters, accuracy vs wall minutes), one labelled point per row. Returns
    ``path`` (PNG)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (key, xlabel, scale) in zip(axes, (("parameters", "parameters (millions)", 1e-6),
                                                ("wall_seconds", "wall time per run (min)", 1 / 60))):
        for i, s in enumerate(summaries):
            if s.get(key) is None:
                continue
            x, ov = s[key] * scale, s["overall"]
            ax.errorbar([x], [ov["mean"]], yerr=[[ov["mean"] - ov["min"]], [ov["max"] - ov["mean"]]], fmt="o",
                        color=f"C{i % 10}", capsize=3)
            ax.annotate(s["label"].split("=")[-1] if s["label"].count("=") == 1 else s["label"], (x, ov["mean"]),
                        textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    fig.suptitle("ablation: mean over seeds, bars = range")
    return save_pyplot(fig, path, dpi=120)


def write_robustness_plot(summaries: Sequence[Mapping[str, Any]], path: Path | str) -> Path | None:
    """``ablation_robustness.png``: accuracy against corruption level, one panel per spec, one line per row (mean
    over seeds, band = range). None (nothing written) when no row has robustness results."""
    panels: dict[str, dict[str, Any]] = {}
    for s in summaries:
        for spec, block in (s.get("robustness") or {}).items():
            acc = block["accuracy"]
            label = s["label"].split("=")[-1] if s["label"].count("=") == 1 else s["label"]
            panels.setdefault(spec, {})[label] = {"levels": block["levels"], "accuracy": acc["mean"],
                                                  "low": acc["min"], "high": acc["max"]}
    if not panels:
        return None
    return plot_robustness(panels, path, "ablation: accuracy under corruption (mean over seeds, band = range)",
                           strong=())
