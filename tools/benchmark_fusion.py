#!/usr/bin/env python
"""One fusion's training step (forward + backward) under several hyper-parameter variants, side by side.

Every variant is the same fusion with the same initial weights on the same random inputs (tokens ``[B, N,
dim]`` for both modalities, every token valid); rounds alternate between the variants so machine noise hits
them all. Prints per variant the median step time, its ratio to the first variant, the bytes that autograd
keeps for the backward (counted with ``saved_tensors_hooks``: what the step holds beyond the weights), and the
largest difference of the output and of the weight gradients from the first variant's (all variants compute
the same maths unless their hyper-parameters change it).

    python tools/benchmark_fusion.py --fusion relation --variant pair_chunk=0 --variant pair_chunk=null \\
        [--batch 64 --tokens 65 --dim 128 --fusion-dim 128 --rounds 5 --threads 2] [--json out.json]

A variant is ``key=value[,key=value]`` of the fusion's hyper-parameters (YAML values: ``null``, ``3``, ``sum``);
``--variant default`` is the fusion's defaults.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
import yaml
from torch import nn

from mmfuse.cli import run_tool
from mmfuse.encoders.base import EncoderOutput
from mmfuse.errors import ConfigError
from mmfuse.fusion import build_fusion, list_fusions


def parse_variant(text: str) -> dict[str, Any]:
    """``"a=1,b=null"`` -> ``{"a": 1, "b": None}``; ``"default"`` -> ``{}``."""
    if text == "default":
        return {}
    out: dict[str, Any] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--variant {text!r}: expected key=value[,key=value] or 'default', got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def make_inputs(batch: int, tokens: int, dim: int, seed: int) -> dict[str, EncoderOutput]:
    """Random text and image inputs ``[batch, tokens, dim]``, every token valid; they require grad."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name in ("text", "image"):
        x = torch.randn(batch, tokens, dim, generator=gen)
        out[name] = EncoderOutput(tokens=x.requires_grad_(), mask=torch.ones(batch, tokens, dtype=torch.bool),
                                  pooled=x[:, 0])
    return out


def step(fusion: nn.Module, inputs: dict[str, EncoderOutput]) -> tuple[float, int, torch.Tensor, torch.Tensor]:
    """One forward + backward: seconds, bytes saved for backward, output, flat weight gradients."""
    fusion.zero_grad(set_to_none=True)
    saved = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[0] += t.numel() * t.element_size()
        return t

    t0 = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fusion(inputs).pooled
    out.square().mean().backward()
    seconds = time.perf_counter() - t0
    grads = torch.cat([p.grad.flatten() for p in fusion.parameters() if p.grad is not None])
    return seconds, saved[0], out.detach(), grads


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fusion", required=True, help=f"a registered fusion: {', '.join(list_fusions())}")
    p.add_argument("--variant", action="append", required=True, help="key=value[,key=value] or 'default'")
    p.add_argument("--batch", type=int, default=64, help="questions a step")
    p.add_argument("--tokens", type=int, default=65, help="tokens per modality (ViT patch 8 at 64 px: 65)")
    p.add_argument("--dim", type=int, default=128, help="encoder width of both modalities")
    p.add_argument("--fusion-dim", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5, help="timed steps per variant (after one warm-up each)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.fusion not in list_fusions():
        raise ConfigError(f"--fusion {args.fusion!r} is not registered; choose one of {list_fusions()}")
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = [parse_variant(v) for v in args.variant]
    fusions = []
    for v in variants:
        torch.manual_seed(args.seed)  # the same initial weights for every variant
        try:
            fusions.append(build_fusion(args.fusion, {"text": args.dim, "image": args.dim}, args.fusion_dim, **v))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"--variant {v}: {e}") from e
    inputs = make_inputs(args.batch, args.tokens, args.dim, args.seed)
    first = [step(f, inputs) for f in fusions]  # warm-up; also the values compared
    times: list[list[float]] = [[] for _ in fusions]
    for _ in range(args.rounds):
        for i, f in enumerate(fusions):
            times[i].append(step(f, inputs)[0])
    base = statistics.median(times[0])
    rows = []
    print(f"{args.fusion}: batch {args.batch}, {args.tokens} tokens, dim {args.dim}, {torch.get_num_threads()} "
          f"threads, {args.rounds} rounds, {platform.processor() or platform.machine()}")
    for v, t, (_, saved, out, grads) in zip(args.variant, times, first, strict=True):
        med = statistics.median(t)
        ref = first[0][3]
        comparable = grads.shape == ref.shape  # a variant that changes the weights' shapes is another model
        row = {"variant": v, "median_s": med, "speedup_vs_first": base / med, "saved_mb": saved / 2**20,
               "max_out_diff": float((out - first[0][2]).abs().max()),
               "max_grad_rel_diff": float((grads - ref).abs().max() / ref.abs().max().clamp_min(1e-30))
               if comparable else None}
        rows.append(row)
        diff = f"{row['max_grad_rel_diff']:.2e}" if comparable else "n/a (other weight shapes)"
        print(f"  {v:<28} {med:8.3f} s  x{row['speedup_vs_first']:.2f}  saved for backward {row['saved_mb']:9.1f} MB"
              f"  max |out diff| {row['max_out_diff']:.2e}  max grad rel diff {diff}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
