"""Pure loss functions."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def vqa_bce(logits: Tensor, targets: Tensor) -> Tensor:
    """BCE-with-logits on soft VQA targets, summed over answers, mean over the batch.

    ``logits``, ``targets``: ``[B, V]``; targets in [0, 1] (official per-annotator scores).
    Summing over the vocabulary (as in Teney et al. 2018 / MMF) keeps the gradient scale
    independent of the vocabulary size.
    """
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / logits.shape[0]


def soft_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy against the soft targets normalised to a distribution; mean over the batch.

    Rows whose answers are all outside the vocabulary (all-zero targets) contribute 0 —
    there is no answer the classifier could have given.
    """
    mass = targets.sum(-1, keepdim=True)  # [B,1]
    dist = targets / mass.clamp_min(1e-12)
    return -(dist * F.log_softmax(logits, -1)).sum() / logits.shape[0]


VQA_LOSSES = {"bce": vqa_bce, "ce": soft_cross_entropy}
