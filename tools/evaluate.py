#!/usr/bin/env python
"""Evaluate a checkpoint on a split; prints accuracy with its 95% interval per answer type.

    python tools/evaluate.py --checkpoint runs/.../checkpoints/best-....ckpt [--split test] [--report] [key=value ...]

Writes <run>/eval_<split>/ (or --output): predictions.json (official result format),
per_question.jsonl, metrics.json (overall / per answer type / per question type, interval,
split, checkpoint, config hash, leakage check) and, with --report, report/index.html.

The model, answer vocabulary and tokenizer come from the checkpoint; the data config comes
from the checkpoint's run too, unless overridden (e.g. data.test=other.jsonl).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from omegaconf import OmegaConf

import mmfuse
from mmfuse.checkpoints import read_checkpoint
from mmfuse.cli import run_tool
from mmfuse.config import complete_config
from mmfuse.evaluation.leakage import leakage_line
from mmfuse.evaluation.outputs import evaluated_line
from mmfuse.evaluation.results import format_table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--output", default=None, help="output folder (default: <run_dir>/eval_<split>/)")
    p.add_argument("--report", action="store_true", help="also write figures and report/index.html")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="load checkpoints with full pickle (may run code in them): only for files you made")
    p.add_argument("overrides", nargs="*", help="key=value config overrides (data paths, trainer...)")
    args = p.parse_args(argv)
    if not Path(args.checkpoint).is_file():
        print(f"error: checkpoint not found: {args.checkpoint}", file=sys.stderr)
        return 2
    # The run's own config, from the checkpoint, is the starting point.
    saved = read_checkpoint(args.checkpoint, trust=args.trust_checkpoint, mmap=True)["hyper_parameters"]["cfg"]
    run_cfg = OmegaConf.create(complete_config(saved))  # checkpoints of older versions: current schema
    overrides = list(args.overrides) + [f"eval.checkpoint={args.checkpoint}", f"eval.split={args.split}",
                                        f"trust_checkpoint={str(args.trust_checkpoint).lower()}"]
    if args.output:
        overrides.append(f"eval.output={args.output}")
    if args.report:
        overrides.append("eval.report=true")
    with tempfile.TemporaryDirectory() as tmp:  # the checkpoint's folder may be read-only
        OmegaConf.save(run_cfg, Path(tmp) / "run.yaml")
        try:
            cfg = mmfuse.load_config([Path(tmp) / "run.yaml"], overrides)
        except mmfuse.ConfigError as e:
            print(f"config error: {e}", file=sys.stderr)
            return 2
    result = mmfuse.evaluate(cfg)
    if result["global_rank"] == 0:  # in a distributed run, the first process reports
        print_summary(result)
    return 0


def print_summary(result: dict) -> None:
    """The table a user reads: overall and per answer type, with 95% bootstrap intervals."""
    if "datasets" in result:  # data.mixture: one folder per dataset; the table is the first one's
        print("\n" + "\n".join(f"dataset {n}: {acc:.2f}%" for n, acc in result["datasets"].items()))
        print(f"(table: dataset {result['dataset']})")
    print(f"\n{result['split']} split, {result['num_questions']} questions, checkpoint {result['checkpoint']}")
    print(format_table(result["accuracy"]))
    if line := evaluated_line(result):
        print(line)
    if line := leakage_line(result["leakage"], result["split"]):
        print(line)
    print(f"metrics written to {result['output']}")
    if "report" in result:
        print(f"report: {result['report']}")


if __name__ == "__main__":
    sys.exit(run_tool(main))
