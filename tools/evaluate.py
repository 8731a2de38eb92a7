#!/usr/bin/env python
"""Evaluate a checkpoint on a split; writes metrics.json and prints a per-answer-type table.

    python tools/evaluate.py --checkpoint runs/.../checkpoints/best-....ckpt [--split test] [key=value ...]

The model, answer vocabulary and tokenizer come from the checkpoint; the data config comes
from the checkpoint's run too, unless overridden (e.g. data.test=other.jsonl).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

import mmfuse  # noqa: E402
from mmfuse.config import BASE_CONFIG  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--output", default=None, help="metrics.json path (default: <run_dir>/eval_<split>/)")
    p.add_argument("overrides", nargs="*", help="key=value config overrides (data paths, trainer...)")
    args = p.parse_args(argv)
    if not Path(args.checkpoint).is_file():
        print(f"error: checkpoint not found: {args.checkpoint}", file=sys.stderr)
        return 2
    # The run's own config, from the checkpoint, is the starting point.
    saved = torch.load(args.checkpoint, map_location="cpu", weights_only=False)["hyper_parameters"]["cfg"]
    run_cfg = OmegaConf.create(saved)
    overrides = list(args.overrides) + [f"eval.checkpoint={args.checkpoint}", f"eval.split={args.split}"]
    if args.output:
        overrides.append(f"eval.output={args.output}")
    with tempfile.TemporaryDirectory() as tmp:  # the checkpoint's folder may be read-only
        OmegaConf.save(run_cfg, Path(tmp) / "run.yaml")
        try:
            cfg = mmfuse.load_config([Path(tmp) / "run.yaml"], overrides)
        except mmfuse.ConfigError as e:
            print(f"config error: {e}", file=sys.stderr)
            return 2
    result = mmfuse.evaluate(cfg)
    m = result[args.split]
    print(f"\n{args.split} split, {result['num_questions']} questions, checkpoint {args.checkpoint}")
    print(f"{'answer type':<14}{'VQA acc':>10}")
    print(f"{'overall':<14}{100 * m[f'{args.split}/acc']:>9.2f}%")
    for k in sorted(m):
        if k.startswith(f"{args.split}/acc/"):
            print(f"{k.split('/', 2)[2]:<14}{100 * m[k]:>9.2f}%")
    print(f"metrics written to {result['output']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
