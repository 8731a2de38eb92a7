#!/usr/bin/env python
"""Training speed of the full-size model on synthetic data: samples/s, peak accelerator memory and MFU.

BERT-base + ViT-B/16 at 224 px with cross-attention (configs/model/base_224.yaml), bf16 autocast, AdamW,
random question tokens and images (``--questions-per-image`` questions share each image, encoded once, as
on VQAv2). After ``--warmup`` steps, ``--steps`` are timed. Model FLOPs utilisation is the achieved FLOP/s
(FLOPs of one training step, forward and backward, counted by ``torch.utils.flop_counter.FlopCounterMode``)
over the device's dense bf16 peak (``--peak-tflops``; known GPUs are looked up by name).

    python tools/benchmark_gpu.py [--batch-size 128] [--steps 20] [--json out.json] [key=value ...]

It runs on a CPU too (slowly; tests use a tiny config: ``--config tests/configs/tiny.yaml``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from torch.utils.flop_counter import FlopCounterMode

import mmfuse
from mmfuse.cli import run_tool
from mmfuse.model import build_model
from mmfuse.objectives import VQA_LOSSES

# Dense bf16 tensor-core peaks from the vendors' data sheets (no sparsity), TFLOP/s; matched by substring.
PEAK_BF16_TFLOPS = {"H200": 989.4, "H100 SXM": 989.4, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 756.0,
                    "A100": 312.0, "L40S": 362.1, "L4": 121.0, "A10G": 70.0, "RTX 4090": 165.2}


def peak_tflops(device: torch.device, given: float | None) -> float | None:
    """The dense bf16 peak of ``device``: ``given``, else a known GPU's data-sheet figure, else None."""
    if given is not None:
        return given
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def synthetic_batch(batch: int, per_image: int, length: int, vocab: int, img: tuple[int, int], num_answers: int,
                    device: torch.device, generator: torch.Generator) -> dict[str, Any]:
    """``batch`` questions of ``length`` tokens on ``batch / per_image`` uint8 images, soft targets."""
    images = max(1, batch // per_image)
    ids = torch.randint(5, vocab, (batch, length), generator=generator)
    targets = torch.zeros(batch, num_answers)
    targets[torch.arange(batch), torch.randint(0, num_answers, (batch,), generator=generator)] = 1.0
    out = {"text": {"input_ids": ids, "attention_mask": torch.ones(batch, length, dtype=torch.long)},
           "image": torch.randint(0, 256, (images, 3, *img), dtype=torch.uint8, generator=generator),
           "image_index": torch.arange(batch) % images, "targets": targets}
    return {k: ({kk: vv.to(device) for kk, vv in v.items()} if isinstance(v, dict) else v.to(device))
            for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", default=None, help="default: configs/model/base_224.yaml")
    p.add_argument("--batch-size", type=int, default=128, help="questions per step")
    p.add_argument("--questions-per-image", type=int, default=4)
    p.add_argument("--question-length", type=int, default=20, help="tokens per question ([CLS] ... [SEP])")
    p.add_argument("--answers", type=int, default=3129, help="answer vocabulary (VQAv2's usual 3,129)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of the device, TFLOP/s")
    p.add_argument("--cpu", action="store_true", help="run on the CPU even when a GPU is there")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    args = p.parse_args(argv)
    cfg = mmfuse.load_config(args.config or ["configs/model/base_224.yaml"], args.overrides)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    torch.manual_seed(cfg.seed)
    vocab = int(cfg.model.text.tokenizer_vocab_size)
    model = build_model(cfg.model, num_answers=args.answers, text_vocab_size=vocab).to(device).train()
    bf16 = "bf16" in str(cfg.trainer.precision)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    loss_fn = VQA_LOSSES[cfg.tasks.vqa.loss]
    g = torch.Generator().manual_seed(cfg.seed)
    batches = [synthetic_batch(args.batch_size, args.questions_per_image, args.question_length, vocab,
                               model.image_size, args.answers, device, g) for _ in range(2)]

    def step(batch: dict[str, Any]) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(model(batch)["vqa"], batch["targets"])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    with FlopCounterMode(display=False) as counter:
        step(batches[0])
    flops = counter.get_total_flops()  # one training step: forward + backward
    for i in range(args.warmup):
        step(batches[i % 2])
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(args.steps):
        t0 = time.perf_counter()
        step(batches[i % 2])
        sync()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    peak = peak_tflops(device, args.peak_tflops)
    cpu = f"cpu ({torch.get_num_threads()} threads)"
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu,
        "precision": "bf16 autocast" if bf16 else "fp32", "batch_size": args.batch_size,
        "images_per_step": max(1, args.batch_size // args.questions_per_image), "steps": args.steps,
        "parameters": sum(p.numel() for p in model.parameters()), "step_seconds_median": med,
        "samples_per_s": args.batch_size / med, "tflops_per_step": flops / 1e12,
        "achieved_tflops": flops / med / 1e12, "peak_tflops": peak,
        "mfu": flops / med / 1e12 / peak if peak else None,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
    }
    mfu = f"{100 * result['mfu']:.1f}%" if result["mfu"] is not None else "n/a (pass --peak-tflops)"
    mem = f"{result['peak_memory_gib']:.1f} GiB" if result["peak_memory_gib"] is not None else "n/a (CPU)"
    print(f"{result['device']}, {result['precision']}, {result['parameters'] / 1e6:.0f}M parameters, "
          f"{args.batch_size} questions on {result['images_per_step']} images a step")
    print(f"samples/s {result['samples_per_s']:.1f} (median step {1000 * med:.1f} ms over {args.steps}); "
          f"{result['tflops_per_step']:.3f} TFLOP a step, {result['achieved_tflops']:.2f} TFLOP/s achieved; "
          f"MFU {mfu}; peak memory {mem}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
