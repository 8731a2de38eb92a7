"""LightningModules."""

from mmfuse.systems.supervised import SupervisedSystem

__all__ = ["SupervisedSystem"]
