"""Bootstrap intervals: reproducible, correctly centred, of the right width, paired differences exact."""

import numpy as np
import pytest

from mmfuse.evaluation import bootstrap
from mmfuse.evaluation.bootstrap import bootstrap_ci, paired_bootstrap


def bernoulli(p: float, n: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(n) < p).astype(float)


def test_seeded_and_reproducible() -> None:
    x = bernoulli(0.7, 500, 1)
    a, b = bootstrap_ci(x, seed=3), bootstrap_ci(x, seed=3)
    assert a == b and a.estimate == pytest.approx(x.mean())
    assert bootstrap_ci(x, seed=4) != a
    assert a.low <= a.estimate <= a.high and (a.n, a.resamples, a.level) == (500, 1000, 0.95)


def test_width_matches_the_normal_approximation() -> None:
    x = bernoulli(0.7, 2000, 0)
    iv = bootstrap_ci(x, resamples=2000)
    se = np.sqrt(x.mean() * (1 - x.mean()) / x.size)
    assert iv.high - iv.low == pytest.approx(2 * 1.96 * se, rel=0.1)
    assert (iv.low + iv.high) / 2 == pytest.approx(x.mean(), abs=se / 2)


def test_constant_scores_give_a_point_interval() -> None:
    iv = bootstrap_ci([0.3] * 7)
    assert iv.low == pytest.approx(0.3) and iv.high == pytest.approx(0.3) and iv.estimate == pytest.approx(0.3)
    assert bootstrap_ci([1.0]).low == 1.0


def test_chunking_does_not_change_the_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    x = bernoulli(0.5, 300, 2)
    whole = bootstrap_ci(x, resamples=50, seed=9)
    monkeypatch.setattr(bootstrap, "_CHUNK_ELEMENTS", 300 * 7)  # 7 resamples a chunk, the last one short
    assert bootstrap_ci(x, resamples=50, seed=9) == whole


def test_paired_difference_of_a_constant_shift_is_exact() -> None:
    a = bernoulli(0.5, 100, 0) * 0.9
    iv, p = paired_bootstrap(a, a + 0.1)
    assert iv.estimate == pytest.approx(0.1) and iv.low == pytest.approx(0.1) and iv.high == pytest.approx(0.1)
    assert p == 0.0
    same, p_same = paired_bootstrap(a, a)
    assert (same.low, same.high, p_same) == (0.0, 0.0, 1.0)


def test_pairing_narrows_the_interval() -> None:
    a = bernoulli(0.6, 1000, 0)
    b = a.copy()
    flip = np.random.default_rng(1).choice(1000, 40, replace=False)
    b[flip] = 1 - b[flip]  # b differs from a on 40 questions only
    paired, _ = paired_bootstrap(a, b)
    ia, ib = bootstrap_ci(a), bootstrap_ci(b)
    assert paired.estimate == pytest.approx(b.mean() - a.mean())
    assert paired.high - paired.low < 0.5 * ((ia.high - ia.low) + (ib.high - ib.low)) / 2


@pytest.mark.parametrize("bad, match", [([], "non-empty"), ([[0.1, 0.2]], "1-D"), ([0.1, float("nan")], "NaN")])
def test_bad_input(bad: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        bootstrap_ci(bad)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci([1.0, 0.0], level=95)
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_ci([1.0, 0.0], resamples=0)
    with pytest.raises(ValueError, match="same questions"):
        paired_bootstrap([1.0, 0.0], [1.0])
