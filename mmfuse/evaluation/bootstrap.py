"""Percentile bootstrap over questions: a confidence interval for a mean accuracy, and the paired
version for the difference between two models scored on the same questions.

Resampling is over questions (the unit that varies between test sets), with replacement, from a
seeded ``numpy`` generator, so a run's interval is reproducible. Resamples are drawn in chunks so
memory stays ``O(chunk * n)`` even for 214k questions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
_CHUNK_ELEMENTS = 1 << 23  # ~64 MiB of int64 indices per chunk


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile-bootstrap interval (same units as the input)."""

    estimate: float
    low: float
    high: float
    level: float
    resamples: int
    seed: int
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _resampled_means(values: np.ndarray, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Yield chunks of bootstrap means of ``values`` (``[n]`` or ``[k, n]``: rows resampled jointly)."""
    rng = np.random.default_rng(seed)
    n = values.shape[-1]
    chunk = max(1, min(resamples, _CHUNK_ELEMENTS // max(1, n)))
    done = 0
    while done < resamples:
        m = min(chunk, resamples - done)
        idx = rng.integers(0, n, size=(m, n))  # [m, n] question indices, with replacement
        yield values[..., idx].mean(axis=-1)  # [m] or [k, m]
        done += m


def _check(values: Sequence[float] | np.ndarray, level: float, resamples: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"bootstrap needs a non-empty 1-D sequence of per-question scores, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("bootstrap: per-question scores contain NaN or inf")
    if not 0.0 < level < 1.0:
        raise ValueError(f"bootstrap: level must be in (0, 1), got {level}")
    if resamples < 1:
        raise ValueError(f"bootstrap: resamples must be >= 1, got {resamples}")
    return arr


def _interval(estimate: float, means: np.ndarray, level: float, resamples: int, seed: int, n: int) -> Interval:
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return Interval(float(estimate), float(low), float(high), level, resamples, seed, n)


def bootstrap_ci(scores: Sequence[float] | np.ndarray, level: float = 0.95,
                 resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> Interval:
    """Mean of per-question ``scores`` ``[n]`` with its percentile-bootstrap interval.

    A single question (or all-equal scores) gives a zero-width interval at the mean.
    """
    arr = _check(scores, level, resamples)
    means = np.concatenate(list(_resampled_means(arr, resamples, seed)))
    return _interval(arr.mean(), means, level, resamples, seed, arr.size)


def paired_bootstrap(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, level: float = 0.95,
                     resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> tuple[Interval, float]:
    """Difference of means ``mean(b) - mean(a)`` over the same questions, resampled jointly.

    ``a[i]`` and ``b[i]`` must score the same question. Resampling the per-question differences
    keeps the pairing, so the shared difficulty of a question cancels and the interval is much
    narrower than two independent intervals suggest.

    Returns:
        (the interval of ``b - a``, a two-sided bootstrap p-value: twice the smaller fraction of
        resampled differences on either side of 0, capped at 1).
    """
    xa, xb = _check(a, level, resamples), _check(b, level, resamples)
    if xa.shape != xb.shape:
        raise ValueError(f"paired_bootstrap: {xa.size} vs {xb.size} scores; pairs must score the same questions")
    diff = xb - xa  # [n]
    means = np.concatenate(list(_resampled_means(diff, resamples, seed)))
    p = min(1.0, 2.0 * min(float((means <= 0).mean()), float((means >= 0).mean())))
    return _interval(diff.mean(), means, level, resamples, seed, diff.size), p
