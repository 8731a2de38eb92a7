from pathlib import Path

import pytest
import torch

import mmfuse
from mmfuse.config import CONFIG_DIR, ConfigError, load_config
from tests.conftest import TINY

EXPERIMENTS = sorted((CONFIG_DIR / "experiments").glob("*.yaml"))


def test_base_defaults_and_override_order(tmp_path: Path) -> None:
    frag = tmp_path / "frag.yaml"
    frag.write_text("seed: 5\noptim: {lr: 0.5}\n")
    exp = tmp_path / "exp.yaml"
    exp.write_text("include: [frag.yaml]\nseed: 7\n")
    cfg = load_config(exp, ["optim.lr=0.25"])
    assert cfg.seed == 7  # the file itself wins over its includes
    assert cfg.optim.lr == 0.25  # overrides win over files
    assert cfg.optim.weight_decay == 0.05  # untouched defaults stay
    assert load_config().model.fusion.name == "cross_attention"


def test_one_bert_field_override_keeps_the_other_fields() -> None:
    base = load_config()
    cfg = load_config(None, ["model.text.config.num_hidden_layers=2", "model.text.config.initializer_range=0.1"])
    text = dict(cfg.model.text.config)
    assert text["num_hidden_layers"] == 2 and text["initializer_range"] == 0.1  # any BertConfig field
    assert text["hidden_size"] == base.model.text.config.hidden_size == 128  # not BertConfig's 768 default
    assert {k: v for k, v in text.items() if k not in ("num_hidden_layers", "initializer_range")} == \
        {k: v for k, v in base.model.text.config.items() if k != "num_hidden_layers"}


def test_unknown_key_names_key_and_valid_keys() -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, ["optim.lrr=0.1"])
    msg = str(e.value)
    assert "'optim.lrr'" in msg and "weight_decay" in msg and "Did you mean 'optim.lr'" in msg


def test_wrong_type_names_key_and_type() -> None:
    with pytest.raises(ConfigError, match=r"'data.batch_size' expects int.*got str"):
        load_config(None, ["data.batch_size=big"])
    assert load_config(None, ["optim.lr=1"]).optim.lr == 1  # an int is a fine float


def test_bad_choices_list_valid_ones() -> None:
    with pytest.raises(ConfigError, match="model.fusion.name.*valid choices: .*concat.*cross_attention"):
        load_config(None, ["model.fusion.name=nope"])
    with pytest.raises(ConfigError, match="data.source.*easy_vqa"):
        load_config(None, ["data.source=coco"])
    with pytest.raises(ConfigError, match="model.text.pool.*valid choices: mean, max, cls"):
        load_config(None, ["model.text.pool=sum"])
    with pytest.raises(ConfigError, match="data.augment.*hflip"):
        load_config(None, ["data.augment=[flip]"])
    with pytest.raises(ConfigError, match=r"model.fusion.hparams.num_layerz.*num_layers"):
        load_config(None, ["model.fusion.hparams.num_layerz=3"])


def test_missing_file_and_bad_override() -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config("does/not/exist.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["seed"])


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_every_experiment_config_loads_and_builds(path: Path) -> None:
    if "stage: rl" in path.read_text():  # the model comes from rl.init_from; without one it is an error
        with pytest.raises(ConfigError, match="rl.init_from"):
            load_config(path)
        cfg = load_config(path, ["rl.init_from=stage1.ckpt"])
        assert cfg.stage == "rl" and cfg.data.source == {"sort_of_clevr_order_rl": "jsonl"}.get(path.stem,
                                                                                                 "easy_vqa_noisy")
        return
    cfg = load_config(path)
    model = mmfuse.build_model(cfg, num_answers=13, text_vocab_size=200)  # the whole config: clip length too
    h, w = model.image_size
    batch = {"text": {"input_ids": torch.randint(5, 200, (3, 6)), "attention_mask": torch.ones(3, 6, dtype=torch.long)},
             "image_index": torch.tensor([0, 1, 1])}
    if cfg.model.video.enabled:
        batch["video"] = torch.randint(0, 255, (2, cfg.data.video.num_frames, 3, h, w), dtype=torch.uint8)
    else:
        batch["image"] = torch.randint(0, 255, (2, 3, h, w), dtype=torch.uint8)
    assert model(batch)["vqa"].shape == (3, 13)


def test_tiny_config_is_tiny() -> None:
    cfg = load_config(TINY)
    assert cfg.model.image.embed_dim <= 64 and cfg.model.text.config.hidden_size <= 64


def test_package_exports_survive_submodule_imports() -> None:
    """Every exported name stays what it is after every submodule is imported: no module is named like an
    export (``mmfuse.train`` is the function; the run lives in ``mmfuse.training``)."""
    import importlib
    import pkgutil

    import mmfuse

    modules = [m.name for m in pkgutil.walk_packages(mmfuse.__path__, "mmfuse.")]
    clashes = sorted(set(mmfuse.__all__) & {m.split(".")[1] for m in modules})
    assert not clashes, f"modules named like exported names: {clashes}"
    for name in modules:
        importlib.import_module(name)
    for name in mmfuse.__all__:
        assert not isinstance(getattr(mmfuse, name), type(mmfuse)), name
    assert callable(mmfuse.train) and mmfuse.train.__module__ == "mmfuse.training"
    assert callable(mmfuse.evaluate) and callable(mmfuse.cross_validate) and callable(mmfuse.register_fusion)
