"""Objectives: pure loss functions, multi-task loss weighting, regularisation terms."""

from mmfuse.objectives.losses import VQA_LOSSES, soft_cross_entropy, vqa_bce
from mmfuse.objectives.multitask import (
                                         LossWeighting,
                                         build_weighting,
                                         gradient_cosines,
                                         list_weightings,
                                         pcgrad_project,
)
from mmfuse.objectives.regularizers import l2_penalty, l2_sp, select_parameters, snapshot

__all__ = ["VQA_LOSSES", "LossWeighting", "build_weighting", "gradient_cosines", "l2_penalty", "l2_sp",
           "list_weightings", "pcgrad_project", "select_parameters", "snapshot", "soft_cross_entropy", "vqa_bce"]
