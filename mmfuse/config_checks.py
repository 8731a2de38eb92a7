"""Cross-key checks of a merged config (run by :func:`mmfuse.config.load_config` after the per-key type
checks): the task list, weighting options and dataset mixture entries, the model's modalities, and the RL
stage's settings.

Imported by :mod:`mmfuse.config`, never the reverse; the valid values come from the components that own them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from omegaconf import DictConfig

from mmfuse.errors import ConfigError


def check_rl(cfg: DictConfig) -> None:
    """``rl.train`` names trainable parts; PPO counts, rates and γ, λ are in range; dynamic sampling has groups to
    compare; a bootstrapped truncation has a critic; stage=rl has init_from."""
    from mmfuse.rl.advantages import get_advantage, resolve_advantage
    from mmfuse.rl.rollout import TRAINABLE_PARTS

    rl = cfg.rl
    for part in rl.train:
        if part not in TRAINABLE_PARTS:
            raise ConfigError(f"config key 'rl.train' has {part!r}; valid choices: {', '.join(TRAINABLE_PARTS)}")
    for key in ("ppo_epochs", "minibatches"):
        if rl[key] < 1:
            raise ConfigError(f"config key 'rl.{key}' is {rl[key]}; expected an integer >= 1")
    for key in ("temperature", "lr"):
        if not rl[key] > 0:
            raise ConfigError(f"config key 'rl.{key}' is {rl[key]}; expected a number > 0")
    if not (0 <= rl.gamma <= 1 and 0 <= rl.lam <= 1):
        raise ConfigError(f"config keys 'rl.gamma' and 'rl.lam' must be in [0, 1]; got {rl.gamma}, {rl.lam}")
    if rl.skip_uniform_groups and rl.samples_per_question < 2:
        raise ConfigError(f"config key 'rl.skip_uniform_groups' is true but 'rl.samples_per_question' is "
                          f"{rl.samples_per_question}: dropping groups whose answers all score the same needs "
                          "groups of >= 2 answers (set rl.samples_per_question=4, say)")
    advantage = resolve_advantage(rl.advantage, rl.algorithm)
    if rl.truncation == "bootstrap" and not get_advantage(advantage).critic:
        raise ConfigError(f"config key 'rl.truncation' is 'bootstrap', but rl.advantage={advantage} has no value "
                          "head to bootstrap a cut answer from; use rl.truncation=terminal or rl.advantage=gae")
    if cfg.stage == "rl" and not rl.init_from:
        raise ConfigError("stage=rl needs config key 'rl.init_from': a supervised checkpoint with an "
                          "answer_generation head (train one with tasks.active=[answer_generation])")


def check_video(cfg: DictConfig) -> None:
    """Clip sizes are positive; the pooling's options exist."""
    from mmfuse.encoders.temporal import temporal_pooling_hparams

    v = cfg.data.video
    if v.num_frames < 1:
        raise ConfigError(f"config key 'data.video.num_frames' is {v.num_frames}; expected an integer >= 1")
    if v.frame_stride is not None and v.frame_stride < 1:
        raise ConfigError(f"config key 'data.video.frame_stride' is {v.frame_stride}; expected null or an integer >= 1")
    valid = temporal_pooling_hparams(cfg.model.video.pooling)
    for k in cfg.model.video.hparams:
        if k not in valid:
            raise ConfigError(f"config key 'model.video.hparams.{k}' is not an option of temporal pooling "
                              f"{cfg.model.video.pooling!r}; valid options: {', '.join(sorted(valid)) or 'none'}")


def check_image_pool(cfg: DictConfig) -> None:
    """``model.image.pool=cls`` needs an attention layer: with ``depth: 0`` the class token never sees a patch, so the
    image vector would be the same learned constant for every image (fusions that read ``pooled`` go image-blind)."""
    image = cfg.model.image
    if "image" in cfg.model.modalities and image.depth == 0 and image.pool == "cls":
        raise ConfigError("config key 'model.image.pool' is 'cls' with model.image.depth=0: the class token passes no "
                          "attention layer, so it never sees a patch and the image vector would be the same for every "
                          "image; valid choices here: mean, flatten")


# model.modalities: the model's encoders (mmfuse.model.MODALITIES; the config room may not import the model,
# tests/test_modalities.py checks that the two agree)
MODALITIES = ("text", "image")
# tasks that read both modalities (itm re-pairs each question with another image)
BIMODAL_TASKS = ("itm",)


def check_modalities(cfg: DictConfig) -> None:
    """``model.modalities`` is a non-empty list of distinct modalities; a one-modality model has no bimodal task."""
    given = list(cfg.model.modalities)
    if not given or len(set(given)) != len(given) or not set(given) <= set(MODALITIES):
        raise ConfigError(f"config key 'model.modalities' is {given}; expected a non-empty list of distinct "
                          f"modalities from: {', '.join(MODALITIES)} (e.g. [text, image], [text], [image])")
    if len(given) < len(MODALITIES):
        for task in BIMODAL_TASKS:
            if task in cfg.tasks.active:
                raise ConfigError(f"config key 'tasks.active' has {task!r}, which needs both modalities, but "
                                  f"'model.modalities' is [{', '.join(given)}]; drop {task} from tasks.active or "
                                  f"set model.modalities=[{', '.join(MODALITIES)}]")


CURRICULUM_KEYS = ("epochs", "question_types")


def check_curriculum(cfg: DictConfig) -> None:
    """``data.curriculum`` stages are ``{epochs: int >= 1, question_types: non-empty list}``, on one in-memory
    dataset (the question types themselves are checked against the training split once it is loaded)."""
    stages = cfg.data.curriculum
    if stages and (cfg.data.mixture or cfg.data.source == "prepared"):
        raise ConfigError("config key 'data.curriculum' works on one in-memory dataset; it cannot be combined with "
                          "data.mixture or data.source=prepared")
    for i, stage in enumerate(stages):
        where = f"data.curriculum[{i}]"
        if not isinstance(stage, DictConfig) or set(stage) != set(CURRICULUM_KEYS):
            raise ConfigError(f"config key {where!r} must be a mapping with exactly the keys "
                              f"{', '.join(CURRICULUM_KEYS)}, e.g. {{epochs: 3, question_types: [shape]}}")
        n = stage.epochs
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"config key '{where}.epochs' is {n!r}; expected an integer >= 1")
        types = stage.question_types
        if isinstance(types, str) or not types or not all(isinstance(t, str) for t in types):
            raise ConfigError(f"config key '{where}.question_types' is {types!r}; expected a non-empty list of "
                              "question types")


MIXTURE_KEYS = ("name", "source", "root", "train", "val", "test", "tasks", "val_fraction")


def check_tasks(cfg: DictConfig) -> None:
    """``tasks.active`` names known tasks; weighting options exist; mixture entries are well formed."""
    from mmfuse.data.sources import list_sources
    from mmfuse.objectives.multitask import weighting_options
    from mmfuse.tasks import list_tasks

    known = list_tasks()
    active = list(cfg.tasks.active)
    if not active:
        raise ConfigError(f"config key 'tasks.active' is empty; choose any of: {', '.join(known)}")
    for t in active:
        if t not in known:
            raise ConfigError(f"config key 'tasks.active' has {t!r}; valid tasks: {', '.join(known)}")
    if cfg.eval.task is not None and cfg.eval.task not in active:
        raise ConfigError(f"config key 'eval.task' is {cfg.eval.task!r}, not an active task ({', '.join(active)})")
    valid_o = weighting_options(cfg.loss.weighting)
    for k in cfg.loss.options:
        if k not in valid_o:
            raise ConfigError(f"config key 'loss.options.{k}' is not an option of weighting {cfg.loss.weighting!r}; "
                              f"valid options: {', '.join(sorted(valid_o)) or 'none'}")
    names = []
    for i, entry in enumerate(cfg.data.mixture):
        where = f"data.mixture[{i}]"
        if not isinstance(entry, DictConfig):
            raise ConfigError(f"config key {where!r} must be a mapping with keys {', '.join(MIXTURE_KEYS)}")
        for k in cast(Iterable[str], entry):  # config keys are names
            if k not in MIXTURE_KEYS:
                raise ConfigError(f"config key '{where}.{k}' is unknown; valid keys: {', '.join(MIXTURE_KEYS)}")
        for k in ("name", "source"):
            if not entry.get(k):
                raise ConfigError(f"config key '{where}.{k}' is required")
        if entry.source not in list_sources():
            raise ConfigError(f"config key '{where}.source' is {entry.source!r}; "
                              f"valid choices: {', '.join(list_sources())}")
        if entry.source == "prepared":
            raise ConfigError(f"config key '{where}.source': a prepared (streamed) dataset cannot be part of a "
                              "mixture yet; train on it alone (data.source=prepared) or mix the original sources")
        vf = entry.get("val_fraction")
        if vf is not None and (isinstance(vf, bool) or not isinstance(vf, (int, float)) or not 0 <= vf < 1):
            raise ConfigError(f"config key '{where}.val_fraction' is {vf!r}; expected a number in [0, 1)")
        if not str(entry.name).replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"config key '{where}.name' is {entry.name!r}; use letters, digits, '_' or '-'")
        names.append(entry.name)
        for t in entry.get("tasks") or []:
            if t not in active:
                raise ConfigError(f"config key '{where}.tasks' has {t!r}, not in tasks.active ({', '.join(active)})")
    check_curriculum(cfg)
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"config key 'data.mixture' repeats dataset name(s) {dup}; names must be unique")
