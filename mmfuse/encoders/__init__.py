"""Encoders: text (BERT), image (timm ViT); all return :class:`EncoderOutput` and expose ``out_dim``."""

from mmfuse.encoders.base import EncoderOutput
from mmfuse.encoders.text import TextEncoder
from mmfuse.encoders.vision import VisionEncoder

__all__ = ["EncoderOutput", "TextEncoder", "VisionEncoder"]
