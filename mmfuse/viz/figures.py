"""Evaluation-report figures, each written to a PNG.

Built on :class:`matplotlib.figure.Figure` directly (rendered by Agg), never ``pyplot``: no global
figure registry, no interactive backend, nothing to close beyond dropping the reference. Inputs are
plain Python / numpy values; every function returns the path of the PNG it wrote.
"""

from __future__ import annotations

import math
import textwrap
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

DPI = 120
GREEN, RED = "#1b7d36", "#c62828"
STAGE_COLORS = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c"}
Points = Sequence[tuple[int, float]]


def _wrap(text: str, width: int, max_lines: int | None = None) -> str:
    return textwrap.fill(str(text), width=width, max_lines=max_lines, placeholder=" …")


def _save(fig: Figure, path: Path | str, dpi: int = DPI) -> Path:
    """Write ``fig`` as PNG at ``dpi`` and release its artists."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png", facecolor="white")
    fig.clear()
    return path


def save_pyplot(fig: Figure, path: Path | str, dpi: int = DPI) -> Path:
    """Write a figure made with ``pyplot`` (the RL and ablation plots): tight layout, :func:`_save` at ``dpi``,
    then closed, because pyplot's registry would otherwise keep every figure of a long sweep open."""
    import matplotlib.pyplot as plt  # here, not at the top: this module's own figures never touch pyplot

    fig.tight_layout()
    path = _save(fig, path, dpi)
    plt.close(fig)
    return path


def plot_type_accuracy(groups: Mapping[str, float], path: Path | str, title: str = "VQA accuracy by answer type",
                       ci: Mapping[str, tuple[float, float]] | None = None,
                       counts: Mapping[str, int] | None = None) -> Path:
    """Horizontal bars of accuracy in percent (0-100) per group, in the caller's order (first on top).

    ``ci``: optional 95% interval per group, in percent, drawn as error bars; ``counts``: optional
    number of questions per group, shown as ``(n=...)`` in the tick label. A group named ``overall``
    is drawn in a darker colour.
    """
    if not groups:
        raise ValueError("groups is empty")
    ci, counts = ci or {}, counts or {}
    names = list(groups)
    vals = np.array([float(groups[k]) for k in names])
    labels = [_wrap(k, 22) + (f"  (n={counts[k]:,})" if k in counts else "") for k in names]
    fig = Figure(figsize=(7.5, 1.4 + 0.45 * len(names)), layout="constrained")
    ax = fig.add_subplot()
    y: np.ndarray = np.arange(len(names))  # bar positions
    err = np.array([[max(0.0, v - ci[k][0]) if k in ci else 0.0 for k, v in zip(names, vals)],
                    [max(0.0, ci[k][1] - v) if k in ci else 0.0 for k, v in zip(names, vals)]])
    ax.barh(y, vals, height=0.65, color=["#37474f" if k == "overall" else "#4c72b0" for k in names],
            xerr=err if ci else None, capsize=4, error_kw={"elinewidth": 1.2, "ecolor": "black"})
    for yi, k, v in zip(y, names, vals):
        label = f"{v:.1f}%" + (f"  [{ci[k][0]:.1f}, {ci[k][1]:.1f}]" if k in ci else "")
        ax.text(max(v, ci[k][1] if k in ci else v) + 1.5, yi, label, va="center", fontsize=9)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 130 if ci else 112)
    ax.set_xticks(range(0, 101, 20))
    ax.set_xlabel("accuracy (%)" + ("; error bars: 95% CI" if ci else ""))
    ax.set_title(_wrap(title, 70))
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)


def _loss_lines(series: Mapping[str, Points]) -> list[tuple[str, bool]]:
    """``(key, faint)`` for the loss panel: per loss the epoch-level curve (``_epoch`` > plain >
    ``_step``), plus its per-step curve drawn faintly when both exist."""
    keys = [k for k in series if "loss" in k and len(series[k])]
    out: list[tuple[str, bool]] = []
    for base in dict.fromkeys(k.removesuffix("_step").removesuffix("_epoch") for k in keys):
        main = next(k for k in (f"{base}_epoch", base, f"{base}_step") if k in keys)
        if main != f"{base}_step" and f"{base}_step" in keys:
            out.append((f"{base}_step", True))
        out.append((main, False))
    return out


def _color(key: str, i: int) -> str:
    return STAGE_COLORS.get(key.split("/")[0], f"C{(i + 3) % 10}")


def plot_learning_curves(series: Mapping[str, Points], path: Path | str, title: str = "Learning curves") -> Path:
    """Loss panel (keys containing ``loss``) and accuracy panel (keys ending in ``/acc``) against step.

    Accuracies all within [0, 1] are shown in percent. With nothing plottable the figure says
    "no logged scalars found" rather than failing (e.g. a run logged with ``logger: none``).
    """
    losses = _loss_lines(series)
    accs = [k for k in series if k.endswith("/acc") and len(series[k])]
    fig = Figure(figsize=(12, 4.6) if losses or accs else (6, 3), layout="constrained")
    fig.suptitle(_wrap(title, 100))
    if not (losses or accs):
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no logged scalars found", ha="center", va="center", fontsize=13, color="gray")
        ax.set_axis_off()
        return _save(fig, path)
    ax_loss, ax_acc = fig.subplots(1, 2)
    for i, (key, faint) in enumerate(losses):
        steps, vals = zip(*series[key])
        ax_loss.plot(steps, vals, color=_color(key, i), lw=0.8 if faint else 1.8, alpha=0.3 if faint else 1.0,
                     marker=None if faint or len(steps) > 60 else "o", ms=3.5, label=key, zorder=1 if faint else 2)
    loss_values = [v for k, _ in losses for _, v in series[k] if np.isfinite(v)]
    if loss_values and min(loss_values) > 0 and max(loss_values) / min(loss_values) > 30:
        ax_loss.set_yscale("log")  # early losses would otherwise flatten the rest of training to a line
    scale = 100.0 if all(0.0 <= v <= 1.0 for k in accs for _, v in series[k]) else 1.0
    for i, key in enumerate(accs):
        steps, vals = zip(*series[key])
        vals_pct = np.asarray(vals, dtype=float) * scale
        best = int(np.nanargmax(vals_pct))
        ax_acc.plot(steps, vals_pct, color=_color(key, i), lw=1.8, marker=None if len(steps) > 60 else "o", ms=3.5,
                    label=f"{key} (best {vals_pct[best]:.1f} @ step {steps[best]})")
    for ax, what, keys in ((ax_loss, "loss", losses), (ax_acc, "accuracy" + (" (%)" if scale == 100 else ""), accs)):
        ax.set_title(what.split(" ")[0].capitalize())
        if not keys:
            ax.text(0.5, 0.5, f"no {what.split(' ')[0]} logged", transform=ax.transAxes, ha="center", color="gray")
            ax.set(xticks=[], yticks=[])
            continue
        ax.set(xlabel="step", ylabel=what)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9, loc="best")
    return _save(fig, path)


def top_labels(gold: Sequence[str], k: int) -> list[str]:
    """The ``k`` most frequent gold answers, most frequent first (ties: alphabetical)."""
    return [a for a, _ in sorted(Counter(gold).items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def confusion_counts(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Integer matrix ``[len(labels), len(labels) + 1]``: row = gold label, column = predicted label,
    last column = predictions outside ``labels``. Pairs whose gold answer is not in ``labels`` are skipped."""
    if len(gold) != len(pred):
        raise ValueError(f"gold and pred differ in length ({len(gold)} vs {len(pred)})")
    index = {a: i for i, a in enumerate(labels)}
    if len(index) != len(labels):
        raise ValueError("labels contain duplicates")
    m = np.zeros((len(labels), len(labels) + 1), dtype=np.int64)
    for g, p in zip(gold, pred):
        if g in index:
            m[index[g], index.get(p, len(labels))] += 1
    return m


def plot_confusion(gold: Sequence[str], pred: Sequence[str], path: Path | str, top_k: int = 10,
                   title: str = "Confusion among the most frequent answers") -> Path:
    """Confusion matrix over the ``top_k`` most frequent gold answers, plus an "other" prediction column.

    Colours are row-normalised (fraction of that gold answer's questions); cells show raw counts.
    """
    if not gold:
        raise ValueError("gold is empty")
    labels = top_labels(gold, top_k)
    m = confusion_counts(gold, pred, labels)
    rows = m.sum(1, keepdims=True)
    frac = m / np.maximum(rows, 1)
    k = len(labels)
    side = max(5.5, 0.55 * k + 3.0)
    fig = Figure(figsize=(side + 1.2, side), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    fs = 9 if k <= 10 else max(6, 9 - 0.25 * (k - 10))
    for r in range(k):
        for c in range(k + 1):
            color = "white" if frac[r, c] > 0.55 else ("#999999" if m[r, c] == 0 else "black")
            ax.text(c, r, str(m[r, c]), ha="center", va="center", fontsize=fs, color=color)
    short = [textwrap.shorten(a, 18, placeholder="…") for a in labels]
    ax.set_xticks(range(k + 1), short + ["other"], rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(k), [f"{a} (n={int(n)})" for a, n in zip(short, rows[:, 0])])
    ax.set_xlabel("predicted answer")
    ax.set_ylabel("gold answer")
    shown = int(rows.sum())
    fig.suptitle(_wrap(title, 60))
    ax.set_title(f"top {k} of {len(set(gold))} gold answers: {shown} of {len(gold)} questions", fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of the gold row")
    return _save(fig, path)


def _upsample(attention: Any, h: int, w: int) -> np.ndarray:
    """Min-max normalise a ``[gh, gw]`` attention grid to [0, 1] and resize it bilinearly to ``[h, w]``."""
    a = np.asarray(attention, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"attention must be 2-D [gh, gw], got shape {a.shape}")
    a = a - a.min()
    a = a / a.max() if a.max() > 0 else a
    return np.asarray(Image.fromarray(a).resize((w, h), Image.Resampling.BILINEAR))


def plot_attention_grid(samples: Sequence[Mapping[str, Any]], path: Path | str, cols: int = 4,
                        title: str = "Attention over image patches", alpha: float = 0.5) -> Path:
    """Grid of images with their attention map overlaid (jet, opacity ``alpha``), one panel per sample.

    A sample has ``image`` (uint8 ``[H, W, 3]``), ``attention`` (``[gh, gw]``), ``question``,
    ``prediction``, ``answer`` and optionally ``correct`` (default: prediction == answer, case-insensitive).
    Panel title: the wrapped question; below: "pred / gt" in green (correct) or red, with a matching frame.
    """
    if not samples:
        raise ValueError("samples is empty")
    cols = max(1, min(cols, len(samples)))
    rows = math.ceil(len(samples) / cols)
    fig = Figure(figsize=(3.2 * cols + 0.9, 3.75 * rows + 0.5), layout="constrained")
    fig.suptitle(_wrap(title, 30 * cols))
    axes = fig.subplots(rows, cols, squeeze=False)
    im = None
    for ax, s in zip(axes.flat, samples):
        img = np.asarray(s["image"])
        ax.imshow(img)
        im = ax.imshow(_upsample(s["attention"], *img.shape[:2]), cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0)
        pred, gt = str(s["prediction"]), str(s["answer"])
        ok = bool(s.get("correct", pred.strip().lower() == gt.strip().lower()))
        color = GREEN if ok else RED
        ax.set_title(_wrap(s["question"], 34, max_lines=3), fontsize=9)
        ax.set_xlabel(_wrap(f"{'✓' if ok else '✗'} pred: {pred} / gt: {gt}", 36, max_lines=2),
                      color=color, fontsize=9, fontweight="bold")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set(edgecolor=color, linewidth=2.5)
    for ax in axes.flat[len(samples):]:
        ax.set_axis_off()
    assert im is not None  # samples is not empty, so the loop drew at least one overlay
    fig.colorbar(im, ax=axes, shrink=min(0.6, 0.9 / rows + 0.15), label="attention (min-max normalised)")
    return _save(fig, path)
