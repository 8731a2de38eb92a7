#!/usr/bin/env python
"""Train, then test the best checkpoint; writes <run_dir>/metrics.json.

    python tools/train.py --config configs/experiments/easy_vqa.yaml [key=value ...]
    python tools/train.py --config ... --resume runs/.../checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import mmfuse  # noqa: E402
from mmfuse.evaluation.leakage import leakage_line  # noqa: E402
from mmfuse.evaluation.results import format_table  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", default=[], help="experiment YAML (repeatable; merged in order)")
    p.add_argument("--resume", default=None, help="checkpoint to resume training from")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    args = p.parse_args(argv)
    overrides = list(args.overrides) + ([f"resume={args.resume}"] if args.resume else [])
    try:
        cfg = mmfuse.load_config(args.config, overrides)
    except mmfuse.ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    result = mmfuse.train(cfg)
    print(f"\nrun directory: {result['run_dir']}")
    print(f"best checkpoint: {result['best_checkpoint']}")
    print("test split (official VQA accuracy):")
    print(format_table(result["test_accuracy"]))
    if line := leakage_line(result["test_leakage"], "test"):
        print(line)
    print(f"wall time: {result['wall_seconds']:.0f} s; training samples/s: {result['train_samples_per_s']:.0f}")
    print(json.dumps({"metrics.json": str(Path(result['run_dir']) / 'metrics.json')}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
