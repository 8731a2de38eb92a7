"""``VQAAccuracy``: the official VQA accuracy as a torchmetrics ``Metric`` (summed, synced states).

Importable as ``mmfuse.metrics.vqa.VQAAccuracy`` too; it lives here so that the pure scorer in
:mod:`mmfuse.metrics.vqa` does not import torch and torchmetrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from mmfuse.metrics.rounding import official_sum
from mmfuse.metrics.scoring import batch_vqa_accuracy

__all__ = ["VQAAccuracy"]


class VQAAccuracy(Metric):
    """Mean VQA accuracy, overall and per answer type / question type, from summed states.

    Each prediction is scored as :func:`vqa_accuracy` of ``normalize_answer(prediction)``: the one
    deliberate difference from the official script, which scores the raw string, so that a model is
    never penalised for case or punctuation it did not choose. To keep that promise under the
    unanimity gate, a prediction that normalises to the same string as unanimous GT answers is
    scored as that GT string (``"yes"`` vs 10 x ``"Yes"`` -> 1.0, where the official script gives
    the normalised ``"yes"`` 0). On GT that is already normalised (as released) this is exactly the
    mean of ``vqa_accuracy(normalize_answer(p), gt)``. Per-sample scores: :func:`batch_vqa_accuracy`.

    States: float64 sums and int64 counts, ``dist_reduce_fx="sum"``. In one process the sums are
    running left-to-right sums over all updates, the official order of additions, so
    :func:`official_aggregate` of the states gives the official two-decimal numbers whatever the
    batch size (float64 is not supported on MPS). Types must be
    listed at construction so the per-type states have a fixed shape for distributed sync.

    Args:
        answer_types: the known answer types, e.g. ``("yes/no", "number", "other")``.
        question_types: the known question types.
        **kwargs: passed to :class:`torchmetrics.Metric`.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    scores_for = staticmethod(batch_vqa_accuracy)
    score_sum: Tensor  # state [], float64
    count: Tensor  # state [], int64

    def __init__(self, answer_types: Sequence[str] = (), question_types: Sequence[str] = (), **kwargs: Any):
        super().__init__(**kwargs)
        self.answer_types = _unique(answer_types, "answer_types")
        self.question_types = _unique(question_types, "question_types")
        self._groups = {"answer_type": self.answer_types, "question_type": self.question_types}
        self._index = {g: {t: i for i, t in enumerate(ts)} for g, ts in self._groups.items()}
        self.add_state("score_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        for g, ts in self._groups.items():
            self.add_state(f"{g}_sum", torch.zeros(len(ts), dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{g}_count", torch.zeros(len(ts), dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self, predictions: Sequence[str], gt_answers: Sequence[Sequence[str]],
        answer_types: Sequence[str | None] | None = None,
        question_types: Sequence[str | None] | None = None,
    ) -> None:
        """Score a batch; ``None`` types (or type lists) count only towards the overall ``acc``.

        Raises:
            ValueError: mismatched lengths, an empty GT list, or a type not given at construction.
            TypeError: a single str where a sequence is expected. Nothing changes on error.
        """
        if isinstance(predictions, str):
            raise TypeError("predictions must be a sequence of strings, not one str")
        types = {"answer_type": answer_types, "question_type": question_types}
        idx = {g: self._indices(g, t, len(predictions)) for g, t in types.items() if t is not None}
        scores = batch_vqa_accuracy(predictions, gt_answers)
        # One running left-to-right sum over the whole stream, whatever the batching: the official
        # order of additions (per process; a multi-process sync adds the per-process sums).
        self.score_sum.fill_(official_sum([float(self.score_sum), *scores]))
        self.count += len(scores)
        for g, ids in idx.items():
            state_sum, state_count = getattr(self, f"{g}_sum"), getattr(self, f"{g}_count")
            sums, counts = state_sum.tolist(), state_count.tolist()
            for s, i in zip(scores, ids):
                if i is not None:
                    sums[i] += s
                    counts[i] += 1
            state_sum.copy_(torch.tensor(sums, dtype=state_sum.dtype))
            state_count.copy_(torch.tensor(counts, dtype=state_count.dtype))

    def compute(self) -> dict[str, Tensor]:
        """``{"acc": mean, "acc/<answer_type>": mean, "qtype/<question_type>": mean}``, in [0, 1].

        Types with no sample are omitted; ``acc`` is NaN before any update. Official two-decimal
        percentages: :func:`official_aggregate` on the sums (or :func:`official_round` on a mean).
        """
        out = {"acc": self.score_sum / self.count}
        for g, prefix in (("answer_type", "acc/"), ("question_type", "qtype/")):
            sums = getattr(self, f"{g}_sum")
            for i, c in enumerate(getattr(self, f"{g}_count").tolist()):
                if c > 0:
                    out[prefix + self._groups[g][i]] = sums[i] / c
        return out

    def _indices(self, group: str, types: Sequence[str | None], n: int) -> list[int | None]:
        if isinstance(types, str) or len(types) != n:
            raise ValueError(f"{group}s must have one entry per prediction ({n}), got {types!r}")
        index = self._index[group]
        for t in types:
            if t is not None and t not in index:
                what = group.replace("_", " ")
                raise ValueError(f"unknown {what} {t!r}; known {what}s (set at construction): {list(index)}")
        return [None if t is None else index[t] for t in types]


def _unique(types: Sequence[str], what: str) -> tuple[str, ...]:
    if isinstance(types, str) or len(set(types)) != len(tuple(types)):
        raise ValueError(f"{what} must be a sequence of distinct strings, got {types!r}")
    return tuple(types)
