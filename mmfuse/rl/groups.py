"""Group sampling and DAPO's dynamic sampling: G answers per question, kept together, and rollouts of
several question batches joined into one PPO batch.

Layout: a question batch of B questions gives ``N = B * G`` answer rows, question b's answers at rows
``b*G .. b*G + G - 1`` (:func:`group_rows`), so ``x.view(B, G)`` is the group view of any ``x [N]``.
The questions and images are encoded and fused once; the fused rows are repeated (``select_rows``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

import torch
from torch import Tensor
from torch.nn import functional as F

from mmfuse.fusion.base import FusionOutput
from mmfuse.rl.rollout import Rollout

__all__ = ["cat_fused", "cat_rollouts", "group_rows", "repeat_batch", "select_rollout", "uniform_groups"]


def group_rows(questions: int, group: int, device: torch.device | str | None = None) -> Tensor:
    """``[B * G]`` long: each answer row's question, ``[0]*G + [1]*G + ...`` (a question's G answers together)."""
    return torch.arange(questions, device=device).repeat_interleave(group)


def repeat_batch(batch: Mapping[str, Any], group: int) -> dict[str, Any]:
    """The batch as the reward sees it: every per-question list (``answers``, ``question_id``, types, ...:
    a list or tuple as long as ``question_id``) with each item repeated G times in place; everything else
    (tensors, whose first dimension may be images rather than questions) as it is."""
    n = len(batch["question_id"])
    return {k: [x for x in v for _ in range(group)] if isinstance(v, (list, tuple)) and len(v) == n else v
            for k, v in batch.items()}


def uniform_groups(scores: Tensor, group: int) -> Tensor:
    """``[B]`` bool: the groups whose G scores (``scores [B * G]``) are all equal. A critic-free estimator
    gives them a zero advantage, so DAPO's dynamic sampling drops them (Yu et al. 2025). G = 1: every group."""
    if group < 1 or scores.shape[0] % group:
        raise ValueError(f"{scores.shape[0]} scores do not split into groups of {group}")
    g = scores.view(-1, group)  # [B, G]
    return (g == g[:, :1]).all(1)  # [B]


def select_rollout(roll: Rollout, rows: Tensor) -> Rollout:
    """The answer rows ``rows [n]`` of every per-answer field of ``roll`` (``[n, T]``, ``[n]``, texts)."""
    idx = rows.tolist()
    # cast: field by field, a tensor stays a tensor, None stays None and the texts stay a list
    return Rollout(*cast(Iterator[Any], (None if x is None else [x[i] for i in idx] if isinstance(x, list)
                                         else x[rows] for x in roll)))


def _pad_to(x: Tensor, width: int, value: float | bool | int) -> Tensor:
    """``x [n, w, ...]`` padded along dim 1 to ``width`` with ``value``."""
    extra = width - x.shape[1]
    if extra == 0:
        return x
    pad = [0, 0] * (x.dim() - 2) + [0, extra]  # F.pad lists the last dimension first
    return F.pad(x, pad, value=value)


def cat_rollouts(parts: Sequence[Rollout], pad_id: int) -> Rollout:
    """One rollout from several (rows in order), ``[N, T]`` fields right-padded to the longest ``T``
    (``pad_id`` tokens, masked, zeros). A part without ``last_value`` (terminal ends) gets 0 there: a
    bootstrap of 0 is a terminal end, so GAE reads the joined rows as it read each part."""
    if len(parts) == 1:
        return parts[0]
    width = max(p.tokens.shape[1] for p in parts)
    pads: dict[str, float | bool | int] = {"tokens": pad_id, "mask": False, "dones": False}
    fields: dict[str, Any] = {}
    for name in Rollout._fields:
        xs = [getattr(p, name) for p in parts]
        if name == "texts":
            fields[name] = [t for x in xs for t in x]
        elif name == "last_value":
            boot = [p.scores.new_zeros(p.scores.shape) if x is None else x for p, x in zip(parts, xs)]  # [n] each
            fields[name] = None if all(x is None for x in xs) else torch.cat(boot)
        elif xs[0].dim() == 2:
            fields[name] = torch.cat([_pad_to(x, width, pads.get(name, 0.0)) for x in xs])
        else:
            fields[name] = torch.cat(xs)
    return Rollout(**fields)


def cat_fused(parts: Sequence[FusionOutput]) -> FusionOutput:
    """One ``FusionOutput`` from several (rows in order): tokens padded to the longest ``N`` with masked
    slots (the generator never reads a masked memory slot); attention maps dropped."""
    if len(parts) == 1:
        return parts[0]
    pooled = torch.cat([p.pooled for p in parts])  # [sum B, D]
    if all(p.tokens is None for p in parts):
        return FusionOutput(pooled)
    if any(p.tokens is None for p in parts):
        raise ValueError("cannot join fused features with and without tokens")
    width = max(p.tokens.shape[1] for p in parts if p.tokens is not None)
    tokens = torch.cat([_pad_to(p.tokens, width, 0.0) for p in parts if p.tokens is not None])  # [sum B, N, D]
    masks = [torch.ones(p.tokens.shape[:2], dtype=torch.bool, device=pooled.device) if p.mask is None else p.mask.bool()
             for p in parts if p.tokens is not None]
    return FusionOutput(pooled, tokens, torch.cat([_pad_to(m, width, False) for m in masks]))
