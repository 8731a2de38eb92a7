"""Task heads: read a :class:`~mmfuse.fusion.base.FusionOutput`, return logits (or, for the
generator, token logits / generated sequences)."""

from mmfuse.heads.classifier import ClassifierHead
from mmfuse.heads.generator import AnswerGenerator, Generation, GeneratorOutput, ScoredTokens

__all__ = ["AnswerGenerator", "ClassifierHead", "Generation", "GeneratorOutput", "ScoredTokens"]
