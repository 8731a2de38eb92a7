"""Which frames of a video a clip takes: :func:`sample_frame_indices`.

A video of ``n`` frames gives a clip of ``T = num_frames`` frame indices, in time order:

* ``stride=None`` (default, TSN-style, Wang et al. 2016): the video is cut into ``T`` equal segments,
  segment ``i`` spanning frames ``[floor(i·n/T), floor((i+1)·n/T))``.

  - ``uniform`` (evaluation, deterministic): the middle frame of each segment, ``floor((i + 0.5)·n/T)``.
  - ``random_segment`` (training): one frame drawn uniformly inside each segment.

* ``stride=k``: a clip of ``T`` frames ``k`` apart (span ``(T-1)·k + 1``).

  - ``uniform``: the clip centred in the video, start ``(n - span) // 2``.
  - ``random_segment``: a random start in ``[0, n - span]``.

  A video shorter than the span falls back to the segments above (the whole video, evenly).

A video with fewer than ``T`` frames (``n < T``) is padded by repeating frames: the segment rule then
gives ``floor((i + 0.5)·n/T)``, every frame repeated about ``T/n`` times in order (in both modes), so
the clip still runs from the first frame to the last at an even pace.
"""

from __future__ import annotations

import torch

SAMPLING_MODES = ("uniform", "random_segment")


def _randint(high: int, generator: torch.Generator | None) -> int:
    """A uniform integer in ``[0, high)`` (``high >= 1``) from ``generator``."""
    return int(torch.randint(high, (1,), generator=generator).item())


def sample_frame_indices(num_available: int, num_frames: int, mode: str = "uniform", stride: int | None = None,
                         generator: torch.Generator | None = None) -> list[int]:
    """``num_frames`` indices into a video of ``num_available`` frames (see the module docstring).

    Args:
        num_available: frames in the video (``n >= 1``).
        num_frames: frames in the clip (``T >= 1``).
        mode: ``uniform`` (deterministic) or ``random_segment`` (random, from ``generator``).
        stride: None (segments over the whole video) or the gap between the clip's frames.
        generator: the random source of ``random_segment``.

    Returns:
        ``T`` non-decreasing indices in ``[0, n)``.

    Raises:
        ValueError: a count below 1, a stride below 1 or an unknown mode.
    """
    n, t = int(num_available), int(num_frames)
    if n < 1 or t < 1:
        raise ValueError(f"need at least one frame in the video and in the clip, got num_available={n}, num_frames={t}")
    if mode not in SAMPLING_MODES:
        raise ValueError(f"unknown frame sampling {mode!r}; valid: {', '.join(SAMPLING_MODES)}")
    if stride is not None:
        if stride < 1:
            raise ValueError(f"frame stride must be >= 1, got {stride}")
        span = (t - 1) * stride + 1
        if n >= span:
            start = (n - span) // 2 if mode == "uniform" else _randint(n - span + 1, generator)
            return [start + i * stride for i in range(t)]
    if n < t or mode == "uniform":
        return [((2 * i + 1) * n) // (2 * t) for i in range(t)]  # floor((i + 0.5) * n / T), exact in integers
    out = []
    for i in range(t):
        lo, hi = (i * n) // t, ((i + 1) * n) // t  # segment i: [lo, hi), non-empty since n >= t
        out.append(lo + _randint(hi - lo, generator))
    return out
