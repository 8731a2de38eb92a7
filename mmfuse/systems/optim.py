"""AdamW with per-group learning rates / decay and the warm-up + cosine schedule."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, cast

import torch
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from torch import nn


def warmup_cosine(step: int, total: int, warmup: int, min_ratio: float = 0.0) -> float:
    """Learning-rate multiplier: linear warm-up to 1 over ``warmup`` steps, then cosine to ``min_ratio``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(model: nn.Module, o: dict[str, Any], total_steps: int,
                    extra: Iterable[nn.Parameter] = ()) -> OptimizerLRSchedulerConfig:
    """AdamW (``encoder_lr`` for pretrained encoders, no decay on biases/norms/scalars) and a
    per-step warm-up + cosine schedule, in Lightning's ``configure_optimizers`` format.

    ``extra``: parameters outside the model trained at ``lr`` without decay (e.g. the learned
    log-variances of ``uncertainty`` loss weighting).
    """
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        enc = name.split(".")[1] if name.startswith("encoders.") else None
        # an encoders.<enc>.* parameter: the model has an ``encoders`` ModuleDict (a FusionModel)
        lr = (o["encoder_lr"] if enc and getattr(cast(nn.ModuleDict, model.encoders)[enc], "is_pretrained", False)
              else o["lr"])
        wd = 0.0 if p.ndim <= 1 else o["weight_decay"]
        groups.setdefault((lr, wd), []).append(p)
    for p in extra:
        if p.requires_grad:
            groups.setdefault((o["lr"], 0.0), []).append(p)
    params = [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]
    opt = torch.optim.AdamW(params, betas=tuple(o["betas"]))
    total = max(1, total_steps)
    warmup = int(o["warmup_ratio"] * total)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, total, warmup, o["min_lr_ratio"]))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
