"""mmfuse: multimodal fusion research on PyTorch Lightning.

Public API::

    cfg = mmfuse.load_config("configs/experiments/easy_vqa.yaml", ["model.fusion.name=concat"])
    result = mmfuse.train(cfg)

    @mmfuse.register_fusion("my_fusion")
    class MyFusion(nn.Module): ...

The names below are imported on first use, so light tools (``tools/score.py``,
``tools/compare.py``) do not pay for importing Lightning and transformers.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"
_EXPORTS = {
    "ConfigError": "mmfuse.config", "load_config": "mmfuse.config",
    "EncoderOutput": "mmfuse.encoders", "VideoEncoder": "mmfuse.encoders",
    "list_temporal_poolings": "mmfuse.encoders", "register_temporal_pooling": "mmfuse.encoders",
    "TemporalOutput": "mmfuse.encoders",
    "FusionOutput": "mmfuse.fusion", "build_fusion": "mmfuse.fusion", "list_fusions": "mmfuse.fusion",
    "register_fusion": "mmfuse.fusion",
    "FusionModel": "mmfuse.model", "build_model": "mmfuse.model",
    "build_datamodule": "mmfuse.train", "evaluate": "mmfuse.train", "load_system": "mmfuse.train",
    "train": "mmfuse.train",
    "cross_validate": "mmfuse.crossval",
    "list_tasks": "mmfuse.tasks", "list_weightings": "mmfuse.objectives.multitask",
    "pcgrad_project": "mmfuse.objectives.multitask", "l2_penalty": "mmfuse.objectives.regularizers",
    "l2_sp": "mmfuse.objectives.regularizers",
    "compute_gae": "mmfuse.rl", "register_reward": "mmfuse.rl", "list_rewards": "mmfuse.rl",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mmfuse' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


class _Package(types.ModuleType):
    """Importing the submodule ``mmfuse.train`` sets the package attribute ``train`` to the module;
    keep the *function* there instead (as an eager ``from mmfuse.train import train`` would)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name) == f"{__name__}.{name}":
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
