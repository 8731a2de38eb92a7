"""Every numeric config value range-checked before anything runs: a negative learning rate, a zero batch or
``betas=[0.9]`` stop at ``load_config`` with the key, the value and what is valid."""

from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mmfuse.errors import ConfigError

__all__ = ["RANGES", "check_ranges"]

# key -> (kind, rule). kind: "int" or "number"; rule: ">= 0", "> 0", ">= 1", "[0, 1)", "[0, 1]", "-1 or >= 1".
# A key whose value is null is skipped (null means "off" or "default" wherever base.yaml allows it).
RANGES: dict[str, tuple[str, str]] = {
    "seed": ("int", ">= 0"),
    "data.val_fraction": ("number", "[0, 1)"),
    "data.answer_vocab.top_k": ("int", ">= 1"),
    "data.answer_vocab.min_count": ("int", ">= 1"),
    "data.max_question_length": ("int", ">= 3"),  # [CLS], one token, [SEP]
    "data.batch_size": ("int", ">= 1"),
    "data.eval_batch_size": ("int", ">= 1"),
    "data.num_workers": ("int", ">= 0"),
    "data.limit_questions": ("int", ">= 1"),
    "data.sampling_temperature": ("number", "> 0"),
    "model.text.tokenizer_vocab_size": ("int", ">= 1"),
    "model.text.embed_init_std": ("number", "> 0"),
    "model.image.img_size": ("int", ">= 1"),
    "model.image.patch_size": ("int", ">= 1"),
    "model.fusion.dim": ("int", ">= 1"),
    "optim.lr": ("number", "> 0"),
    "optim.encoder_lr": ("number", ">= 0"),
    "optim.weight_decay": ("number", ">= 0"),
    "optim.warmup_ratio": ("number", "[0, 1]"),
    "optim.min_lr_ratio": ("number", "[0, 1]"),
    "optim.grad_clip": ("number", ">= 0"),
    "regularization.l2": ("number", ">= 0"),
    "regularization.l2_sp": ("number", ">= 0"),
    "loss.conflict_every_n_steps": ("int", ">= 0"),
    "trainer.max_epochs": ("int", "-1 or >= 1"),
    "trainer.max_steps": ("int", "-1 or >= 1"),
    "trainer.max_minutes": ("number", "> 0"),
    "trainer.num_nodes": ("int", ">= 1"),
    "trainer.log_every_n_steps": ("int", ">= 1"),
    "checkpoint.every_n_steps": ("int", ">= 0"),
    "trainer.check_val_every_n_epoch": ("int", ">= 1"),
    "trainer.progress_bar_refresh_rate": ("int", ">= 1"),
    "trainer.num_threads": ("int", ">= 1"),
    "eval.report_samples": ("int", ">= 0"),
    "rl.samples_per_question": ("int", ">= 1"),
    "rl.refill_tries": ("int", ">= 0"),
    "rl.lam_critic": ("number", "[0, 1]"),
    "rl.lam_length_alpha": ("number", "> 0"),
    "rl.whiten_min_std": ("number", ">= 0"),
}


def _fits(value: float, rule: str) -> bool:
    return {
        ">= 0": value >= 0, "> 0": value > 0, ">= 1": value >= 1, ">= 3": value >= 3,
        "[0, 1)": 0 <= value < 1, "[0, 1]": 0 <= value <= 1, "-1 or >= 1": value == -1 or value >= 1,
    }[rule]


def _check(key: str, value: Any, kind: str, rule: str) -> None:
    if value is None:
        return
    is_int = isinstance(value, int) and not isinstance(value, bool)
    is_number = is_int or (isinstance(value, float) and not isinstance(value, bool))
    what = "an integer" if kind == "int" else "a finite number"
    if kind == "int" and not is_int or kind == "number" and not (is_number and math.isfinite(value)):
        raise ConfigError(f"config key {key!r} is {value!r}; expected {what} {rule}")
    if not _fits(value, rule):
        raise ConfigError(f"config key {key!r} is {value!r}; expected {what} {rule}")


def check_ranges(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for the first value out of its range (``RANGES``, each active task's
    ``weight`` >= 0, ``optim.betas`` two numbers in [0, 1))."""
    for key, (kind, rule) in RANGES.items():
        _check(key, OmegaConf.select(cfg, key), kind, rule)
    for task in cfg.tasks.active:
        _check(f"tasks.{task}.weight", OmegaConf.select(cfg, f"tasks.{task}.weight"), "number", ">= 0")
    betas = cfg.optim.betas
    if (not OmegaConf.is_list(betas) or len(betas) != 2
            or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)):
        shown = OmegaConf.to_container(betas) if OmegaConf.is_config(betas) else betas
        raise ConfigError(f"config key 'optim.betas' is {shown!r}; expected two numbers in [0, 1), e.g. [0.9, 0.999]")
    mql, positions = cfg.data.max_question_length, OmegaConf.select(cfg, "model.text.config.max_position_embeddings")
    if cfg.model.text.pretrained is None and isinstance(positions, int) and mql > positions:
        raise ConfigError(f"config key 'data.max_question_length' is {mql}, more than the text model's "
                          f"{positions} positions (model.text.config.max_position_embeddings); lower it or raise that")
