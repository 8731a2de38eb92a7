"""LightningModules."""

from mmfuse.systems.supervised import SupervisedSystem
from mmfuse.systems.rl import RLSystem  # noqa: E402 (after SupervisedSystem, which it extends)

__all__ = ["RLSystem", "SupervisedSystem"]
