"""Task heads: read a :class:`~mmfuse.fusion.base.FusionOutput`, return logits (or, for the
generator, token logits / generated sequences)."""

from mmfuse.heads.classifier import ClassifierHead
from mmfuse.heads.generator import AnswerGenerator, Generation, GeneratorOutput, ScoredTokens
from mmfuse.heads.value import ValueHead

__all__ = ["AnswerGenerator", "ClassifierHead", "Generation", "GeneratorOutput", "ScoredTokens", "ValueHead"]
