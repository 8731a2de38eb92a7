"""Task heads: read a :class:`~mmfuse.fusion.base.FusionOutput`, return logits."""

from mmfuse.heads.classifier import ClassifierHead

__all__ = ["ClassifierHead"]
