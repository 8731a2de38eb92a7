"""Per-task gradients on the shared parameters (encoders + fusion): what ``gradnorm`` and ``pcgrad``
need every step, and the conflict signal (cosine between task gradients) every N steps."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from mmfuse.objectives.multitask import LossWeighting, gradient_cosines


def shared_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Trainable parameters every task's gradient flows through: the encoders and the fusion."""
    return [(n, p) for n, p in model.named_parameters()
            if p.requires_grad and n.startswith(("encoders.", "fusion."))]


class TaskGradients:
    """Computes ``∂L_t/∂θ_shared`` per task with ``torch.autograd.grad`` (graph retained) before
    Lightning's own backward of the total loss.

    For ``pcgrad`` the weighting's combined gradient replaces ``Σ_t w_t g_t`` on the shared
    parameters: the difference is added to ``.grad`` after the backward (:meth:`apply`), so
    regularisation terms and gradient accumulation keep working. Cost: one extra backward pass
    per task on the steps where gradients are needed.

    Args:
        model: the ``FusionModel``.
        weighting: the loss weighting (its ``grads`` attribute says what it needs).
        every_n: conflict cosines every N optimiser steps (0: never).
    """

    def __init__(self, model: nn.Module, weighting: LossWeighting, every_n: int) -> None:
        self.named = shared_parameters(model)
        self.params = [p for _, p in self.named]
        fusion = [i for i, (n, p) in enumerate(self.named) if n.startswith("fusion.") and p.ndim >= 2]
        # GradNorm's W: the last shared weight matrix (registration order: the fusion's output side)
        self.last = fusion[-1] if fusion else len(self.params) - 1
        self.weighting, self.every_n = weighting, every_n
        self.delta: list[Tensor | None] | None = None
        self.cos_sum: dict[str, float] = {}
        self.cos_count = 0

    def step(self, losses: Mapping[str, Tensor], weights: Mapping[str, float], global_step: int) -> None:
        """Call after the weighting's forward and before the backward of the total."""
        self.delta = None
        need = self.weighting.grads
        conflict = self.every_n > 0 and global_step % self.every_n == 0
        if len(losses) < 2 or not self.params or (need == "none" and not conflict):
            return
        full = need == "all" or conflict
        params = self.params if full else [self.params[self.last]]
        grads = {t: list(torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True))
                 for t, loss in losses.items()}  # unweighted, per task, aligned with params
        c: float | Tensor | None  # a cosine in the first loop, a combined gradient (or None) in the last
        if conflict:
            for (a, b), c in gradient_cosines(grads).items():
                key = f"{a}~{b}"
                self.cos_sum[key] = self.cos_sum.get(key, 0.0) + c
            self.cos_count += 1
        if need == "last":
            self.weighting.observe(losses, {t: [g[self.last]] for t, g in grads.items()} if full else grads)
        elif need == "all":
            combined = self.weighting.combine(grads)
            if combined is not None:
                self.delta = []
                for i, c in enumerate(combined):
                    plain = [weights[t] * g[i] for t, g in grads.items() if g[i] is not None]  # Σ_t w_t g_t
                    if c is not None and plain:
                        c = c - torch.stack(plain).sum(0)
                    self.delta.append(c)

    def apply(self, scale: float = 1.0) -> None:
        """After the backward: shared ``.grad += scale·(combined − Σ w_t g_t)`` (``scale``: AMP loss scale).

        Under DDP the per-task gradients are local, so the correction is averaged across processes
        like the gradients it corrects."""
        if self.delta is None:
            return
        dist = torch.distributed.is_available() and torch.distributed.is_initialized()
        for p, d in zip(self.params, self.delta):
            if d is None:
                continue
            d = d * scale
            if dist:
                torch.distributed.all_reduce(d)
                d = d / torch.distributed.get_world_size()
            p.grad = d.clone() if p.grad is None else p.grad + d
        self.delta = None

    def epoch_cosines(self) -> dict[str, float]:
        """Mean cosine per task pair over this epoch's measured steps; resets the sums."""
        out = {k: v / self.cos_count for k, v in self.cos_sum.items()} if self.cos_count else {}
        self.cos_sum, self.cos_count = {}, 0
        return out
