#!/usr/bin/env python
"""The RL benchmark of the README on noisy-annotator easy-VQA: a supervised answer generator (stage 1),
then RL fine-tuning variants from it (stage 2), each scored greedy and sampled on the test split.

    python tools/benchmark_rl.py --init <stage-1 best .ckpt> [--seeds 0 1 2] [--output runs/bench_rl]
                                 [--only ID ...] [--rerun] [key=value ...]

Without ``--init`` stage 1 is trained first (configs/experiments/easy_vqa_noisy_generator.yaml; once: a later
call reuses it). Rows:
the supervised start (no RL step: its greedy and sampled accuracy), PPO with GAE λ ∈ {0.95, 0, 1},
and plain REINFORCE with a mean baseline on the same rollouts budget. Each row is one ``tools/train.py``
run per seed, printed before it starts. Writes ``<output>/table.md`` (mean over seeds, range in brackets),
``table.json`` (every run) and ``rl_curves.png`` (the first seed's curves).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from bench_common import REPO, add_seeds_arg, add_sweep_args, run_logged, split_only, sweep

sys.path.insert(0, str(REPO))
SUPERVISED = "configs/experiments/easy_vqa_noisy_generator.yaml"
CONFIG = "configs/experiments/easy_vqa_rl.yaml"
ROWS = {  # id (run folder, --only) -> (table label, overrides)
    "start": ("supervised start", ["trainer.limit_train_batches=0"]),
    "ppo": ("PPO, GAE λ=0.95", ["rl.lam=0.95"]),
    "ppo_lam0": ("PPO, GAE λ=0", ["rl.lam=0"]),
    "ppo_lam1": ("PPO, GAE λ=1", ["rl.lam=1"]),
    "reinforce": ("REINFORCE, mean baseline", ["rl.algorithm=reinforce"]),
}


def run_row(row: str, seed: int, init: str, out: Path, extra: list[str]) -> dict:
    name, overrides = ROWS[row]
    run_dir = out / row / f"seed{seed}"
    cmd = [sys.executable, "tools/train.py", "--config", CONFIG, f"rl.init_from={init}", *overrides, f"seed={seed}",
           f"run_dir={run_dir}", "trainer.enable_progress_bar=false", *extra]
    shown = run_logged(cmd, f"row {name!r} seed {seed}")
    m = json.loads((run_dir / "metrics.json").read_text())
    trained = "trainer.limit_train_batches=0" not in overrides
    return {"id": row, "name": name, "seed": seed, "command": shown,
            "run_dir": str(run_dir), "greedy": 100 * m["test"]["test/answer_generation/acc"],
            "sampled": 100 * m["test"]["test/sampled/acc"], "kl": m["test"]["test/kl"], "fit_seconds": m["fit_seconds"],
            # sampled answers per second of training batches: rollout, scoring and the PPO updates together
            "rollouts_per_s": m["train_samples_per_s"] if trained else None}


def _span(values: list[float], fmt: str, unit: str = "") -> str:
    """Mean, and the range over seeds when there are several."""
    mean = format(statistics.fmean(values), fmt) + unit
    return mean if len(values) == 1 else f"{mean} ({format(min(values), fmt)}–{format(max(values), fmt)}{unit})"


def table(rows: list[dict]) -> str:
    """One line per row id (mean over seeds, range in brackets). The gap closed and the greedy change of
    a seed are measured against the supervised start scored with the same seed."""
    starts = {r["seed"]: r for r in rows if r["id"] == "start"}
    lines = ["| run | greedy acc | sampled acc (T=1) | gap closed | greedy change | KL to ref (nats/answer) "
             "| fit (min) | rollouts/s |", "|---|---|---|---|---|---|---|---|"]
    for row in ROWS:
        runs = [r for r in rows if r["id"] == row]
        if not runs:
            continue
        closed = change = rate = ""
        paired = [(r, starts[r["seed"]]) for r in runs if r["seed"] in starts]
        if row != "start" and paired:
            gaps = [(r["sampled"] - s["sampled"]) / (s["greedy"] - s["sampled"]) for r, s in paired
                    if s["greedy"] > s["sampled"]]
            closed = _span([100 * g for g in gaps], ".0f", "%") if gaps else "n/a"
            change = _span([r["greedy"] - s["greedy"] for r, s in paired], "+.2f")
        if runs[0]["rollouts_per_s"]:
            rate = f"{statistics.median(r['rollouts_per_s'] for r in runs):.0f}"
        lines.append(f"| {runs[0]['name']} | {_span([r['greedy'] for r in runs], '.2f')} "
                     f"| {_span([r['sampled'] for r in runs], '.2f')} | {closed} | {change} "
                     f"| {_span([r['kl'] for r in runs], '.3f')} "
                     f"| {statistics.fmean(r['fit_seconds'] for r in runs) / 60:.1f} | {rate} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--init", default=None, help="stage-1 checkpoint (default: train it first)")
    p.add_argument("--output", default="runs/bench_rl")
    add_seeds_arg(p, "RL seeds (rollout sampling, minibatch order)")
    p.add_argument("--only", nargs="*", default=None, help=f"row ids to run (default all): {', '.join(ROWS)}")
    p.add_argument("overrides", nargs="*", help="key=value overrides for every RL row")
    add_sweep_args(p)
    args = p.parse_args(argv)
    split_only(p, args, ROWS)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    init = args.init
    sup_dir = out / "stage1"
    if init is None and (sup_dir / "metrics.json").is_file() and not args.rerun:
        init = json.loads((sup_dir / "metrics.json").read_text())["best_checkpoint"]
        print(f"stage 1: done, {init} (--rerun trains it again)", flush=True)
    if init is None:
        run_logged([sys.executable, "tools/train.py", "--config", SUPERVISED, f"run_dir={sup_dir}",
                    "trainer.enable_progress_bar=false", *[o for o in args.overrides if not o.startswith("rl.")]],
                   "stage 1")
        init = json.loads((sup_dir / "metrics.json").read_text())["best_checkpoint"]
    rows = sweep(out, list(ROWS), args.seeds, args.only, lambda row, seed: run_row(row, seed, init, out,
                                                                              args.overrides), table,
                 signature=[f"init={init}", *args.overrides], rerun=args.rerun)
    from mmfuse.viz.rl import write_rl_curves

    first = min(args.seeds)
    curves = {r["name"]: r["run_dir"] for r in rows if r["id"] != "start" and r["seed"] == first}
    if curves:
        print("curves:", write_rl_curves(curves, out / "rl_curves.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
