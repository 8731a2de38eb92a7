#!/usr/bin/env python
"""An ablation grid: every combination of the ``--grid`` axes × every seed, one ``tools/train.py`` run each,
then one table against a baseline row.

    python tools/ablate.py --config configs/experiments/easy_vqa.yaml \\
        --grid model.fusion.name=concat,cross_attention,weighted_sum [--grid KEY=V1,V2 ...] \\
        --seeds 0 1 2 --baseline concat [--output runs/ablate] [--rerun] [key=value ...]

Each cell runs in ``<output>/<row>/seed<N>`` (printed before it starts, so it can be repeated alone). The
sweep resumes: a cell whose folder holds ``metrics.json`` and the same command in ``ablate_cell.json`` is read
back, not re-run (delete the folder, or pass ``--rerun``, to run it again). Writes ``<output>/ablation.md``
and ``ablation.csv`` (per row: test VQA accuracy overall and per question type, mean and range over seeds;
the paired-bootstrap difference against ``--baseline`` with its 95% interval; parameters; training
samples/s; wall time), ``ablation.json`` and ``ablation.png`` (accuracy against parameters and wall time).
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mmfuse.cli import run_tool
from mmfuse.errors import ConfigError
from mmfuse.evaluation.ablation import (
    Row,
    csv_rows,
    expand_grid,
    find_row,
    format_markdown,
    parse_axis,
    row_label,
    row_slug,
    summarize_row,
)
from mmfuse.evaluation.results import read_rows


def cell_command(configs: list[str], row: Row, seed: int, run_dir: Path, overrides: list[str]) -> list[str]:
    cmd = ["tools/train.py"]
    for c in configs:
        cmd += ["--config", c]
    return [*cmd, *overrides, *(f"{k}={v}" for k, v in row.items()), f"seed={seed}", f"run_dir={run_dir}",
            "trainer.enable_progress_bar=false"]


def run_cell(cmd: list[str], run_dir: Path, rerun: bool) -> dict[str, Any]:
    """Train one cell unless its folder already holds the finished run of this very command; read it back."""
    marker = run_dir / "ablate_cell.json"
    done = (run_dir / "metrics.json").is_file() and marker.is_file() and json.loads(marker.read_text()) == cmd
    if done and not rerun:
        print(f"done, read back: {run_dir}", flush=True)
    else:
        print("$ python " + shlex.join(cmd), flush=True)
        proc = subprocess.run([sys.executable, *cmd], cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise SystemExit(f"cell {run_dir} failed (exit {proc.returncode}): {tail}\n"
                             f"repeat it alone: python {shlex.join(cmd)}")
        marker.write_text(json.dumps(cmd))
    return {"metrics": json.loads((run_dir / "metrics.json").read_text()),
            "per_question": read_rows(run_dir / "eval_test" / "per_question.jsonl")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", required=True, help="experiment YAML (repeatable, merged in order)")
    p.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2",
                   help="an axis of the grid (repeatable: rows are every combination)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--baseline", default=None, help="the row every other is compared with (default: the first)")
    p.add_argument("--output", default="runs/ablate")
    p.add_argument("--rerun", action="store_true", help="run every cell again even when it has finished")
    p.add_argument("--resamples", type=int, default=1000, help="paired-bootstrap resamples")
    p.add_argument("overrides", nargs="*", help="key=value overrides for every cell")
    args = p.parse_args(argv)
    try:
        rows = expand_grid([parse_axis(a) for a in args.grid])
        base = find_row(rows, args.baseline) if args.baseline else rows[0]
    except ValueError as e:
        raise ConfigError(str(e)) from None
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        raise ConfigError(f"expected key=value overrides after the options, got {bad}")
    out = Path(args.output)
    from mmfuse.config import load_config

    for row in rows:  # a typo in any cell stops the sweep before the first run, naming the key and choices
        load_config(args.config, [*args.overrides, *(f"{k}={v}" for k, v in row.items())])
    cells: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        for seed in args.seeds:
            run_dir = out / row_slug(row) / f"seed{seed}"
            cmd = cell_command(args.config, row, seed, run_dir, args.overrides)
            cells.setdefault(row_label(row), []).append({"seed": seed, **run_cell(cmd, run_dir, args.rerun)})
    base_label = row_label(base)
    summaries = [{"label": label, **summarize_row(cs, None if label == base_label else cells[base_label],
                                                  resamples=args.resamples)} for label, cs in cells.items()]
    table = format_markdown(summaries, base_label)
    (out / "ablation.md").write_text(table)
    (out / "ablation.json").write_text(json.dumps(summaries, indent=2) + "\n")
    flat = csv_rows(summaries)
    with open(out / "ablation.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(flat[0]))
        writer.writeheader()
        writer.writerows(flat)
    from mmfuse.viz.ablation import write_ablation_plot

    write_ablation_plot(summaries, out / "ablation.png")
    print(table, flush=True)
    print(f"wrote {out / 'ablation.md'}, ablation.csv, ablation.json, ablation.png", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
