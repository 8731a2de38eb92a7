"""DAPO's dynamic sampling for the RL stage (:class:`~mmfuse.systems.rl.RLSystem`, ``rl.skip_uniform_groups``):
drop the groups whose G answers scored alike and refill the batch with new training questions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, cast

import torch
from torch import Tensor

from mmfuse.fusion.base import FusionOutput
from mmfuse.rl.groups import group_rows, select_rollout, uniform_groups
from mmfuse.rl.rollout import Rollout

__all__ = ["Part", "RefillFn", "dynamic_sampling", "refill_batch"]

# (questions wanted, a batch they should be like, CPU generator) -> a batch of new training questions, or None
RefillFn = Callable[[int, dict[str, Any], torch.Generator], "dict[str, Any] | None"]


class Part(NamedTuple):
    """Answers from one question batch that go into the PPO update: the ``batch``, its question-level
    ``fused`` features (rollout time, no grad), ``qrows [n]`` each kept answer's question in it, and the
    kept answers' rollout ``roll`` (``[n, T]``)."""

    batch: dict[str, Any]
    fused: FusionOutput
    qrows: Tensor
    roll: Rollout


def refill_batch(system: Any, n: int, like: dict[str, Any]) -> dict[str, Any] | None:
    """``n`` new training questions for dynamic sampling, on this device, or ``None`` when there is no
    source: ``system.refill`` if set, else a random draw (from the rollout stream) from the datamodule's
    training split, from the same dataset as ``like`` in a mixture. A streamed split cannot be drawn from."""
    seed = int(torch.randint(0, 2**62, (1,), generator=system._rng(), device=system.device))
    gen = torch.Generator().manual_seed(seed)  # CPU: the draw never depends on the device
    if system.refill is not None:
        extra = system.refill(n, like, gen)
    else:
        trainer = getattr(system, "_trainer", None)  # None outside a fit
        ds = getattr(getattr(trainer, "datamodule", None), "datasets", {}).get("train")
        if ds is None or not hasattr(ds, "__getitem__") or not hasattr(ds, "__len__"):
            return None
        low, size = 0, len(ds)
        names = getattr(ds, "names", None)  # a mixture: a batch must come from one of its datasets
        if names is not None:
            d = names.index(like["dataset"]) if like.get("dataset") in names else 0
            low, size = ds.offsets[d], ds.lengths[d]
        extra = ds[(torch.randperm(size, generator=gen)[:n] + low).tolist()]
    if not extra or not extra.get("question_id"):
        return None  # an empty draw (e.g. every image unreadable)
    return cast(dict[str, Any], system.transfer_batch_to_device(extra, system.device, 0))


def dynamic_sampling(system: Any, first: Part) -> tuple[list[Part], dict[str, int]]:
    """DAPO's dynamic sampling (Yu et al. 2025): keep the groups whose G scores differ (a uniform group has
    a zero critic-free advantage: no gradient, only a smaller batch), refill with new questions until as many
    groups as ``first`` has questions, at most ``rl.refill_tries`` refills; past that, train on the groups
    kept. Returns the kept parts (whole groups, in order) and the counts logged."""
    g, want = system.group, int(first.fused.pooled.shape[0])
    kept: list[Part] = []
    have = dropped = refills = 0
    part: Part | None = first
    while part is not None:
        uniform = uniform_groups(part.roll.scores, g)  # [B_part]
        dropped += int(uniform.sum())
        groups = (~uniform).nonzero().squeeze(1)[: want - have]  # [k] kept questions, in order
        if len(groups):
            rows = (groups[:, None] * g + torch.arange(g, device=groups.device)).reshape(-1)  # [k * G] answers
            kept.append(Part(part.batch, part.fused, part.qrows[rows], select_rollout(part.roll, rows)))
            have += len(groups)
        part = None
        if have < want and refills < int(system.rl["refill_tries"]):
            extra = system.refill_batch(want, first.batch)  # the method: research code may replace it
            if extra is not None:
                refills += 1
                roll, fused = system.rollout(extra)
                part = Part(extra, fused, group_rows(fused.pooled.shape[0], g, system.device), roll)
    return kept, {"dropped_groups": dropped, "refills": refills, "groups": have}
