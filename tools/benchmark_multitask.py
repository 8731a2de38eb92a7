#!/usr/bin/env python
"""The multi-task benchmark of the README: single-task ``vqa`` against all four tasks under each loss
weighting, with and without the explicit L2 term, on easy-VQA.

    python tools/benchmark_multitask.py [--epochs 3] [--seeds 0 1 2] [--output runs/bench_multitask]
                                        [--only NAME ...] [--rerun] [key=value ...]

Each row is one ``tools/train.py`` run per seed (printed before it starts, so any run can be repeated alone,
into ``<output>/<row>/seed<N>``); the table (test accuracy per task, mean over seeds with the range, wall time)
goes to ``<output>/table.md`` and every run to ``table.json``. A stopped sweep resumes: finished runs are read
back from ``table.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from bench_common import add_seeds_arg, add_sweep_args, run_logged, split_only, sweep

CONFIG = "configs/experiments/easy_vqa_multitask.yaml"
TASKS = ("vqa", "answer_generation", "itm", "answer_type")
ROWS = {
    "vqa only": ["tasks.active=[vqa]"],
    "static": ["loss.weighting=static"],
    "static + L2": ["loss.weighting=static", "regularization.l2=1e-4"],
    "uncertainty": ["loss.weighting=uncertainty"],
    "dwa": ["loss.weighting=dwa"],
    "gradnorm": ["loss.weighting=gradnorm"],
    "pcgrad": ["loss.weighting=pcgrad"],
}


def slug(name: str) -> str:
    return name.replace(" + ", "_").replace(" ", "_")


def run_row(name: str, seed: int, out: Path, epochs: int, extra: list[str]) -> dict:
    run_dir = out / slug(name) / f"seed{seed}"
    cmd = [sys.executable, "tools/train.py", "--config", CONFIG, *ROWS[name], f"trainer.max_epochs={epochs}",
           f"seed={seed}", f"run_dir={run_dir}", "trainer.enable_progress_bar=false", *extra]
    shown = run_logged(cmd, f"row {name!r} seed {seed}")
    m = json.loads((run_dir / "metrics.json").read_text())
    return {"id": name, "seed": seed, "name": name, "command": shown, "run_dir": str(run_dir),
            "test": {t: m["test_tasks"].get(t) for t in TASKS}, "vqa_official": m["test_accuracy"]["overall"],
            "wall_seconds": m["wall_seconds"], "fit_seconds": m["fit_seconds"]}


def _span(values: list[float]) -> str:
    """``mean`` for one value, ``mean (min–max)`` for several; percentages."""
    mean = f"{100 * statistics.fmean(values):.2f}"
    return mean if len(values) == 1 else f"{mean} ({100 * min(values):.2f}–{100 * max(values):.2f})"


def table(rows: list[dict]) -> str:
    """Test accuracy (%) per task, mean over the seeds run with the range in brackets; mean wall time."""
    head = "| run | seeds | " + " | ".join(TASKS) + " | wall (min) |\n" + "|---" * (len(TASKS) + 3) + "|\n"
    lines = []
    for name in ROWS:
        runs = [r for r in rows if r["id"] == name]
        if not runs:
            continue
        cells = ["" if runs[0]["test"][t] is None else _span([r["test"][t] for r in runs]) for t in TASKS]
        seeds = ",".join(str(r["seed"]) for r in runs)
        wall = statistics.fmean(r["wall_seconds"] for r in runs) / 60
        lines.append(f"| {name} | {seeds} | " + " | ".join(cells) + f" | {wall:.1f} |")
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=3)
    add_seeds_arg(p)
    p.add_argument("--output", default="runs/bench_multitask")
    p.add_argument("--only", nargs="*", default=None, help=f"rows to run (default all): {', '.join(ROWS)}")
    p.add_argument("overrides", nargs="*", help="key=value overrides for every row")
    add_sweep_args(p)
    args = p.parse_args(argv)
    split_only(p, args, ROWS)
    out = Path(args.output)
    sweep(out, list(ROWS), args.seeds, args.only,
          lambda name, seed: run_row(name, seed, out, args.epochs, args.overrides), table,
          signature=[f"epochs={args.epochs}", *args.overrides], rerun=args.rerun)
    return 0


if __name__ == "__main__":
    sys.exit(main())
