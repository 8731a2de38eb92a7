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
from typing import Any

__version__ = "0.1.0"
# name -> the module that defines it. Module names never equal an exported name (the training run lives in
# mmfuse.training, not mmfuse.train), so importing a submodule can never replace an exported function.
_EXPORTS = {
    "load_config": "mmfuse.config",
    "CheckpointMismatch": "mmfuse.errors", "ConfigError": "mmfuse.errors", "CoverageError": "mmfuse.errors",
    "DataError": "mmfuse.errors", "Diverged": "mmfuse.errors", "FormatError": "mmfuse.errors",
    "MmfuseError": "mmfuse.errors",
    "RunFailed": "mmfuse.errors", "StaleRun": "mmfuse.errors", "UnsafeCheckpoint": "mmfuse.errors",
    "EncoderOutput": "mmfuse.encoders", "VideoEncoder": "mmfuse.encoders",
    "list_temporal_poolings": "mmfuse.encoders", "register_temporal_pooling": "mmfuse.encoders",
    "TemporalOutput": "mmfuse.encoders",
    "FusionOutput": "mmfuse.fusion", "build_fusion": "mmfuse.fusion", "list_fusions": "mmfuse.fusion",
    "register_fusion": "mmfuse.fusion",
    "MaskedAttention": "mmfuse.layers", "attention_weights": "mmfuse.layers", "masked_mean": "mmfuse.layers",
    "FusionModel": "mmfuse.model", "build_model": "mmfuse.model",
    "build_datamodule": "mmfuse.runner", "load_system": "mmfuse.runner",
    "train": "mmfuse.training", "evaluate": "mmfuse.evaluation.run",
    "cross_validate": "mmfuse.crossval", "prepare_data": "mmfuse.prepare",
    "list_sources": "mmfuse.data.sources", "register_source": "mmfuse.data.sources",
    "list_tasks": "mmfuse.tasks", "list_weightings": "mmfuse.objectives.multitask",
    "register_weighting": "mmfuse.objectives.multitask",
    "pcgrad_project": "mmfuse.objectives.multitask", "l2_penalty": "mmfuse.objectives.regularizers",
    "l2_sp": "mmfuse.objectives.regularizers",
    "compute_gae": "mmfuse.rl", "register_reward": "mmfuse.rl", "list_rewards": "mmfuse.rl",
    "register_advantage": "mmfuse.rl", "list_advantages": "mmfuse.rl",
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
