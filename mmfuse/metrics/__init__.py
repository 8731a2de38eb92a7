"""Evaluation metrics: the official VQA accuracy (:mod:`mmfuse.metrics.vqa`), its torchmetrics
``VQAAccuracy`` (:mod:`mmfuse.metrics.vqa_metric`) and the official file formats
(:mod:`mmfuse.metrics.official_format`)."""

from typing import Any

from mmfuse.metrics.scoring import (
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


def __getattr__(name: str) -> Any:
    if name == "VQAAccuracy":  # torch + torchmetrics: imported on first use
        from mmfuse.metrics.vqa_metric import VQAAccuracy

        return VQAAccuracy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
