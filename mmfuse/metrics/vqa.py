"""The VQA metric in one import: the official scorer (:mod:`mmfuse.metrics.scoring`, pure Python) and its
torchmetrics ``VQAAccuracy`` (:mod:`mmfuse.metrics.vqa_metric`, which needs torch). Light code that must not
import torch imports :mod:`mmfuse.metrics.scoring` instead."""

from mmfuse.metrics.rounding import official_aggregate, official_round, official_sum, py2_round
from mmfuse.metrics.scoring import answer_scores, batch_vqa_accuracy, majority_answer, normalize_answer, vqa_accuracy
from mmfuse.metrics.vqa_metric import VQAAccuracy

__all__ = [
    "VQAAccuracy", "answer_scores", "batch_vqa_accuracy", "majority_answer", "normalize_answer",
    "official_aggregate", "official_round", "official_sum", "py2_round", "vqa_accuracy",
]
