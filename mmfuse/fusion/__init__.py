"""Fusion modules: combine per-modality :class:`~mmfuse.encoders.base.EncoderOutput` into one representation.

Importing this package registers every built-in fusion (``concat``, ``weighted_sum``,
``cross_attention``); select one by name with :func:`build_fusion`.
"""

from mmfuse.fusion import (  # noqa: F401  (registers the fusions)
    bottleneck,
    concat,
    cross_attention,
    film,
    gated,
    lmf,
    mfb,
    mutan,
    relation,
    tensor,
    weighted_sum,
)
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
from mmfuse.fusion.bottleneck import BottleneckFusion
from mmfuse.fusion.concat import ConcatFusion
from mmfuse.fusion.cross_attention import CrossAttentionFusion
from mmfuse.fusion.film import FiLMFusion
from mmfuse.fusion.gated import GatedFusion
from mmfuse.fusion.lmf import LowRankFusion
from mmfuse.fusion.mfb import MFBFusion
from mmfuse.fusion.mutan import MutanFusion
from mmfuse.fusion.relation import RelationFusion
from mmfuse.fusion.tensor import TensorFusion
from mmfuse.fusion.weighted_sum import WeightedSumFusion

__all__ = [
    "FUSIONS",
    "BottleneckFusion",
    "ConcatFusion",
    "CrossAttentionFusion",
    "FiLMFusion",
    "FusionOutput",
    "GatedFusion",
    "LowRankFusion",
    "MFBFusion",
    "MutanFusion",
    "RelationFusion",
    "TensorFusion",
    "WeightedSumFusion",
    "build_fusion",
    "check_inputs",
    "fusion_hparams",
    "list_fusions",
    "masked_mean",
    "register_fusion",
]
