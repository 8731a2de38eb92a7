import math
import pickle
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from mmfuse.data.batching import GroupedBatchSampler
from mmfuse.data.mixture import STRATEGIES, MixtureBatchSampler, MixtureDataset, mixture_probabilities


class ListSampler(Sampler[list[int]]):
    """``n`` batches of two local indices ``[[0,1],[2,3],...]``, optionally shuffled per epoch."""

    def __init__(self, n: int, shuffle: bool = False, seed: int = 0) -> None:
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[list[int]]:
        order = list(range(self.n))
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()
        for b in order:
            yield [2 * b, 2 * b + 1]


class ToyDataset(Dataset):
    """List-indexed: returns the batch dict of a named toy dataset."""

    def __init__(self, name: str, n: int) -> None:
        self.name, self.n = name, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, idx: list[int]) -> dict[str, Any]:
        assert all(0 <= i < self.n for i in idx)
        return {"x": torch.as_tensor(idx), "src": self.name}


def shares(sampler: MixtureBatchSampler, offsets: list[int]) -> list[float]:
    which = Counter(max(d for d, o in enumerate(offsets) if b[0] >= o) for b in sampler)
    return [which[d] / len(sampler) for d in range(len(offsets))]


def test_mixture_probabilities_hand_values_and_errors() -> None:
    assert mixture_probabilities([100, 300], "proportional") == pytest.approx([0.25, 0.75])
    s = 10 + math.sqrt(300)  # n ** (1/2): 10 and 17.3205...
    assert mixture_probabilities([100, 300], "temperature", 2.0) == pytest.approx([10 / s, math.sqrt(300) / s])
    assert mixture_probabilities([100, 300], "temperature", 1.0) == pytest.approx([0.25, 0.75])
    assert mixture_probabilities([100, 300], "temperature", math.inf) == pytest.approx([0.5, 0.5])
    assert mixture_probabilities([100, 300], "round_robin") == [0.5, 0.5]
    assert mixture_probabilities([10**9, 1], "temperature", 0.01) == pytest.approx([1.0, 0.0])  # no overflow
    with pytest.raises(ValueError, match="round_robin"):
        mixture_probabilities([1, 2], "uniform")
    with pytest.raises(ValueError, match="index 1"):
        mixture_probabilities([5, 0, 3], "proportional")
    for t in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="temperature"):
            mixture_probabilities([1, 2], "temperature", t)
    assert "sequential" not in STRATEGIES


def test_sampled_shares_match_strategy() -> None:
    sizes, offsets = [10, 30, 60], [0, 20, 80]
    subs = [ListSampler(n, shuffle=True) for n in sizes]
    prop = MixtureBatchSampler(subs, offsets, "proportional", num_batches=20000)
    assert len(prop) == 20000
    assert shares(prop, offsets) == pytest.approx([0.1, 0.3, 0.6], abs=0.01)
    temp = MixtureBatchSampler(subs, offsets, "temperature", temperature=2.0, num_batches=20000)
    assert shares(temp, offsets) == pytest.approx(mixture_probabilities(sizes, "temperature", 2.0), abs=0.01)
    # Explicit sizes override the sub-samplers' lengths.
    even = MixtureBatchSampler(subs, offsets, "proportional", num_batches=20000, sizes=[1, 1, 1])
    assert shares(even, offsets) == pytest.approx([1 / 3] * 3, abs=0.01)


def test_round_robin_cycles_exactly() -> None:
    offsets = [0, 20, 80]
    rr = MixtureBatchSampler([ListSampler(n) for n in (10, 30, 60)], offsets, "round_robin", num_batches=300)
    firsts = [b[0] for b in rr]
    assert [max(d for d, o in enumerate(offsets) if f >= o) for f in firsts] == [0, 1, 2] * 100
    assert rr.last_counts == [100, 100, 100]
    # Unshuffled sub-samplers in order; dataset 0 (10 batches) wraps around every 10 visits.
    assert firsts[0::3][:12] == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 0, 2]
    assert firsts[1::3][:3] == [20, 22, 24]


def test_global_indices_map_back_through_dataset() -> None:
    ds = MixtureDataset({"a": ToyDataset("a", 20), "b": ToyDataset("b", 60), "c": ToyDataset("c", 120)})
    assert ds.offsets == [0, 20, 80] and ds.names == ["a", "b", "c"] and len(ds) == 200
    assert ds.locate(0) == ("a", 0) and ds.locate(19) == ("a", 19) and ds.locate(20) == ("b", 0)
    assert ds.locate(199) == ("c", 119)
    with pytest.raises(IndexError):
        ds.locate(200)
    gap = MixtureDataset({"a": ToyDataset("a", 2), "empty": ToyDataset("empty", 0), "b": ToyDataset("b", 2)})
    assert gap.offsets == [0, 2, 2] and gap.locate(2) == ("b", 0)  # an empty dataset owns no index
    sampler = MixtureBatchSampler([ListSampler(n) for n in (10, 30, 60)], ds.offsets, seed=3)
    for batch in sampler:
        located = [ds.locate(i) for i in batch]
        assert len({n for n, _ in located}) == 1
        out = ds[batch]
        assert out["dataset"] == out["src"] == located[0][0]
        assert out["x"].tolist() == [loc for _, loc in located]
    with pytest.raises(ValueError, match="a, b"):
        ds[[19, 20]]


def test_small_datasets_revisited_and_large_unfinished() -> None:
    # Dataset 0 has 3 shuffled batches but gets half the steps: every pass is a full new permutation.
    sampler = MixtureBatchSampler([ListSampler(3, shuffle=True), ListSampler(100, shuffle=True)], [0, 6],
                                  "round_robin", num_batches=30)
    small = [b[0] // 2 for b in sampler if b[0] < 6]
    passes = [small[i:i + 3] for i in range(0, 15, 3)]
    assert all(sorted(p) == [0, 1, 2] for p in passes)
    assert len({tuple(p) for p in passes}) > 1  # re-iteration reshuffles
    assert sampler.last_counts == [15, 15]  # the 100-batch dataset is not finished this epoch


def test_epochs_differ_and_are_reproducible() -> None:
    def make(seed: int = 0) -> MixtureBatchSampler:
        subs = [GroupedBatchSampler([[i] for i in range(n)], 2, shuffle=True) for n in (8, 24)]
        return MixtureBatchSampler(subs, [0, 8], "temperature", temperature=2.0, seed=seed)

    a, b = make(), make()
    e0, e1, e2 = list(a), list(a), list(a)
    assert e0 != e1 != e2  # epochs advance without set_epoch
    assert list(b) == e0  # same seed, same sequence
    b.set_epoch(2)
    assert list(b) == e2  # an epoch depends only on (seed, epoch)
    assert list(make(seed=1)) != e0
    a.set_epoch(7)
    assert a.epoch == 7 and all(sub.epoch == 7 for sub in a.samplers)  # forwarded to sub-samplers


def test_sequential_covers_every_batch_once_in_order() -> None:
    subs = [ListSampler(3), ListSampler(2), ListSampler(4)]
    seq = MixtureBatchSampler(subs, [0, 6, 10], "sequential")
    assert len(seq) == 9
    assert [b[0] for b in seq] == [0, 2, 4, 6, 8, 10, 12, 14, 16]
    assert seq.last_counts == [3, 2, 4]
    with pytest.raises(ValueError, match="num_batches"):
        MixtureBatchSampler(subs, [0, 6, 10], "sequential", num_batches=5)


def test_sampler_argument_errors() -> None:
    subs = [ListSampler(3), ListSampler(2)]
    with pytest.raises(ValueError, match="sequential"):
        MixtureBatchSampler(subs, [0, 6], "uniform")
    with pytest.raises(ValueError, match="offsets"):
        MixtureBatchSampler(subs, [0])
    with pytest.raises(ValueError, match="index 1"):
        MixtureBatchSampler([ListSampler(3), ListSampler(0)], [0, 6])
    with pytest.raises(RuntimeError, match="sub-sampler 1"):
        list(MixtureBatchSampler([ListSampler(3), ListSampler(0)], [0, 6], "round_robin"))


@pytest.mark.parametrize("workers", [0, 1])
def test_works_in_dataloader(workers: int) -> None:
    ds = MixtureDataset({"a": ToyDataset("a", 6), "b": ToyDataset("b", 10)})
    sampler = MixtureBatchSampler([ListSampler(3, shuffle=True), ListSampler(5, shuffle=True)], ds.offsets,
                                  "proportional", num_batches=12)
    pickle.loads(pickle.dumps(sampler))
    loader = DataLoader(ds, sampler=sampler, batch_size=None, num_workers=workers)
    batches = list(loader)
    assert len(batches) == len(loader) == 12
    assert all(b["dataset"] == b["src"] and b["x"].shape == (2,) for b in batches)
    assert sum(sampler.last_counts) == 12
