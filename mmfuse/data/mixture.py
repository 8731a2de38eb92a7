"""Training on several datasets at once: every batch comes from ONE dataset (each may train
different tasks), and a sampling strategy decides which dataset each step uses.

``MixtureDataset`` concatenates list-indexed batch datasets (like ``QABatchDataset``) into one
global index space; ``MixtureBatchSampler`` combines their batch samplers and yields lists of
*global* indices, so the usual ``DataLoader(ds, sampler=sampler, batch_size=None)`` works
unchanged.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Mapping, Sequence, Sized
from typing import Any, cast

import torch
from torch.utils.data import Dataset, Sampler

from mmfuse.data.batching import PaddingBatch
from mmfuse.data.resumable import SeededBatch

STRATEGIES = ("proportional", "round_robin", "temperature")
# Evaluation only: each sub-batch exactly once, dataset after dataset (no mixing, no repeats).
SEQUENTIAL = "sequential"


def mixture_probabilities(sizes: Sequence[int], strategy: str, temperature: float = 1.0) -> list[float]:
    """Long-run share of steps each dataset gets.

    Args:
        sizes: dataset sizes (the caller passes numbers of training batches per epoch).
        strategy: ``proportional`` (``n_i / sum n``), ``temperature`` (``∝ n_i ** (1/T)``:
            T=1 is proportional, T→∞ uniform) or ``round_robin`` (``1/K`` each).
        temperature: T for the ``temperature`` strategy; must be > 0 (``math.inf`` is uniform).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown mixture strategy {strategy!r}; valid: {', '.join(STRATEGIES)}")
    if not sizes:
        raise ValueError("mixture needs at least one dataset size")
    for i, n in enumerate(sizes):
        if not n > 0:
            raise ValueError(f"dataset size at index {i} must be > 0, got {n}")
    if strategy == "round_robin":
        return [1.0 / len(sizes)] * len(sizes)
    exponent = 1.0
    if strategy == "temperature":
        if not temperature > 0:  # also rejects NaN
            raise ValueError(f"temperature must be > 0, got {temperature}")
        exponent = 1.0 / temperature
    # Work in log space, shifted by the max, so large sizes with small T cannot overflow.
    logs = [exponent * math.log(n) for n in sizes]
    top = max(logs)
    weights = [math.exp(v - top) for v in logs]
    total = sum(weights)
    return [w / total for w in weights]


class MixtureBatchSampler(Sampler[list[int]]):
    """Yields batches (lists of global indices), each drawn from one sub-sampler.

    Sub-sampler ``i`` yields lists of local indices; ``offsets[i]`` is added to make them
    global (use ``MixtureDataset.offsets``).

    Each sub-sampler is iterated lazily and, when exhausted, re-iterated: a small dataset is
    revisited (upsampled) within an epoch, while a large one may not be finished — its
    unfinished pass is dropped at the end of the epoch and the next epoch starts a new pass.
    Use shuffling sub-samplers for training, otherwise an under-sampled dataset keeps
    showing only the head of its fixed order.

    Args:
        samplers: one batch sampler per dataset.
        offsets: global index of each dataset's first item.
        strategy: one of ``STRATEGIES``, or ``"sequential"`` (evaluation: every sub-batch once,
            dataset after dataset).
        temperature: T for the ``temperature`` strategy.
        seed: base seed; epoch ``e`` draws datasets with ``seed + e``.
        num_batches: steps per epoch (default: sum of the sub-samplers' lengths).
        sizes: sizes for the mixing probabilities (default: the sub-samplers' lengths).
    """

    def __init__(self, samplers: Sequence[Sampler[list[int]]], offsets: Sequence[int],
                 strategy: str = "proportional", temperature: float = 1.0, seed: int = 0,
                 num_batches: int | None = None, sizes: Sequence[int] | None = None) -> None:
        if not samplers:
            raise ValueError("MixtureBatchSampler needs at least one sub-sampler")
        if len(offsets) != len(samplers):
            raise ValueError(f"{len(offsets)} offsets for {len(samplers)} samplers")
        if strategy not in STRATEGIES and strategy != SEQUENTIAL:
            raise ValueError(f"unknown mixture strategy {strategy!r}; "
                             f"valid: {', '.join(STRATEGIES + (SEQUENTIAL,))}")
        if strategy == SEQUENTIAL and num_batches is not None:
            raise ValueError("sequential mode covers every batch exactly once; num_batches must be None")
        if num_batches is not None and num_batches <= 0:
            raise ValueError(f"num_batches must be > 0, got {num_batches}")
        if sizes is not None and len(sizes) != len(samplers):
            raise ValueError(f"{len(sizes)} sizes for {len(samplers)} samplers")
        self.samplers, self.offsets = list(samplers), [int(o) for o in offsets]
        self.strategy, self.temperature, self.seed = strategy, temperature, seed
        self.num_batches = num_batches
        self.probabilities: list[float] | None = None
        if strategy in ("proportional", "temperature"):
            # Validate (and fix) the probabilities now so a bad config fails at build time.
            self.probabilities = mixture_probabilities(
                list(sizes) if sizes is not None else [len(cast(Sized, s)) for s in self.samplers],
                strategy, temperature)
        self.epoch = 0
        self.last_counts: list[int] = [0] * len(self.samplers)

    def set_epoch(self, epoch: int) -> None:
        """Store the epoch and forward it to sub-samplers that support it."""
        self.epoch = epoch
        for s in self.samplers:
            if hasattr(s, "set_epoch"):
                s.set_epoch(epoch)

    def __len__(self) -> int:
        if self.num_batches is not None:
            return self.num_batches
        return sum(len(cast(Sized, s)) for s in self.samplers)  # batch samplers have a length

    def _choices(self, epoch: int, steps: int) -> list[int]:
        """Dataset of every step of the epoch."""
        k = len(self.samplers)
        if self.strategy == "round_robin":
            return [t % k for t in range(steps)]
        g = torch.Generator().manual_seed(self.seed + epoch)
        probs = torch.tensor(self.probabilities, dtype=torch.float64)
        # One vectorised draw is equivalent to independent per-step draws, and much faster.
        return torch.multinomial(probs, steps, replacement=True, generator=g).tolist()

    def _start_pass(self, i: int, epoch: int, pass_no: int, stride: int) -> Iterator[list[int]]:
        """Begin pass ``pass_no`` of sub-sampler ``i`` in ``epoch``.

        Each pass gets its own sub-epoch ``epoch * stride + pass_no`` (``stride`` = epoch length
        bounds the passes per epoch): a sub-sampler's own auto-increment would reuse pass
        orders across epochs (epoch e's 2nd pass == epoch e+1's 1st), and this way an epoch
        depends only on (seed, epoch), not on what was iterated before.
        """
        s = self.samplers[i]
        if hasattr(s, "set_epoch"):
            s.set_epoch(epoch * stride + pass_no)
        return iter(s)

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self.epoch
        self.epoch += 1  # a fresh epoch next time even if nobody calls set_epoch
        k, steps = len(self.samplers), len(self)
        stride = max(1, steps)
        counts = [0] * k
        batch: list[int] | None  # a sub-sampler's batch; None once an iterator is exhausted
        if self.strategy == SEQUENTIAL:
            for i in range(k):
                for batch in self._start_pass(i, epoch, 0, stride):
                    counts[i] += 1
                    yield [j + self.offsets[i] for j in batch]
            self.last_counts = counts
            return
        iters: list[Iterator[list[int]] | None] = [None] * k  # lazily started
        passes = [0] * k
        for i in self._choices(epoch, steps):
            batch = None
            for _ in range(2):  # at most one restart: a fresh pass that yields nothing is an error
                if iters[i] is None:
                    iters[i] = self._start_pass(i, epoch, passes[i], stride)
                    passes[i] += 1
                batch = next(cast(Iterator[list[int]], iters[i]), None)  # started just above
                if batch is not None:
                    break
                iters[i] = None
            if batch is None:
                raise RuntimeError(f"sub-sampler {i} yielded no batches; cannot draw from it")
            counts[i] += 1
            yield [j + self.offsets[i] for j in batch]
        self.last_counts = counts


class MixtureDataset(Dataset):
    """Concatenation of list-indexed batch datasets (each ``ds[list_of_local_indices]`` returns
    a batch dict); a batch must come from one dataset and is tagged ``batch["dataset"]``.

    Args:
        datasets: name -> dataset; global indices follow the mapping's order.
    """

    def __init__(self, datasets: Mapping[str, Dataset]) -> None:
        if not datasets:
            raise ValueError("MixtureDataset needs at least one dataset")
        self.names: list[str] = list(datasets)
        self.datasets: list[Dataset] = [datasets[n] for n in self.names]
        self.lengths = [len(cast(Sized, d)) for d in self.datasets]  # list-indexed datasets have a length
        self.offsets: list[int] = []
        total = 0
        for n in self.lengths:
            self.offsets.append(total)
            total += n
        self.total = total

    def __len__(self) -> int:
        return self.total

    def _locate(self, global_index: int) -> tuple[int, int]:
        if not 0 <= global_index < self.total:
            raise IndexError(f"index {global_index} out of range for mixture of {self.total} items")
        # Rightmost offset <= index; empty datasets share an offset with the next one, and
        # bisect_right skips past them to the dataset that actually holds the index.
        d = bisect.bisect_right(self.offsets, global_index) - 1
        return d, global_index - self.offsets[d]

    def locate(self, global_index: int) -> tuple[str, int]:
        """``(dataset name, local index)`` of a global index."""
        d, local = self._locate(global_index)
        return self.names[d], local

    def __getitem__(self, idx: list[int]) -> dict[str, Any]:
        if not idx:
            raise ValueError("empty batch")
        located = [self._locate(int(i)) for i in idx]
        which = {d for d, _ in located}
        if len(which) > 1:
            involved = ", ".join(self.names[d] for d in sorted(which))
            raise ValueError(f"a batch must come from one dataset, got indices from: {involved}")
        d = located[0][0]
        local = [i for _, i in located]
        batch = self.datasets[d][SeededBatch(local, idx.seed) if isinstance(idx, SeededBatch) else local]
        if not isinstance(batch, Mapping):
            raise TypeError(f"dataset {self.names[d]!r} returned {type(batch).__name__}, expected a dict")
        # Shallow copy: never mutate a dict the sub-dataset might cache and hand out again.
        out = dict(batch)
        out["dataset"] = self.names[d]
        if isinstance(idx, PaddingBatch):  # evaluation keeps the processes in step with it; not scored
            out["padding"] = True
        return out
