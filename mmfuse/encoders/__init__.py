"""Encoders: text (BERT), image (timm ViT), video (per-frame ViT + temporal pooling); all return
:class:`EncoderOutput` and expose ``out_dim``."""

from mmfuse.encoders.base import EncoderOutput  # first: the fusions the poolings reuse import it
from mmfuse.encoders.temporal import (
    TEMPORAL_POOLINGS,
    TemporalOutput,
    build_temporal_pooling,
    list_temporal_poolings,
    register_temporal_pooling,
)
from mmfuse.encoders.text import TextEncoder
from mmfuse.encoders.video import VideoEncoder
from mmfuse.encoders.vision import VisionEncoder

__all__ = [
    "TEMPORAL_POOLINGS", "EncoderOutput", "TemporalOutput", "TextEncoder", "VideoEncoder", "VisionEncoder",
    "build_temporal_pooling", "list_temporal_poolings", "register_temporal_pooling",
]
