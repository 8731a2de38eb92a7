"""Objectives: pure loss functions."""

from mmfuse.objectives.losses import VQA_LOSSES, soft_cross_entropy, vqa_bce

__all__ = ["VQA_LOSSES", "soft_cross_entropy", "vqa_bce"]
