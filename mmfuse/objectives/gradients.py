"""Gradient surgery and the conflict signal between tasks: pure functions on per-task gradients."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor


def pcgrad_project(
    grads: list[Tensor], generator: torch.Generator | None = None, shuffle: bool = True
) -> list[Tensor]:
    """PCGrad gradient surgery (Yu et al. 2020, Algorithm 1); pure, the inputs are not modified.

    ``grads``: K tensors of one common (any) shape. For each task i, ``g_i^PC`` starts as ``g_i``
    and for each other task j (random order from ``generator`` when ``shuffle``, else ascending)
    is projected off the ORIGINAL ``g_j`` if they conflict: ``g_i^PC -= min(g_i^PC·g_j, 0)/||g_j||² g_j``.
    A zero ``g_j`` is skipped. Returns K new tensors with the input shapes and dtypes.
    """
    flat = [g.reshape(-1) for g in grads]  # K x [N]
    sq = [torch.dot(f, f) for f in flat]  # K x [] squared norms ||g_j||²
    # a zero g_j has dot == 0 with anything, so dividing by 1 instead just yields coef 0 (skip)
    denom = [torch.where(s > 0, s, torch.ones_like(s)) for s in sq]
    out = []
    for i, g in enumerate(flat):
        order = torch.randperm(len(flat), generator=generator).tolist() if shuffle else range(len(flat))
        pc = g.clone()  # [N]
        for j in order:
            if j == i:
                continue
            # branch-free (no host sync): coef = 0 when not conflicting, and pc - 0*g_j == pc exactly
            coef = torch.dot(pc, flat[j]).clamp(max=0) / denom[j]  # []
            pc = pc - coef * flat[j]
        out.append(pc.view_as(grads[i]))
    return out


def gradient_cosines(grads: Mapping[str, Sequence[Tensor | None]]) -> dict[tuple[str, str], float]:
    """Cosine similarity of each pair of tasks' gradients, ``{(a, b): cos}`` with a before b.

    A task's gradient is a list of per-parameter tensors (aligned across tasks), flattened and
    concatenated. A parameter that either task has as ``None`` is skipped for both, so the cosine
    is over the parameters both tasks reach. 0.0 when either norm is 0.
    """
    names = list(grads)
    out: dict[tuple[str, str], float] = {}
    for ia, a in enumerate(names):
        for b in names[ia + 1 :]:
            if len(grads[a]) != len(grads[b]):
                raise ValueError(f"tasks {a!r} and {b!r} have {len(grads[a])} vs {len(grads[b])} gradients")
            acc = torch.zeros(3, dtype=torch.float64)  # [3]: a·b, ||a||², ||b||²
            for ga, gb in zip(grads[a], grads[b]):
                if ga is not None and gb is not None:
                    x, y = ga.detach().double().reshape(-1), gb.detach().double().reshape(-1)  # [n]
                    acc = acc.to(x.device) + torch.stack([x @ y, x @ x, y @ y])  # summed on device: one sync
            dot, na, nb = acc.tolist()
            out[(a, b)] = dot / math.sqrt(na * nb) if na > 0 and nb > 0 else 0.0
    return out
