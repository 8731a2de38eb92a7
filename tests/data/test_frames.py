"""Frame sampling: exact indices for known lengths, random segments inside their segments, strides."""

from __future__ import annotations

import pytest
import torch

from mmfuse.data.frames import sample_frame_indices


@pytest.mark.parametrize("n,t,want", [
    (16, 8, [1, 3, 5, 7, 9, 11, 13, 15]),   # middle of each 2-frame segment
    (10, 4, [1, 3, 6, 8]),                   # floor((i + 0.5) * 10 / 4) = floor(1.25, 3.75, 6.25, 8.75)
    (8, 8, [0, 1, 2, 3, 4, 5, 6, 7]),         # as many frames as asked: all of them
    (1, 3, [0, 0, 0]),                        # one frame repeated
    (3, 8, [0, 0, 0, 1, 1, 2, 2, 2]),         # shorter than the clip: padded by repeats, in order
    (100, 1, [50]),                           # one frame: the middle one
])
def test_uniform_indices_are_exact(n: int, t: int, want: list[int]) -> None:
    assert sample_frame_indices(n, t, "uniform") == want


def test_random_segment_draws_one_frame_inside_each_segment() -> None:
    g = torch.Generator().manual_seed(0)
    seen: list[set[int]] = [set() for _ in range(4)]
    for _ in range(300):
        idx = sample_frame_indices(10, 4, "random_segment", generator=g)
        # segments of 10 frames into 4: [0,2) [2,5) [5,7) [7,10)
        for i, (lo, hi) in enumerate([(0, 2), (2, 5), (5, 7), (7, 10)]):
            assert lo <= idx[i] < hi
            seen[i].add(idx[i])
    assert seen == [{0, 1}, {2, 3, 4}, {5, 6}, {7, 8, 9}], "every frame of every segment gets drawn"


def test_random_segment_is_reproducible_from_the_generator() -> None:
    a = sample_frame_indices(50, 8, "random_segment", generator=torch.Generator().manual_seed(3))
    b = sample_frame_indices(50, 8, "random_segment", generator=torch.Generator().manual_seed(3))
    assert a == b and a == sorted(a)


def test_short_video_in_training_is_padded_like_evaluation() -> None:
    assert sample_frame_indices(3, 8, "random_segment", generator=torch.Generator()) == [0, 0, 0, 1, 1, 2, 2, 2]


def test_stride_gives_a_centred_clip_or_a_random_start() -> None:
    assert sample_frame_indices(20, 4, "uniform", stride=3) == [5, 8, 11, 14]  # span 10, start (20-10)//2
    g = torch.Generator().manual_seed(0)
    starts = set()
    for _ in range(200):
        idx = sample_frame_indices(20, 4, "random_segment", stride=3, generator=g)
        assert [b - a for a, b in zip(idx, idx[1:])] == [3, 3, 3] and 0 <= idx[0] <= 10
        starts.add(idx[0])
    assert starts == set(range(11))
    # shorter than the span (1 + 3*3 = 10 frames): evenly over the whole video
    assert sample_frame_indices(8, 4, "uniform", stride=3) == [1, 3, 5, 7]


@pytest.mark.parametrize("kwargs,match", [
    ({"num_available": 0, "num_frames": 4}, "at least one frame"),
    ({"num_available": 5, "num_frames": 0}, "at least one frame"),
    ({"num_available": 5, "num_frames": 2, "mode": "random"}, "unknown frame sampling 'random'"),
    ({"num_available": 5, "num_frames": 2, "stride": 0}, "stride must be >= 1"),
])
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sample_frame_indices(**kwargs)
