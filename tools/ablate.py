#!/usr/bin/env python
"""An ablation grid: every combination of the ``--grid`` axes × every seed, one ``tools/train.py`` run each,
then one table against a baseline row.

    python tools/ablate.py --config configs/experiments/easy_vqa.yaml \\
        --grid model.fusion.name=concat,cross_attention,weighted_sum [--grid KEY=V1,V2 ...] \\
        --seeds 0 1 2 --baseline concat [--row KEY=V[,KEY=V]] [--jobs N] [--output runs/ablate] [--rerun] \\
        [key=value ...]

``--row`` adds one row after the grid's with its own overrides (e.g. the unimodal baselines beside a grid of
fusions: ``--row 'model.modalities=[text]' --row 'model.modalities=[image]'``). ``--jobs N`` trains N cells at
once, each its own process (pass ``trainer.num_threads`` so that N runs share the cores, not oversubscribe them).
Each cell runs in ``<output>/<row>/seed<N>`` (printed before it starts, so it can be repeated alone). The
sweep resumes: a cell whose folder holds ``metrics.json`` and the same command in ``ablate_cell.json`` is read
back, not re-run (delete the folder, or pass ``--rerun``, to run it again); a cell stopped part-way (its folder holds
the same command in ``ablate_started.json`` and ``checkpoints/last.ckpt``, written after every epoch) continues from
that checkpoint with ``resume=`` (its wall time and samples/s are then those of the last sitting). Writes
``<output>/ablation.md`` and ``ablation.csv`` (per row: test VQA accuracy overall and per question type, mean and
range over seeds; the paired-bootstrap difference against ``--baseline`` with its 95% interval; parameters; training
samples/s; wall time), ``ablation.json`` and ``ablation.png`` (accuracy against parameters and wall time).

Robustness to a broken modality: ``--corrupt SPEC [--corrupt SPEC2] --levels 0,0.2,... [--corrupt-seed N]``
evaluates each cell's best checkpoint under the corruptions after its training (as ``tools/evaluate.py
--corrupt``, into ``<cell>/eval_robustness/``; read back when that holds the same specs, levels and seed for the
same checkpoint) and adds per spec the columns RR (relative robustness: area under the accuracy-vs-level curve /
level range) and ER (effective robustness: RR_row - (RR_base + (clean_row - clean_base)), the baseline's numbers
averaged over its seeds), mean and range over seeds, and ``ablation_robustness.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench_common import add_seeds_arg, split_seeds
from mmfuse.cli import run_tool
from mmfuse.errors import ConfigError
from mmfuse.evaluation.ablation import (
    Row,
    csv_rows,
    expand_grid,
    find_row,
    format_markdown,
    parse_axis,
    parse_row,
    row_label,
    row_slug,
    summarize_robustness,
    summarize_row,
)
from mmfuse.evaluation.results import read_rows
from mmfuse.evaluation.robustness import RobustnessRequest


def cell_command(configs: list[str], row: Row, seed: int, run_dir: Path, overrides: list[str]) -> list[str]:
    cmd = ["tools/train.py"]
    for c in configs:
        cmd += ["--config", c]
    return [*cmd, *overrides, *(f"{k}={v}" for k, v in row.items()), f"seed={seed}", f"run_dir={run_dir}",
            "trainer.enable_progress_bar=false"]


def run_cell(cmd: list[str], run_dir: Path, rerun: bool) -> dict[str, Any]:
    """Train one cell unless its folder already holds the finished run of this very command; read it back."""
    marker, started = run_dir / "ablate_cell.json", run_dir / "ablate_started.json"
    done = (run_dir / "metrics.json").is_file() and marker.is_file() and json.loads(marker.read_text()) == cmd
    if done and not rerun:
        print(f"done, read back: {run_dir}", flush=True)
    else:
        last = run_dir / "checkpoints" / "last.ckpt"
        part_way = not rerun and last.is_file() and started.is_file() and json.loads(started.read_text()) == cmd
        run = [*cmd, f"resume={last}"] if part_way else cmd  # continue the interrupted cell from its last epoch
        run_dir.mkdir(parents=True, exist_ok=True)
        started.write_text(json.dumps(cmd))
        print("$ python " + shlex.join(run), flush=True)
        proc = subprocess.run([sys.executable, *run], cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise SystemExit(f"cell {run_dir} failed (exit {proc.returncode}): {tail}\n"
                             f"repeat it alone: python {shlex.join(run)}")
        marker.write_text(json.dumps(cmd))
    return {"metrics": json.loads((run_dir / "metrics.json").read_text()),
            "per_question": read_rows(run_dir / "eval_test" / "per_question.jsonl"), "trained": not done or rerun}


def run_robustness(run_dir: Path, checkpoint: str, request: RobustnessRequest, again: bool) -> dict[str, Any]:
    """The cell's robustness evaluation (``<run_dir>/eval_robustness/metrics.json``): read back when it holds the
    same specs, levels and seed for ``checkpoint`` (and ``again`` is False: the cell was not just trained)."""
    import mmfuse
    from mmfuse.evaluation.run import checkpoint_config

    out = run_dir / "eval_robustness"
    cfg = checkpoint_config(checkpoint, [f"eval.output={out}", "trainer.enable_progress_bar=false"])
    seed = cfg.eval.bootstrap.seed if request.seed is None else request.seed
    path = out / "metrics.json"
    old = json.loads(path.read_text()) if path.is_file() and not again else {}
    same = (old.get("checkpoint") == checkpoint and (old.get("robustness_convention") or {}).get("seed") == seed
            and {k: v["levels"] for k, v in (old.get("robustness") or {}).items()}
            == {spec: list(request.levels) for spec in request.corrupt})
    if same:
        print(f"robustness read back: {out}", flush=True)
        return old
    flags = [f for spec in request.corrupt for f in ("--corrupt", spec)]
    flags += ["--levels", ",".join(f"{lv:g}" for lv in request.levels), "--corrupt-seed", str(seed)]
    print("$ python " + shlex.join(["tools/evaluate.py", "--checkpoint", checkpoint, "--output", str(out), *flags]),
          flush=True)
    return mmfuse.evaluate(cfg, robustness=RobustnessRequest(request.corrupt, request.levels, (), int(seed)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", required=True, help="experiment YAML (repeatable, merged in order)")
    p.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2",
                   help="an axis of the grid (repeatable: rows are every combination)")
    p.add_argument("--row", action="append", default=[], metavar="KEY=V[,KEY=V]",
                   help="one more row after the grid's, its own key=value overrides, comma-separated (commas inside "
                        "brackets belong to the value; repeatable), e.g. --row 'model.modalities=[text]'")
    p.add_argument("--jobs", type=int, default=1,
                   help="cells trained at once, each its own process (give each trainer.num_threads=cores/jobs)")
    add_seeds_arg(p)
    p.add_argument("--baseline", default=None, help="the row every other is compared with (default: the first)")
    p.add_argument("--output", default="runs/ablate")
    p.add_argument("--rerun", action="store_true", help="run every cell again even when it has finished")
    p.add_argument("--resamples", type=int, default=1000, help="paired-bootstrap resamples")
    p.add_argument("--corrupt", action="append", default=[], metavar="SPEC",
                   help="also evaluate each cell under this corruption (repeatable; see tools/evaluate.py)")
    p.add_argument("--levels", default=None, help="corruption levels in [0, 1], comma-separated (default 0,0.1,...,1)")
    p.add_argument("--corrupt-seed", type=int, default=None,
                   help="seed of the corruptions (default eval.bootstrap.seed)")
    p.add_argument("overrides", nargs="*", help="key=value overrides for every cell")
    args = p.parse_args(argv)
    split_seeds(args)
    request = RobustnessRequest.parse(args.corrupt, args.levels, (), args.corrupt_seed)
    if args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs}: expected an integer >= 1")
    try:
        rows = expand_grid([parse_axis(a) for a in args.grid]) + [parse_row(r) for r in args.row]
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
    if len({row_label(r) for r in rows}) < len(rows):
        raise ConfigError("a --row repeats a row of the grid or another --row; rows: "
                          + "; ".join(row_label(r) for r in rows))
    jobs = [(row, seed, out / row_slug(row) / f"seed{seed}") for row in rows for seed in args.seeds]
    # training runs in subprocesses, --jobs at a time; the robustness evaluations (in this process) one by one
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        trained = list(pool.map(lambda j: run_cell(cell_command(args.config, j[0], j[1], j[2], args.overrides),
                                                   j[2], args.rerun), jobs))
    cells: dict[str, list[dict[str, Any]]] = {}
    for (row, seed, run_dir), done in zip(jobs, trained):
        cell = {"seed": seed, **done}
        if request:
            cell["robustness"] = run_robustness(run_dir, cell["metrics"]["best_checkpoint"], request,
                                                cell["trained"])["robustness"]
        cells.setdefault(row_label(row), []).append(cell)
    base_label = row_label(base)
    summaries = [{"label": label, **summarize_row(cs, None if label == base_label else cells[base_label],
                                                  resamples=args.resamples)} for label, cs in cells.items()]
    if request:
        for s in summaries:
            s["robustness"] = summarize_robustness(cells[s["label"]], cells[base_label], request.corrupt)
    table = format_markdown(summaries, base_label)
    (out / "ablation.md").write_text(table)
    (out / "ablation.json").write_text(json.dumps(summaries, indent=2) + "\n")
    flat = csv_rows(summaries)
    with open(out / "ablation.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(flat[0]))
        writer.writeheader()
        writer.writerows(flat)
    from mmfuse.viz.ablation import write_ablation_plot, write_robustness_plot

    write_ablation_plot(summaries, out / "ablation.png")
    robust_png = write_robustness_plot(summaries, out / "ablation_robustness.png") if request else None
    print(table, flush=True)
    print(f"wrote {out / 'ablation.md'}, ablation.csv, ablation.json, ablation.png"
          + (", ablation_robustness.png" if robust_png else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
