"""Fusion modules: combine per-modality :class:`~mmfuse.encoders.base.EncoderOutput` into one representation.

Importing this package registers every built-in fusion (``concat``, ``weighted_sum``,
``cross_attention``); select one by name with :func:`build_fusion`.
"""

from mmfuse.fusion import concat, cross_attention, weighted_sum  # noqa: F401  (registers the fusions)
from mmfuse.fusion.base import (
    FUSIONS,
    FusionOutput,
    build_fusion,
    check_inputs,
    fusion_hparams,
    list_fusions,
    masked_mean,
    register_fusion,
)
from mmfuse.fusion.concat import ConcatFusion
from mmfuse.fusion.cross_attention import CrossAttentionFusion
from mmfuse.fusion.weighted_sum import WeightedSumFusion

__all__ = [
    "FUSIONS",
    "ConcatFusion",
    "CrossAttentionFusion",
    "FusionOutput",
    "WeightedSumFusion",
    "build_fusion",
    "check_inputs",
    "fusion_hparams",
    "list_fusions",
    "masked_mean",
    "register_fusion",
]
