"""Configuration: ``load_config(paths, overrides) -> DictConfig``.

Order of precedence (later wins): ``configs/base.yaml`` (every default) → for each
experiment file, the fragments it lists under ``include:`` (paths relative to that file,
merged in order, themselves allowed to include) → the file itself → ``key=value``
overrides. The result is validated against ``base.yaml``: an unknown key, a wrong type or
an invalid choice is a :class:`ConfigError` naming the key and what is valid.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, ListConfig, OmegaConf

from mmfuse.config_checks import check_modalities, check_rl, check_tasks, check_video
from mmfuse.config_ranges import check_ranges
from mmfuse.errors import ConfigError
from mmfuse.registry import check_option_types

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
BASE_CONFIG = CONFIG_DIR / "base.yaml"

# Nodes whose keys are free-form (checked elsewhere, e.g. fusion hparams against the
# fusion's signature, BertConfig fields by transformers) or whose type depends on the source.
OPEN_NODES = {
    "data.train", "data.val", "data.test",
    "model.text.config", "model.image.kwargs", "model.fusion.hparams", "model.video.hparams", "loss.options",
}

# Open nodes merged key by key like the rest: `model.text.config.num_hidden_layers=2` changes that BertConfig field
# only (replacing the node would drop hidden_size and the rest to BertConfig's 768-wide, 12-layer defaults).
MERGED_OPEN_NODES = {"model.text.config"}

# Keys that moved: an old config gets the new place in the error instead of a bare "unknown key".
MOVED = {"model.head": "tasks.vqa (hidden, dropout, loss)"}


# Keys that legitimately take several types (Lightning accepts "auto", an int or a list).
ANY_TYPE = {"trainer.devices", "trainer.precision", "trainer.accelerator", "trainer.strategy"}


# Choices that belong to no component: the run's own settings.
STAGES = ("supervised", "rl")
LOGGERS = ("csv", "tensorboard", "none")
CHECKPOINT_MODES = ("max", "min")


def _choices() -> dict[str, Callable[[], Sequence[str]]]:
    """Config key -> its valid values, read from the component that owns them: a part added to a registry
    (fusion, pooling, source, weighting, reward, task) is a valid choice here with no edit."""
    # Imported here, not at the top: the registries import torch, transformers and timm.
    from mmfuse.data.frames import SAMPLING_MODES
    from mmfuse.data.mixture import STRATEGIES as MIXTURE_SAMPLING
    from mmfuse.data.sources import list_sources
    from mmfuse.data.splits import SPLITS
    from mmfuse.encoders.stems import STEMS
    from mmfuse.encoders.temporal import list_temporal_poolings
    from mmfuse.encoders.text import TEXT_POOLS
    from mmfuse.encoders.video import VIDEO_OUTPUTS
    from mmfuse.encoders.vision import POOLS, POS_EMBEDS
    from mmfuse.fusion import list_fusions
    from mmfuse.heads.generator import STRATEGIES as DECODING
    from mmfuse.objectives.losses import VQA_LOSSES
    from mmfuse.objectives.multitask import list_weightings
    from mmfuse.objectives.nonfinite import NONFINITE_POLICIES
    from mmfuse.objectives.regularizers import L2_SP_SCOPES
    from mmfuse.rl.advantages import list_advantages
    from mmfuse.rl.ppo import ALGORITHMS
    from mmfuse.rl.rewards import KL_ESTIMATORS, list_rewards
    from mmfuse.rl.rollout import TRUNCATION
    from mmfuse.tasks import list_answer_tasks
    from mmfuse.tasks.generation import TARGETS

    return {
        "data.source": list_sources,
        "model.fusion.name": list_fusions,
        "model.video.pooling": list_temporal_poolings,
        "model.video.output": lambda: VIDEO_OUTPUTS,
        "data.video.train_sampling": lambda: SAMPLING_MODES,
        "tasks.vqa.loss": lambda: list(VQA_LOSSES),
        "tasks.answer_generation.target": lambda: TARGETS,
        "tasks.answer_generation.decode": lambda: DECODING,
        "loss.weighting": list_weightings,
        "loss.nonfinite": lambda: NONFINITE_POLICIES,
        "regularization.l2_sp_scope": lambda: L2_SP_SCOPES,
        "data.sampling": lambda: MIXTURE_SAMPLING,
        "eval.task": list_answer_tasks,
        "model.image.stem": lambda: list(STEMS),
        "model.image.pos_embed": lambda: list(POS_EMBEDS),
        "model.image.pool": lambda: list(POOLS),
        "model.text.pool": lambda: list(TEXT_POOLS),
        "trainer.logger": lambda: LOGGERS,
        "checkpoint.mode": lambda: CHECKPOINT_MODES,
        "eval.split": lambda: SPLITS,
        "stage": lambda: STAGES,
        "rl.algorithm": lambda: ALGORITHMS,
        "rl.advantage": list_advantages,
        "rl.reward": list_rewards,
        "rl.truncation": lambda: TRUNCATION,
        "rl.kl.estimator": lambda: KL_ESTIMATORS,
        "trainer.compile_backend": _compile_backends,
        "trainer.compile_mode": _compile_modes,
    }


def _compile_backends() -> list[str]:
    """torch.compile's registered backends, debug ones (``aot_eager``: trace without code generation) included."""
    import torch._dynamo

    return list(torch._dynamo.list_backends(exclude_tags=()))


def _compile_modes() -> list[str]:
    import torch._inductor

    return list(torch._inductor.list_mode_options())


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> DictConfig:
    """Read one YAML file with its ``include:`` fragments merged first."""
    path = path.resolve()
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if path in seen:
        raise ConfigError(f"include cycle: {' -> '.join(str(p) for p in (*seen, path))}")
    cfg = OmegaConf.load(path)
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(cfg).__name__}")
    includes = cfg.pop("include", None) or []
    if isinstance(includes, str):
        includes = [includes]
    merged = OmegaConf.create({})
    for inc in includes:
        merged = cast(DictConfig, OmegaConf.merge(merged, _read_yaml(path.parent / str(inc), (*seen, path))))
    return OmegaConf.merge(merged, cfg)  # type: ignore[return-value]


def _type_name(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "str"
    if isinstance(v, (list, ListConfig)):
        return "list"
    if isinstance(v, (dict, DictConfig)):
        return "mapping"
    return type(v).__name__


def _compatible(default: Any, value: Any) -> bool:
    if default is None or value is None:
        return True  # null defaults accept any type; any key may be set back to null
    d, v = _type_name(default), _type_name(value)
    return d == v or (d == "float" and v == "int")


def _validate(node: DictConfig, schema: DictConfig, prefix: str = "") -> None:
    for key in cast(Iterable[str], node):  # config keys are names
        path = f"{prefix}{key}"
        if key not in schema:
            if path in MOVED:
                raise ConfigError(f"config key {path!r} has moved to {MOVED[path]}")
            valid = sorted(str(k) for k in schema)
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" Did you mean {prefix + close[0]!r}?" if close else ""
            raise ConfigError(f"unknown config key {path!r}; valid keys under "
                              f"{prefix.rstrip('.') or 'the top level'}: {', '.join(valid)}.{hint}")
        if path in OPEN_NODES or path in ANY_TYPE:
            continue
        child = node._get_node(key)
        assert child is not None  # key is one of node's own
        default = schema[key]
        value = child if isinstance(child, (DictConfig, ListConfig)) else child._value()
        if isinstance(value, str) and "${" in value:
            continue  # interpolation: checked after resolution by the consumer
        if not _compatible(default, value):
            raise ConfigError(f"config key {path!r} expects {_type_name(default)} "
                              f"(default {default!r}), got {_type_name(value)} {value!r}")
        if isinstance(default, DictConfig) and isinstance(value, DictConfig):
            _validate(value, default, path + ".")


def _check_choices(cfg: DictConfig) -> None:
    for path, valid in _choices().items():
        value = OmegaConf.select(cfg, path)
        if value is not None and value not in valid():
            raise ConfigError(f"config key {path!r} is {value!r}; valid choices: {', '.join(valid())}")
    from mmfuse.data.transforms import AUGMENTATIONS

    for aug in cfg.data.augment:
        if aug not in AUGMENTATIONS:
            raise ConfigError(f"config key 'data.augment' has {aug!r}; valid choices: {', '.join(AUGMENTATIONS)}")
    check_tasks(cfg)
    check_modalities(cfg)
    check_rl(cfg)
    check_video(cfg)
    from mmfuse.fusion import fusion_hparams

    valid_h = fusion_hparams(cfg.model.fusion.name)
    for k in cfg.model.fusion.hparams:
        if k not in valid_h:
            raise ConfigError(f"config key 'model.fusion.hparams.{k}' is not an option of fusion "
                              f"{cfg.model.fusion.name!r}; valid options: {', '.join(sorted(valid_h)) or 'none'}")
    from mmfuse.encoders.temporal import TEMPORAL_POOLINGS
    from mmfuse.fusion.base import FUSIONS

    for where, cls, given in (
            ("model.fusion.hparams", FUSIONS.get(cfg.model.fusion.name), cfg.model.fusion.hparams),
            ("model.video.hparams", TEMPORAL_POOLINGS.get(cfg.model.video.pooling), cfg.model.video.hparams)):
        if problem := check_option_types(where, cls, cast(dict, OmegaConf.to_container(given))):
            raise ConfigError(problem)
    check_ranges(cfg)


def load_config(
    paths: str | Path | Sequence[str | Path] | None = None,
    overrides: Iterable[str] | None = None,
) -> DictConfig:
    """Load, merge and validate a configuration.

    Args:
        paths: experiment YAML file(s), merged in order over ``configs/base.yaml``.
        overrides: ``key=value`` strings (OmegaConf dot-list syntax), applied last.

    Returns:
        The resolved, validated config.

    Raises:
        ConfigError: unknown key, wrong type, invalid choice, missing file, bad override.
    """
    base = OmegaConf.load(BASE_CONFIG)
    if isinstance(paths, (str, Path)):
        paths = [paths]
    cfg: DictConfig = OmegaConf.create({})
    for p in paths or []:
        cfg = OmegaConf.merge(cfg, _read_yaml(Path(p)))  # type: ignore[assignment]
    overrides = list(overrides or [])
    for o in overrides:
        if "=" not in o:
            raise ConfigError(f"override {o!r} is not of the form key=value")
    try:
        dot = OmegaConf.from_dotlist(overrides)
    except Exception as e:  # omegaconf's grammar errors
        raise ConfigError(f"cannot parse overrides {overrides}: {e}") from e
    user = OmegaConf.merge(cfg, dot)
    _validate(user, base)  # type: ignore[arg-type]
    merged = OmegaConf.merge(base, user)
    # Open nodes are replaced, not merged, so a user mapping never inherits stale defaults
    # of another source or fusion (the BertConfig fields are one model's: merged).
    for path in OPEN_NODES - MERGED_OPEN_NODES:
        val = OmegaConf.select(user, path, default="__absent__")
        if not (isinstance(val, str) and val == "__absent__"):
            OmegaConf.update(merged, path, val, merge=False)
    OmegaConf.resolve(merged)
    _check_choices(merged)  # type: ignore[arg-type]
    return merged  # type: ignore[return-value]


def save_config(cfg: DictConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (the run directory's ``config.yaml``)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, path, resolve=True)


def to_container(cfg: DictConfig) -> dict[str, Any]:
    """Plain nested dict (what ``save_hyperparameters`` stores)."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def complete_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """A stored config (checkpoint ``hyper_parameters``) brought up to the current schema.

    Keys added since the checkpoint was written take their ``base.yaml`` defaults; the pre-``tasks``
    ``model.head`` node becomes ``tasks.vqa``. Plain dict in, plain dict out.
    """
    cfg = dict(cfg)
    model = dict(cfg.get("model", {}))
    head = model.pop("head", None)
    cfg["model"] = model
    if head is not None and "tasks" not in cfg:
        cfg["tasks"] = {"active": ["vqa"], "vqa": dict(head)}
    stored = OmegaConf.create(cfg)
    merged = OmegaConf.merge(OmegaConf.load(BASE_CONFIG), stored)
    for path in OPEN_NODES:  # replaced, never merged (as in load_config)
        val = OmegaConf.select(stored, path, default="__absent__")
        if not (isinstance(val, str) and val == "__absent__"):
            OmegaConf.update(merged, path, val, merge=False)
    return OmegaConf.to_container(merged, resolve=True)  # type: ignore[return-value]
