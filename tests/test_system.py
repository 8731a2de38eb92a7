"""SupervisedSystem: optimiser groups (pretrained encoders get encoder_lr), schedule, checkpoint round trip."""

from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel

from mmfuse.config import load_config, to_container
from mmfuse.systems import SYSTEMS, BaseSystem, RLSystem, SupervisedSystem
from mmfuse.systems.supervised import warmup_cosine
from tests.conftest import TINY


def test_warmup_cosine_values() -> None:
    assert warmup_cosine(0, 100, 10) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(10, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 10) == pytest.approx(0.5)  # half-way through the cosine
    assert warmup_cosine(100, 100, 10, min_ratio=0.1) == pytest.approx(0.1)


def test_pretrained_encoder_gets_encoder_lr_and_no_decay_on_vectors(tmp_path: Path) -> None:
    BertModel(BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64), add_pooling_layer=False).save_pretrained(tmp_path / "bert")
    cfg = load_config(TINY, [f"model.text.pretrained={tmp_path / 'bert'}", "optim.lr=0.01", "optim.encoder_lr=0.0001"])
    system = SupervisedSystem(to_container(cfg), ["yes", "no"], answer_types=["yes/no"])
    system.trainer = type("T", (), {"estimated_stepping_batches": 100})()  # what configure_optimizers reads
    opt = system.configure_optimizers()["optimizer"]
    # initial_lr: the scheduler has already scaled "lr" by the first warm-up factor
    lr_of = {id(p): (g["initial_lr"], g["weight_decay"]) for g in opt.param_groups for p in g["params"]}
    for name, p in system.model.named_parameters():
        lr, wd = lr_of[id(p)]
        assert lr == (0.0001 if name.startswith("encoders.text.") else 0.01), name
        assert wd == (0.0 if p.ndim <= 1 else cfg.optim.weight_decay), name
    assert len(lr_of) == sum(1 for _ in system.model.parameters())  # every parameter is optimised once


def test_hparams_are_plain_data() -> None:
    cfg = load_config(TINY)
    system = SupervisedSystem(to_container(cfg), ["yes", "no"], text_vocab_size=50, answer_types=["yes/no"])
    hp = dict(system.hparams)
    assert set(hp) == {"cfg", "answers", "text_vocab_size", "pad_token_id", "answer_types", "question_types",
                       "answer_words"}
    assert isinstance(hp["cfg"], dict) and hp["answers"] == ["yes", "no"]
    text = {"input_ids": torch.randint(5, 50, (2, 4)), "attention_mask": torch.ones(2, 4, dtype=torch.long)}
    out = system({"text": text,
                  "image": torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8)})
    assert out["vqa"].shape == (2, 2)


def test_stages_are_siblings_on_one_base() -> None:
    """RLSystem is not a SupervisedSystem: neither builds (nor silences) the other's training machinery."""
    assert {"supervised": SupervisedSystem, "rl": RLSystem} == SYSTEMS
    assert issubclass(SupervisedSystem, BaseSystem) and issubclass(RLSystem, BaseSystem)
    assert not issubclass(RLSystem, SupervisedSystem) and not issubclass(SupervisedSystem, RLSystem)
    for hook in ("on_after_backward", "on_train_epoch_end", "total_loss"):
        assert hook not in vars(RLSystem), hook  # nothing of the supervised step to switch off
    cfg = to_container(load_config(TINY))
    system = SupervisedSystem(cfg, ["yes", "no"], answer_types=["yes/no"])
    assert {"weighting", "regularization"} <= {n for n, _ in system.named_children()}
