"""The training order as a pure function of (seed, epoch, position), so a run killed mid-epoch resumes with
the batches the killed one had not yet seen, augmented as they would have been.

:class:`ResumableBatchSampler` wraps the training batch sampler: it hands out each batch as a
:class:`SeededBatch` carrying ``batch_seed(seed, epoch, position)``, from which the dataset draws that
batch's augmentation and video clips (instead of one generator running through the epoch: that state lives
in whichever process decoded the batch, DataLoader workers included, and is lost with it), and it can start
an epoch at a given position (:meth:`ResumableBatchSampler.resume`). The datamodule saves
``{epoch, batches done}`` in each checkpoint and hands it back here on resume.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any, cast

import torch
from torch.utils.data import Sampler

_MIX = 0x9E3779B97F4A7C15  # the golden-ratio constant of splitmix64: spreads nearby (epoch, position) apart
_MASK = (1 << 63) - 1


def batch_seed(seed: int, epoch: int, position: int) -> int:
    """A 63-bit seed for the batch at ``position`` of ``epoch`` (splitmix64 finaliser over the three)."""
    x = (int(seed) * _MIX + int(epoch)) * _MIX + int(position)
    x &= (1 << 64) - 1
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & ((1 << 64) - 1)
    return (x ^ (x >> 31)) & _MASK


class SeededBatch(list):
    """A training batch's question indices plus ``seed``: the batch's own random source
    (:meth:`generator`), the same in any process and after any resume."""

    seed: int

    def __init__(self, indices: list[int], seed: int) -> None:
        super().__init__(indices)
        self.seed = seed

    def __reduce__(self) -> tuple:  # pickled to DataLoader workers with its seed
        return (SeededBatch, (list(self), self.seed))

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)


class ResumableBatchSampler(Sampler[list[int]]):
    """Yields ``sampler``'s batches of epoch ``e`` as :class:`SeededBatch` es; after :meth:`resume`, the next
    epoch starts at the given one and position (the earlier batches are drawn, as index lists only, and
    skipped: no data is loaded for them).

    ``sampler`` must give the same batches for the same epoch whatever ran before (mmfuse's grouped and
    mixture samplers depend only on (seed, epoch)); its ``set_epoch`` is called before each pass.
    """

    def __init__(self, sampler: Sampler[list[int]], seed: int) -> None:
        self.sampler, self.seed = sampler, int(seed)
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume(self, epoch: int, position: int) -> None:
        """The next pass is epoch ``epoch`` from its batch ``position`` on."""
        self.epoch, self.skip = int(epoch), int(position)

    def __len__(self) -> int:
        return len(cast(Sized, self.sampler))

    def __iter__(self) -> Iterator[list[int]]:
        epoch, skip = self.epoch, self.skip
        self.epoch, self.skip = epoch + 1, 0  # a fresh order next pass even if nobody calls set_epoch
        set_epoch = getattr(self.sampler, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)
        for position, batch in enumerate(iter(self.sampler)):
            if position >= skip:
                yield SeededBatch(list(batch), batch_seed(self.seed, epoch, position))


def training_position(trainer: Any) -> dict[str, int]:
    """Where a checkpoint written now stands in the training data: ``{"epoch", "batches"}``, the batches of
    the epoch already trained on (Lightning's own count; the batch it prefetched is not among them), or
    ``{}`` outside training."""
    if trainer is None or not trainer.training:
        return {}
    done = int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)
    if done >= trainer.num_training_batches:  # an end-of-epoch checkpoint: the next epoch starts afresh
        return {"epoch": int(trainer.current_epoch) + 1, "batches": 0}
    return {"epoch": int(trainer.current_epoch), "batches": done}


def resume_at(sampler: ResumableBatchSampler, position: dict[str, int], world_size: int) -> None:
    """Start ``sampler`` where :func:`training_position` said. With ``world_size`` processes each has
    trained on ``batches`` of its share; Lightning's distributed wrapper deals the epoch's batches out in
    turn, so the first ``batches * world_size`` of the epoch are the ones done."""
    if position:
        sampler.resume(position["epoch"], position["batches"] * world_size)
