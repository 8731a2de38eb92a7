#!/usr/bin/env python
"""Training throughput: the mmfuse system inside Lightning's Trainer vs a plain PyTorch loop.

Both train the same ``nn.Module`` (same initial weights) on the same pre-built batches with
the same optimiser, schedule and gradient clipping; the Lightning side also runs everything
a user gets by default (the metric update, logging, the progress bar). Rounds alternate
(Lightning, plain, Lightning, ...) so machine noise hits both; medians and their ratio are
printed, all from one run.

    python tools/benchmark.py --config configs/experiments/easy_vqa.yaml [--steps 40 --rounds 5] [key=value ...]

The VQA scorer's speed (214k questions x 10 answers vs a plain port of the official script):

    python tools/benchmark.py scorer [--questions 214000 --rounds 3]      (= tools/benchmark_scorer.py)
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lightning as L
import torch
from torch.utils.data import DataLoader

import mmfuse
from mmfuse.cli import run_tool
from mmfuse.config import to_container
from mmfuse.objectives import VQA_LOSSES
from mmfuse.runner import progress_bar, system_kwargs
from mmfuse.systems import SupervisedSystem
from mmfuse.systems.supervised import build_optimizer


class _EpochTimer(L.Callback):
    """Wall time of the training epoch: every per-batch cost Lightning adds is inside it."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seconds = time.perf_counter() - self.t0


def lightning_round(system: SupervisedSystem, batches: list[dict[str, Any]], cfg: Any, tmp: str) -> float:
    timer = _EpochTimer()
    trainer = L.Trainer(max_epochs=1, accelerator=cfg.trainer.accelerator, devices=1, precision=cfg.trainer.precision,
                        gradient_clip_val=cfg.optim.grad_clip or None, limit_val_batches=0, num_sanity_val_steps=0,
                        enable_checkpointing=False, logger=L.pytorch.loggers.CSVLogger(tmp, name="bench"),
                        log_every_n_steps=cfg.trainer.log_every_n_steps, enable_model_summary=False,
                        enable_progress_bar=cfg.trainer.enable_progress_bar, callbacks=[timer, *progress_bar(cfg)])
    trainer.fit(system, train_dataloaders=DataLoader(batches, batch_size=None, shuffle=False))
    return timer.seconds


def plain_round(model: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any, loss_fn: Any,
                batches: list[dict[str, Any]], device: torch.device, clip: float, autocast: bool) -> float:
    model.train()
    t0 = time.perf_counter()
    for batch in batches:
        batch = L.pytorch.utilities.move_data_to_device(batch, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = loss_fn(model(batch)["vqa"], batch["targets"]["vqa"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        sched.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["scorer"]:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import benchmark_scorer

        return benchmark_scorer.main(argv[1:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", default=None,
                   help="experiment YAML (repeatable; default configs/experiments/easy_vqa.yaml)")
    p.add_argument("--steps", type=int, default=40, help="training batches per round")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds per side (after one warm-up round each)")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    cfg = mmfuse.load_config(args.config or ["configs/experiments/easy_vqa.yaml"], args.overrides)
    L.seed_everything(cfg.seed)
    if cfg.trainer.num_threads:
        torch.set_num_threads(cfg.trainer.num_threads)
    dm = mmfuse.build_datamodule(cfg)
    dm.prepare()
    for split in ("train", "val", "test"):  # every answer / question type the metrics will meet
        dm.split_records(split)
    system = SupervisedSystem(to_container(cfg), dm.vocab.answers, **system_kwargs(dm))
    dm.img_size = system.model.image_size
    dm.setup("fit")
    it = iter(dm.train_dataloader())
    batches = [next(it) for _ in range(args.steps)]
    questions = sum(len(b["question_id"]) for b in batches)

    # The plain loop trains a copy of the same module with the same optimiser and schedule.
    model = copy.deepcopy(system.model)
    conf = build_optimizer(model, to_container(cfg)["optim"], args.steps * (args.rounds + 1))
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    accel = cfg.trainer.accelerator
    device = torch.device("cuda" if (accel in ("auto", "gpu", "cuda") and torch.cuda.is_available()) else "cpu")
    model.to(device)
    autocast = "bf16" in str(cfg.trainer.precision)
    loss_fn = VQA_LOSSES[cfg.tasks.vqa.loss]  # the vqa task's loss on its logits, as the system computes it

    lit, plain = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds + 1):  # round 0 warms both up and is not counted
            tl = lightning_round(system, batches, cfg, tmp)
            tp = plain_round(model, opt, sched, loss_fn, batches, device, cfg.optim.grad_clip, autocast)
            if r > 0:
                lit.append(questions / tl)
                plain.append(questions / tp)
            print(f"round {r}{' (warm-up)' if r == 0 else ''}: lightning {questions / tl:.1f} q/s, "
                  f"plain {questions / tp:.1f} q/s", flush=True)
    ml, mp = statistics.median(lit), statistics.median(plain)
    result = {"device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(),
              "threads": torch.get_num_threads(), "steps_per_round": args.steps, "rounds": args.rounds,
              "questions_per_round": questions, "lightning_samples_per_s": lit, "plain_samples_per_s": plain,
              "median_lightning": ml, "median_plain": mp, "ratio": ml / mp}
    print(f"\nmedian training samples/s: lightning {ml:.1f}, plain PyTorch {mp:.1f}, ratio {ml / mp:.3f} "
          f"({result['device']}, {result['threads']} threads, {questions} questions/round)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
