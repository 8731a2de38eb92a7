"""Evaluation metrics: the official VQA accuracy (:mod:`mmfuse.metrics.vqa`)."""

from mmfuse.metrics.vqa import (
    VQAAccuracy,
    answer_scores,
    batch_vqa_accuracy,
    normalize_answer,
    official_aggregate,
    official_round,
    vqa_accuracy,
)

__all__ = [
    "VQAAccuracy",
    "answer_scores",
    "batch_vqa_accuracy",
    "normalize_answer",
    "official_aggregate",
    "official_round",
    "vqa_accuracy",
]
