"""The official script's arithmetic: Python 2.7 ``sum()`` and ``round()`` (it runs under Python 2.7).

``vqaEval.py`` sums unrounded per-question accuracies left to right, then reports
``round(100 * sum / n, 2)``; Python 2 rounds exact halves away from zero, Python 3 to even.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["official_aggregate", "official_round", "official_sum", "py2_round"]


def py2_round(x: float, ndigits: int = 2) -> float:
    """Python 2.7 ``round(x, ndigits)``, which the official script runs under.

    Both Python versions round the exact binary value correctly; they differ only on exact halves
    (``x * 2**(ndigits+1)`` an odd integer), which Python 2 rounds away from zero and Python 3 to
    even: ``round(3.125, 2)`` is 3.13 under Python 2 (and officially), 3.12 under Python 3.
    """
    t = x * 2.0 ** (ndigits + 1)
    if math.isfinite(t) and t.is_integer() and t % 2 == 1:
        scale = 10.0 ** ndigits  # |x| * scale is exact here: x has at most ndigits + 1 binary places
        return math.copysign(math.floor(abs(x) * scale + 0.5) / scale, x)
    return round(x, ndigits)


def official_sum(values: Iterable[float]) -> float:
    """Python 2's ``sum()``: plain left-to-right additions from 0.0, as the official script sums.

    (``math.fsum`` and Python 3.12+'s ``sum`` compensate rounding errors and can change the
    two-decimal result: 16 questions 0.3, 0.0, 1.0, 0.9, ... give 51.87 officially, 51.88 with fsum.)
    """
    total = 0.0
    for v in values:
        total += v
    return total


def official_round(x: float) -> float:
    """``round(100 * x, 2)`` under Python 2: the official per-question rounding (``evalQA``), in %."""
    return py2_round(100 * x, 2)


def official_aggregate(total: float, count: int) -> float:
    """``round(100 * total / count, 2)`` under Python 2: the official overall / per-type number.

    ``total`` is :func:`official_sum` of the unrounded per-question values. The official code
    multiplies the sum by 100 before dividing, which can differ in the last bit (and so, rarely,
    in the rounded value) from ``official_round(total / count)``.
    """
    return py2_round(100 * total / count, 2)
