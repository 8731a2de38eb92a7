"""Finding the first non-finite term of a step: which task loss, regulariser or gradient went NaN or inf.

``loss.nonfinite`` chooses what training does then: ``stop`` (the default: raise
:class:`~mmfuse.errors.Diverged` before the optimiser step, so no weight and no checkpoint ever holds a
non-finite value) or ``skip_batch`` (drop that batch's update, count it, go on).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

__all__ = ["NONFINITE_POLICIES", "first_nonfinite_grad", "first_nonfinite_term"]

NONFINITE_POLICIES = ("stop", "skip_batch")


def first_nonfinite_term(terms: Mapping[str, Tensor]) -> str | None:
    """The first of ``terms`` (in their order: task losses, then regularisers) that is not finite, as
    ``"name = value"``; None if all are finite."""
    for name, value in terms.items():
        v = value.detach().float()
        if not bool(torch.isfinite(v).all()):
            return f"{name} = {v.reshape(-1)[0].item()}"
    return None


def first_nonfinite_grad(named: Iterable[tuple[str, nn.Parameter]]) -> str | None:
    """The name of the first parameter whose gradient holds a NaN or inf; None if every gradient is finite.
    One fused norm per parameter group and one device sync: a non-finite entry makes its norm non-finite."""
    named = [(n, p) for n, p in named if p.grad is not None]
    if not named:
        return None
    norms = torch._foreach_norm([p.grad for _, p in named])  # type: ignore[misc]
    finite = torch.isfinite(torch.stack(norms)).tolist()
    return next((n for (n, _), ok in zip(named, finite) if not ok), None)
