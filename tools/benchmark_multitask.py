#!/usr/bin/env python
"""The multi-task benchmark of the README: single-task ``vqa`` against all four tasks under each loss
weighting, with and without the explicit L2 term, on easy-VQA.

    python tools/benchmark_multitask.py [--epochs 3] [--output runs/bench_multitask] [--only NAME ...] [key=value ...]

Each row is one ``tools/train.py`` run (printed before it starts, so any row can be re-run alone);
the table (test accuracy per task, wall time) goes to ``<output>/table.md`` and ``table.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench_common import run_logged, split_only, sweep

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


def run_row(name: str, overrides: list[str], out: Path, epochs: int, extra: list[str]) -> dict:
    run_dir = out / slug(name)
    cmd = [sys.executable, "tools/train.py", "--config", CONFIG, *overrides, f"trainer.max_epochs={epochs}",
           f"run_dir={run_dir}", "trainer.enable_progress_bar=false", *extra]
    shown = run_logged(cmd, f"row {name!r}")
    m = json.loads((run_dir / "metrics.json").read_text())
    return {"id": name, "seed": None, "name": name, "command": shown, "run_dir": str(run_dir),
            "test": {t: m["test_tasks"].get(t) for t in TASKS}, "vqa_official": m["test_accuracy"]["overall"],
            "wall_seconds": m["wall_seconds"], "fit_seconds": m["fit_seconds"]}


def table(rows: list[dict]) -> str:
    head = "| run | " + " | ".join(TASKS) + " | wall (min) |\n|---" * 1 + "|---" * (len(TASKS) + 1) + "|\n"
    lines = []
    for r in rows:
        cells = ["" if r["test"][t] is None else f"{100 * r['test'][t]:.2f}" for t in TASKS]
        lines.append(f"| {r['name']} | " + " | ".join(cells) + f" | {r['wall_seconds'] / 60:.1f} |")
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--output", default="runs/bench_multitask")
    p.add_argument("--only", nargs="*", default=None, help=f"rows to run (default all): {', '.join(ROWS)}")
    p.add_argument("overrides", nargs="*", help="key=value overrides for every row")
    args = p.parse_args(argv)
    split_only(p, args, ROWS)
    out = Path(args.output)
    sweep(out, list(ROWS), [None], args.only,
          lambda name, _: run_row(name, ROWS[name], out, args.epochs, args.overrides), table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
