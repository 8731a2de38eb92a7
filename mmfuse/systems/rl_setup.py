"""Setting up the RL stage from its supervised checkpoint: the config it inherits, the parts it may train."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from mmfuse.checkpoints import read_checkpoint
from mmfuse.config import complete_config
from mmfuse.errors import ConfigError
from mmfuse.rl.rollout import TRAINABLE_PARTS

GENERATION = "answer_generation"
__all__ = ["GENERATION", "check_trainable", "rl_config"]


def rl_config(cfg: DictConfig) -> tuple[DictConfig, dict[str, Any]]:
    """``cfg`` with ``model`` and ``tasks`` replaced by those of the ``rl.init_from`` checkpoint (the
    architecture must match its weights), and the loaded checkpoint."""
    path = Path(str(cfg.rl.init_from))
    if not path.is_file():
        raise FileNotFoundError(f"rl.init_from: checkpoint not found: {path}")
    ckpt = read_checkpoint(path, trust=bool(cfg.trust_checkpoint))
    stored = complete_config(ckpt.get("hyper_parameters", {}).get("cfg") or {})
    if GENERATION not in stored["tasks"]["active"]:
        raise ValueError(f"rl.init_from={path}: the checkpoint trained {stored['tasks']['active']}, RL needs "
                         f"an '{GENERATION}' head (train with tasks.active=[{GENERATION}])")
    check_trainable(cfg.rl.train, stored["model"]["modalities"], f" of the rl.init_from checkpoint {path}")
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.model = OmegaConf.create(stored["model"])
        cfg.tasks = OmegaConf.create(stored["tasks"])
        if stored["model"]["video"]["enabled"]:  # the time embeddings are sized by the checkpoint's clips
            cfg.data.video.num_frames = stored["data"]["video"]["num_frames"]
    return cfg, ckpt


def check_trainable(parts: Sequence[str], modalities: Sequence[str], where: str = "") -> None:
    """ConfigError when ``rl.train`` names an encoder the model does not have (a one-modality model)."""
    valid = [p for p in TRAINABLE_PARTS if p in ("generator", "fusion") or p in modalities]
    for part in parts:
        if part in TRAINABLE_PARTS and part not in valid:
            raise ConfigError(f"config key 'rl.train' has {part!r}, but the model{where} has no {part} encoder "
                              f"(model.modalities={list(modalities)}); valid parts: {', '.join(valid)}")
