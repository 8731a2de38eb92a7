#!/usr/bin/env python
"""Train, then test the best checkpoint; writes <run_dir>/metrics.json.

    python tools/train.py --config configs/experiments/easy_vqa.yaml [key=value ...]
    python tools/train.py --config ... --resume runs/.../checkpoints/last.ckpt
    python tools/train.py --config ... --folds 5      # K-fold cross-validation over the training split
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import mmfuse
from mmfuse.cli import run_tool
from mmfuse.evaluation.leakage import leakage_line
from mmfuse.evaluation.outputs import evaluated_line
from mmfuse.evaluation.results import format_table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", default=[], help="experiment YAML (repeatable; merged in order)")
    p.add_argument("--resume", default=None, help="checkpoint to resume training from")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="load checkpoints with full pickle (may run code in them): only for files you made")
    p.add_argument("--folds", type=int, default=None, help="K-fold cross-validation over the training split")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    args = p.parse_args(argv)
    overrides = list(args.overrides) + ([f"resume={args.resume}"] if args.resume else []) \
        + (["trust_checkpoint=true"] if args.trust_checkpoint else [])
    try:
        cfg = mmfuse.load_config(args.config, overrides)
    except mmfuse.ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    if args.folds is not None:
        return report_cv(mmfuse.cross_validate(cfg, args.folds))
    result = mmfuse.train(cfg)
    if result["global_rank"] != 0:  # in a distributed run, the first process reports
        return 0
    print(f"\nrun directory: {result['run_dir']}")
    print(f"best checkpoint: {result['best_checkpoint']}")
    print("test split (official VQA accuracy):")
    print(format_table(result["test_accuracy"]))
    if line := evaluated_line(result["test_evaluated"]):
        print(line)
    if line := leakage_line(result["test_leakage"], "test"):
        print(line)
    if (rl := result.get("rl")) and rl["test_sampled_accuracy"] is not None:
        print(f"RL: the table scores greedy answers; one answer sampled per question (temperature "
              f"{rl['temperature']:g}) scores {100 * rl['test_sampled_accuracy']:.2f}%, at "
              f"{rl['test_kl_to_reference']:.3f} nats per answer from the reference ({rl['init_from']})")
    print(f"wall time: {result['wall_seconds']:.0f} s; training samples/s: {result['train_samples_per_s']:.0f}")
    print(json.dumps({"metrics.json": str(Path(result['run_dir']) / 'metrics.json')}))
    return 0


def report_cv(cv: dict) -> int:
    print(f"\n{cv['folds']}-fold cross-validation over the training split (folds by image): {cv['run_dir']}")
    for f in cv["per_fold"]:
        print(f"  fold {f['fold']}: {f['overall']:.2f}% on {f['num_test']} held-out questions")
    o = cv["overall"]
    print(f"VQA accuracy: {o['mean']:.2f} ± {o['std']:.2f} (mean ± std over folds)")
    for t, v in cv["perAnswerType"].items():
        print(f"  {t:<14} {v['mean']:.2f} ± {v['std']:.2f}")
    print(json.dumps({"cv_metrics.json": str(Path(cv['run_dir']) / 'cv_metrics.json')}))
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
