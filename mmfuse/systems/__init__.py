"""LightningModules: one per training stage, siblings on :class:`BaseSystem` (what both stages share)."""

from mmfuse.systems.base import BaseSystem
from mmfuse.systems.rl import RLSystem
from mmfuse.systems.supervised import SupervisedSystem

# config key ``stage`` -> its system (``mmfuse.config.STAGES`` names the same keys)
SYSTEMS: dict[str, type[BaseSystem]] = {"supervised": SupervisedSystem, "rl": RLSystem}

__all__ = ["SYSTEMS", "BaseSystem", "RLSystem", "SupervisedSystem"]
