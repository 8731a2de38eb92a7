#!/usr/bin/env python
"""Evaluate a checkpoint on a split; prints accuracy with its 95% interval per answer type.

    python tools/evaluate.py --checkpoint runs/.../checkpoints/best-....ckpt [--split test] [--report] [key=value ...]

Writes <run>/eval_<split>/ (or --output): predictions.json (official result format),
per_question.jsonl, metrics.json (overall / per answer type / per question type, interval,
split, checkpoint, config hash, leakage check) and, with --report, report/index.html.

Robustness to a broken modality (MultiBench): the split evaluated again with a corrupted or missing input,

    python tools/evaluate.py --checkpoint CKPT --corrupt image:gaussian_noise --corrupt text:word_drop \
        --levels 0,0.1,0.2,0.3,0.4,0.5 --missing image --missing text [--corrupt-seed N]

once per level of each --corrupt spec (image:gaussian_noise, image:occlusion, text:word_drop, text:typo; seeded
per image / question, level 0 = no corruption) and once per --missing modality (image: every pixel the model's
normalisation mean; text: the empty question). metrics.json gains "robustness" (per spec: levels, accuracy,
per_answer_type, relative_robustness = area under the curve / level range) and "missing"; a table is printed, and
--report adds the accuracy-vs-level figure.

The model, answer vocabulary and tokenizer come from the checkpoint; the data config comes
from the checkpoint's run too, unless overridden (e.g. data.test=other.jsonl).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mmfuse
from mmfuse.cli import run_tool
from mmfuse.evaluation.leakage import leakage_line
from mmfuse.evaluation.outputs import evaluated_line
from mmfuse.evaluation.results import format_table
from mmfuse.evaluation.robustness import RobustnessRequest, format_robustness
from mmfuse.evaluation.run import checkpoint_config


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--output", default=None, help="output folder (default: <run_dir>/eval_<split>/)")
    p.add_argument("--report", action="store_true", help="also write figures and report/index.html")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="load checkpoints with full pickle (may run code in them): only for files you made")
    p.add_argument("--corrupt", action="append", default=[], metavar="SPEC",
                   help="evaluate once per --levels with this corruption (repeatable): image:gaussian_noise, "
                        "image:occlusion, text:word_drop, text:typo")
    p.add_argument("--levels", default=None, help="corruption levels in [0, 1], comma-separated (default 0,0.1,...,1)")
    p.add_argument("--missing", action="append", default=[], metavar="MODALITY",
                   help="evaluate once with this modality missing (repeatable): image, text")
    p.add_argument("--corrupt-seed", type=int, default=None,
                   help="seed of the corruptions (default eval.bootstrap.seed)")
    p.add_argument("overrides", nargs="*", help="key=value config overrides (data paths, trainer...)")
    args = p.parse_args(argv)
    # bad specs are refused before anything loads (ConfigError: one line, exit 2, the valid choices named)
    request = RobustnessRequest.parse(args.corrupt, args.levels, args.missing, args.corrupt_seed)
    if not Path(args.checkpoint).is_file():
        print(f"error: checkpoint not found: {args.checkpoint}", file=sys.stderr)
        return 2
    # The run's own config, from the checkpoint, is the starting point.
    overrides = [*args.overrides, f"eval.split={args.split}"]
    if args.output:
        overrides.append(f"eval.output={args.output}")
    if args.report:
        overrides.append("eval.report=true")
    cfg = checkpoint_config(args.checkpoint, overrides, trust=args.trust_checkpoint)
    result = mmfuse.evaluate(cfg, robustness=request or None)
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
    if table := format_robustness(result):
        print("\n" + table)
    print(f"metrics written to {result['output']}")
    if "report" in result:
        print(f"report: {result['report']}")


if __name__ == "__main__":
    sys.exit(run_tool(main))
