#!/usr/bin/env python
"""Evaluate the models on the line between two checkpoints (WiSE-FT weight-space interpolation).

    python tools/interpolate.py A.ckpt B.ckpt [--alphas 0,0.1,...,1] [--split test] [--output DIR]
                                [--keep-checkpoints] [key=value ...]

θ(α) = (1 − α)·θ_A + α·θ_B for each α (α = 0 is A, α = 1 is B; values outside [0, 1] extrapolate).
Both checkpoints must have the same architecture, answer vocabulary and tokenizer. The config is
the one stored in A's checkpoint, with key=value overrides on top (e.g. data.test=other.jsonl).
Writes interpolation.json, interpolation.png and one evaluation folder per α (alpha_<α>/) into
--output (default: <run dir of A>/interpolate_<split>/).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mmfuse
from mmfuse.cli import run_tool
from mmfuse.data.sources import DataError
from mmfuse.evaluation.interpolate import CheckpointMismatch, config_from_checkpoint, interpolate, parse_alphas


def default_output(ckpt_a: str, split: str) -> Path:
    """``<run dir of A>/interpolate_<split>``: a run's checkpoints live in ``<run>/checkpoints/``."""
    parent = Path(ckpt_a).resolve().parent
    run_dir = parent.parent if parent.name == "checkpoints" else parent
    return run_dir / f"interpolate_{split}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint_a", help="α = 0 end point")
    p.add_argument("checkpoint_b", help="α = 1 end point")
    p.add_argument("--alphas", default="0,0.1,...,1", help="comma list, or start,next,...,end (default 0,0.1,...,1)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--output", default=None, help="output folder (default: <run dir of A>/interpolate_<split>/)")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep the interpolated .ckpt files")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="load checkpoints with full pickle (may run code in them): only for files you made")
    p.add_argument("overrides", nargs="*", help="key=value config overrides (data paths, trainer...)")
    args = p.parse_args(argv)
    try:
        alphas = parse_alphas(args.alphas)
    except ValueError as e:
        p.error(str(e))  # exit code 2, with the usage line
    output = Path(args.output) if args.output else default_output(args.checkpoint_a, args.split)
    try:
        for ckpt in (args.checkpoint_a, args.checkpoint_b):
            if not Path(ckpt).is_file():
                raise FileNotFoundError(f"checkpoint not found: {ckpt}")
        trust = [f"trust_checkpoint={str(args.trust_checkpoint).lower()}"]
        cfg = config_from_checkpoint(args.checkpoint_a, [*args.overrides, f"eval.split={args.split}", *trust],
                                     trust_checkpoint=args.trust_checkpoint)
        rows = interpolate(args.checkpoint_a, args.checkpoint_b, alphas, cfg, output, args.keep_checkpoints)
    except (CheckpointMismatch, mmfuse.ConfigError, DataError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_rows(rows, args.split))
    print(f"results: {output / 'interpolation.json'}\nplot:    {output / 'interpolation.png'}")
    return 0


def format_rows(rows: list[dict], split: str) -> str:
    """α, overall accuracy and its 95% interval, one line per α; A and B marked at the ends."""
    lines = [f"\nVQA accuracy on the {split} split along θ(α) = (1 − α)·θ_A + α·θ_B",
             f"{'alpha':>7}  {'accuracy':>8}  95% interval"]
    for r in rows:
        end = {0.0: "  (A)", 1.0: "  (B)"}.get(r["alpha"], "")
        acc = "n/a" if r["accuracy"] is None else f"{r['accuracy']:.2f}"
        ci = "n/a" if not r["ci95"] else f"[{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}]"
        lines.append(f"{r['alpha']:>7g}  {acc:>8}  {ci}{end}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(run_tool(main))
