#!/usr/bin/env python
"""The RL benchmark of the README on noisy-annotator easy-VQA: a supervised answer generator (stage 1),
then RL fine-tuning variants from it (stage 2), each scored greedy and sampled on the test split.

    python tools/benchmark_rl.py --init <stage-1 best .ckpt> [--output runs/bench_rl] [--only ID ...] [key=value ...]

Without ``--init`` stage 1 is trained first (configs/experiments/easy_vqa_noisy_generator.yaml). Rows:
the supervised start (no RL step: its greedy and sampled accuracy), PPO with GAE λ ∈ {0.95, 0, 1},
and plain REINFORCE with a mean baseline on the same rollouts budget. Each row is one ``tools/train.py``
run, printed before it starts. Writes ``<output>/table.md``, ``table.json`` and ``rl_curves.png``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
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


def run(cmd: list[str], what: str) -> None:
    print("$", shlex.join(["python", *cmd[1:]]), flush=True)
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def run_row(row: str, init: str, out: Path, extra: list[str]) -> dict:
    name, overrides = ROWS[row]
    run_dir = out / row
    cmd = [sys.executable, "tools/train.py", "--config", CONFIG, f"rl.init_from={init}", *overrides,
           f"run_dir={run_dir}", "trainer.enable_progress_bar=false", *extra]
    run(cmd, f"row {name!r}")
    m = json.loads((run_dir / "metrics.json").read_text())
    trained = "trainer.limit_train_batches=0" not in overrides
    return {"id": row, "name": name, "command": shlex.join(["python", *cmd[1:]]), "run_dir": str(run_dir),
            "greedy": 100 * m["test"]["test/answer_generation/acc"], "sampled": 100 * m["test"]["test/sampled/acc"],
            "kl": m["test"]["test/kl"], "fit_seconds": m["fit_seconds"],
            # sampled answers per second of training batches: rollout, scoring and the PPO updates together
            "rollouts_per_s": m["train_samples_per_s"] if trained else None}


def table(rows: list[dict]) -> str:
    start = next((r for r in rows if r["id"] == "start"), None)
    lines = ["| run | greedy acc | sampled acc (T=1) | gap closed | greedy change | KL to ref (nats/answer) "
             "| fit (min) | rollouts/s |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        closed = change = ""
        if start and r is not start:
            gap = start["greedy"] - start["sampled"]
            closed = f"{100 * (r['sampled'] - start['sampled']) / gap:.0f}%" if gap > 0 else "n/a"
            change = f"{r['greedy'] - start['greedy']:+.2f}"
        rate = f"{r['rollouts_per_s']:.0f}" if r["rollouts_per_s"] else ""
        lines.append(f"| {r['name']} | {r['greedy']:.2f} | {r['sampled']:.2f} | {closed} | {change} | {r['kl']:.3f} "
                     f"| {r['fit_seconds'] / 60:.1f} | {rate} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--init", default=None, help="stage-1 checkpoint (default: train it first)")
    p.add_argument("--output", default="runs/bench_rl")
    p.add_argument("--only", nargs="*", default=None, help=f"row ids to run (default all): {', '.join(ROWS)}")
    p.add_argument("overrides", nargs="*", help="key=value overrides for every RL row")
    args = p.parse_args(argv)
    if args.only:  # argparse hands key=value words after --only to it: they are overrides
        args.overrides += [o for o in args.only if "=" in o]
        args.only = [o for o in args.only if "=" not in o]
        unknown = sorted(set(args.only) - set(ROWS))
        if unknown:
            p.error(f"unknown row(s) {unknown}; rows: {', '.join(ROWS)}")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    init = args.init
    if init is None:
        sup_dir = out / "stage1"
        run([sys.executable, "tools/train.py", "--config", SUPERVISED, f"run_dir={sup_dir}",
             "trainer.enable_progress_bar=false"], "stage 1")
        init = json.loads((sup_dir / "metrics.json").read_text())["best_checkpoint"]
    done_path = out / "table.json"
    rows = json.loads(done_path.read_text()) if done_path.is_file() else []
    for row in ROWS:
        if args.only and row not in args.only:
            continue
        rows = [r for r in rows if r["id"] != row] + [run_row(row, init, out, args.overrides)]
        rows.sort(key=lambda r: list(ROWS).index(r["id"]))
        done_path.write_text(json.dumps(rows, indent=2))  # after every row: a long sweep can be resumed
        (out / "table.md").write_text(table(rows))
        print(table(rows), flush=True)
    from mmfuse.viz.rl import write_rl_curves

    curves = {r["name"]: r["run_dir"] for r in rows if r["id"] != "start"}
    if curves:
        print("curves:", write_rl_curves(curves, out / "rl_curves.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
