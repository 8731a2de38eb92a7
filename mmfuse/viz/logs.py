"""Read the scalar series a Lightning run wrote (CSVLogger and/or TensorBoardLogger) back into Python."""

from __future__ import annotations

import csv
from pathlib import Path

Series = dict[str, list[tuple[int, float]]]


def read_lightning_logs(run_dir: Path | str) -> Series:
    """Scalar series ``{tag: [(step, value), ...]}`` (sorted by step) of a run directory.

    Reads ``<run_dir>/logs/metrics.csv`` (``CSVLogger(run_dir, name="", version="logs")``) and every
    TensorBoard event file under ``<run_dir>/tensorboard/``; either, both or neither may exist (neither:
    ``{}``). The ``epoch`` column / tag is returned like any other series, so it maps step -> epoch.
    A tag logged twice at one step keeps one value (the CSV's when both sources have it).
    """
    run_dir = Path(run_dir)
    merged: dict[str, dict[int, float]] = {}
    for source in (_read_tensorboard(run_dir / "tensorboard"), _read_csv(run_dir / "logs" / "metrics.csv")):
        for tag, points in source.items():
            merged.setdefault(tag, {}).update(points)
    return {tag: sorted(points.items()) for tag, points in sorted(merged.items()) if points}


def _read_csv(path: Path) -> Series:
    """Columns of a CSVLogger ``metrics.csv`` as series; empty cells (most of them) are skipped."""
    if not path.is_file():
        return {}
    out: Series = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            step = row.get("step") or ""
            if not step.strip():
                continue
            for key, cell in row.items():
                if key is None or key == "step" or cell is None or not cell.strip():
                    continue
                out.setdefault(key, []).append((int(float(step)), float(cell)))
    return out


def _read_tensorboard(root: Path) -> Series:
    """Scalar tags of every event-file directory under ``root`` (version sub-folders included)."""
    if not root.is_dir():
        return {}
    dirs = sorted({p.parent for p in root.rglob("events.out.tfevents.*") if p.is_file()})
    if not dirs:
        return {}
    from tensorboard.backend.event_processing import event_accumulator as ea  # only when there are events

    out: Series = {}
    for d in dirs:
        acc = ea.EventAccumulator(str(d), size_guidance={ea.SCALARS: 0})  # 0: keep every point
        acc.Reload()
        for tag in acc.Tags().get(ea.SCALARS, []):
            out.setdefault(tag, []).extend((int(e.step), float(e.value)) for e in acc.Scalars(tag))
    return out
