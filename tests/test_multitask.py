"""Multi-task training in the system: every loss weighting end to end, PCGrad's gradient surgery on the
shared parameters, L2 / L2-SP terms, generator evaluation, and configs written before ``tasks`` existed."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

import mmfuse
from mmfuse.config import ConfigError, complete_config, load_config, to_container
from mmfuse.data.tokenizer import tokenizer_from_json
from mmfuse.data.transforms import normalize
from mmfuse.data.vocab import AnswerVocab
from mmfuse.objectives.multitask import list_weightings, pcgrad_project
from mmfuse.systems import SupervisedSystem
from mmfuse.systems.task_grads import shared_parameters
from tests.conftest import TINY, jsonl_overrides, make_jsonl_dataset, run_tool

pytestmark = pytest.mark.filterwarnings("ignore::mmfuse.evaluation.leakage.LeakageWarning")

ALL = ["vqa", "answer_generation", "itm", "answer_type"]
PAIRS = ["vqa~answer_generation", "vqa~itm", "vqa~answer_type", "answer_generation~itm",
         "answer_generation~answer_type", "itm~answer_type"]
NO_SELF_LOG = pytest.mark.filterwarnings("ignore:You are trying to .self.log")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_jsonl_dataset(tmp_path_factory.mktemp("mt") / "data")


def read_csv(run: Path) -> list[dict[str, str]]:
    with (run / "logs" / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def per_epoch(rows: list[dict[str, str]], key: str) -> dict[int, float]:
    """``{epoch: value}`` of an epoch-level column (one value per epoch)."""
    out: dict[int, float] = {}
    for r in rows:
        if r.get(key):
            e = int(r["epoch"])
            assert e not in out, f"{key} logged twice in epoch {e}"
            out[e] = float(r[key])
    return out


def build_system(data: dict[str, Path], run: Path, *extra: str) -> tuple[SupervisedSystem, Any]:
    cfg = load_config(TINY, jsonl_overrides(data, run) + [f"tasks.active=[{','.join(ALL)}]", *extra])
    dm = mmfuse.build_datamodule(cfg, None)
    dm.prepare()
    for split in ("train", "val", "test"):
        dm.split_records(split)
    torch.manual_seed(0)
    system = SupervisedSystem(to_container(cfg), dm.vocab.answers, text_vocab_size=len(dm.tokenizer),
                              answer_types=dm.types("answer_type"), question_types=dm.types("question_type"),
                              answer_words=dm.answer_words)
    dm.img_size = (32, 32)
    return system, dm


# ------------------------------------------------------------------------- every weighting, end to end
@pytest.mark.parametrize("weighting", list_weightings())
def test_training_with_each_weighting_logs_tasks_weights_conflicts(data: dict, tmp_path: Path, weighting: str) -> None:
    run = tmp_path / "run"
    extra = ["tasks.vqa.weight=0.3", "tasks.itm.weight=2.0"] if weighting in ("static", "pcgrad") else []
    cfg = mmfuse.load_config(TINY, jsonl_overrides(data, run) + [
        f"tasks.active=[{','.join(ALL)}]", "trainer.logger=csv", "loss.conflict_every_n_steps=1",
        f"loss.weighting={weighting}", f"trainer.max_epochs={3 if weighting == 'dwa' else 2}", *extra])
    result = mmfuse.train(cfg)
    rows = read_csv(run)
    epochs = [0, 1, 2] if weighting == "dwa" else [0, 1]
    weights = {t: per_epoch(rows, f"weight/{t}") for t in ALL}
    losses = {t: per_epoch(rows, f"train/loss/{t}") for t in ALL}
    for t in ALL:
        assert sorted(losses[t]) == epochs and all(math.isfinite(v) and v > 0 for v in losses[t].values()), t
        assert sorted(weights[t]) == epochs and all(v > 0 for v in weights[t].values()), t
        val = per_epoch(rows, f"val/{t}/acc")
        assert sorted(val) == epochs and all(0.0 <= v <= 1.0 for v in val.values()), t
    header = set(rows[0])
    assert {k for k in header if k.startswith("conflict/cos/")} == {f"conflict/cos/{p}" for p in PAIRS}
    for p in PAIRS:
        cos = per_epoch(rows, f"conflict/cos/{p}")
        assert sorted(cos) == epochs and all(-1.0 <= v <= 1.0 for v in cos.values()), p
        assert any(v != 0.0 for v in cos.values()), p
    total = per_epoch(rows, "train/loss_epoch")
    if weighting in ("static", "pcgrad"):
        for e in epochs:
            assert [weights[t][e] for t in ALL] == pytest.approx([0.3, 1.0, 2.0, 1.0], abs=1e-7)
    if weighting == "dwa":  # w = 1 during the first two epochs, then K·softmax(r/T), r = L(e-1)/L(e-2)
        assert all(weights[t][e] == 1.0 for t in ALL for e in (0, 1))
        r = torch.tensor([losses[t][1] / losses[t][0] for t in ALL], dtype=torch.float64)
        expected = (4 * torch.softmax(r / 2.0, dim=0)).tolist()  # default temperature 2; equal-size batches
        assert [weights[t][2] for t in ALL] == pytest.approx(expected, rel=1e-5)
        assert sum(weights[t][2] for t in ALL) == pytest.approx(4.0, rel=1e-6)
    if weighting == "gradnorm":  # Σ_t w_t = K after every update (and 1 each before the first)
        for e in epochs:
            assert sum(weights[t][e] for t in ALL) == pytest.approx(4.0, abs=1e-5)
        assert any(weights[t][1] != 1.0 for t in ALL)
    if weighting == "uncertainty":  # exp(-s_t): learned, no longer exactly 1
        assert any(weights[t][e] != 1.0 for t in ALL for e in epochs)
    if weighting in ("static", "pcgrad", "dwa"):  # constant weights within an epoch: total = Σ w_t · mean L_t
        for e in epochs:
            assert total[e] == pytest.approx(sum(weights[t][e] * losses[t][e] for t in ALL), rel=1e-5)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_tasks"] == result["test_tasks"]
    assert sorted(metrics["test_tasks"]) == sorted(ALL)
    assert all(0.0 <= v <= 1.0 for v in metrics["test_tasks"].values())
    for t in ALL:
        assert metrics["test_tasks"][t] == metrics["test"][f"test/{t}/acc"]
    assert metrics["test"]["test/acc"] == metrics["test_tasks"]["vqa"]  # vqa is the primary task
    png = run / "plots" / "multitask.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------ PCGrad inside
@NO_SELF_LOG
@pytest.mark.parametrize("fusion", mmfuse.list_fusions())
@pytest.mark.parametrize("path", ["task_grads", "system_step"])
def test_pcgrad_shared_gradients_match_hand_projection(data: dict, tmp_path: Path, path: str, fusion: str) -> None:
    system, dm = build_system(data, tmp_path / "run", "loss.weighting=pcgrad", "tasks.vqa.weight=0.5",
                              "tasks.itm.weight=2.0", f"model.fusion.name={fusion}",
                              f"loss.conflict_every_n_steps={1 if path == 'system_step' else 0}")
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    system.eval()  # no dropout: every forward gives the same losses
    system.double()  # float64: the two summation orders agree to ~1e-15
    batch["image"] = normalize(batch["image"], system.model.mean, system.model.std).double()
    model = system.model

    out = model(batch)
    losses = {n: t.run(model.heads[n], out, batch, model, False).loss for n, t in system.tasks.items()}
    total, weights = system.weighting(losses)
    assert weights == {"vqa": 0.5, "answer_generation": 1.0, "itm": 2.0, "answer_type": 1.0}
    shared = [p for _, p in shared_parameters(model)]
    assert shared and all(n.startswith(("encoders.", "fusion.")) for n, _ in shared_parameters(model))
    flats = []
    for t, loss in losses.items():
        grads = torch.autograd.grad(loss, shared, retain_graph=True, allow_unused=True)
        flats.append(weights[t] * torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                                             for g, p in zip(grads, shared)]))
    gen = torch.Generator()
    gen.set_state(system.weighting.generator.get_state())  # the weighting's own random task order
    hand = torch.stack(pcgrad_project(flats, generator=gen)).sum(0)
    plain = torch.stack(flats).sum(0)
    assert float((hand - plain).abs().max()) > 1e-3  # the tasks conflict: the projection changes something
    heads = [(n, p) for n, p in model.named_parameters() if n.startswith("heads.")]
    head_grads = torch.autograd.grad(total, [p for _, p in heads], retain_graph=True, allow_unused=True)

    system.zero_grad(set_to_none=True)
    if path == "task_grads":
        system.task_grads.step(losses, weights, 0)
        total.backward()
        system.task_grads.apply()
    else:  # the LightningModule's own training step and hook
        total = system._step(batch, "train")
        total.backward()
        system.on_after_backward()
    got = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in shared])
    torch.testing.assert_close(got, hand, atol=1e-6, rtol=0)
    assert float((got - hand).abs().max()) < 1e-10
    for (n, p), g in zip(heads, head_grads):
        assert g is not None, n
        torch.testing.assert_close(p.grad, g, atol=1e-12, rtol=0, msg=n)  # heads: the plain Σ w_t ∇L_t
    assert system.task_grads.delta is None  # applied once, then cleared


@NO_SELF_LOG
def test_static_weighting_leaves_backward_gradients_alone(data: dict, tmp_path: Path) -> None:
    system, dm = build_system(data, tmp_path / "run", "loss.conflict_every_n_steps=1")
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    system.eval()
    out = system.model(batch)
    losses = {n: t.run(system.model.heads[n], out, batch, system.model, False).loss for n, t in system.tasks.items()}
    total, weights = system.weighting(losses)
    params = [p for _, p in system.model.named_parameters()]
    expected = torch.autograd.grad(total, params, retain_graph=True, allow_unused=True)
    system.zero_grad(set_to_none=True)
    system.task_grads.step(losses, weights, 0)
    assert system.task_grads.delta is None  # static: nothing to correct, only the conflict measured
    total.backward()
    system.task_grads.apply()
    for p, g in zip(params, expected):
        if g is not None:
            torch.testing.assert_close(p.grad, g, atol=1e-7, rtol=1e-6)
    cos = system.task_grads.epoch_cosines()
    assert sorted(cos) == sorted(PAIRS) and all(-1.0 <= c <= 1.0 for c in cos.values())
    assert system.task_grads.epoch_cosines() == {}  # reset after reading


# ------------------------------------------------------------------------------------ regularisation
def hand_l2(model: torch.nn.Module, skip_prefix: str | None = None) -> float:
    total = 0.0
    for n, p in model.named_parameters():
        parts = n.lower().split(".")
        if p.ndim < 2 or any("bias" in c or "norm" in c for c in parts):
            continue
        if skip_prefix and n.startswith(skip_prefix):
            continue
        total += float(p.detach().double().square().sum())
    return total


def test_l2_term_is_lambda_times_sum_of_squared_weight_matrices(data: dict, tmp_path: Path) -> None:
    system, _ = build_system(data, tmp_path / "run", "regularization.l2=0.01")
    terms = system.regularization(system.model)
    assert set(terms) == {"reg/l2"}
    expected = 0.01 * hand_l2(system.model)
    assert expected > 0 and terms["reg/l2"].item() == pytest.approx(expected, rel=1e-5)
    terms["reg/l2"].backward()  # gradient 2λθ on a weight matrix, nothing on a bias
    w = system.model.heads["vqa"].net[1]
    torch.testing.assert_close(w.weight.grad, 2 * 0.01 * w.weight.detach())
    assert w.bias.grad is None
    only_heads, _ = build_system(data, tmp_path / "run2", "regularization.l2=0.01",
                                 "regularization.l2_exclude=[encoders.,fusion.]")
    expected_heads = 0.01 * sum(float(p.detach().double().square().sum())
                                for n, p in only_heads.model.named_parameters() if n.startswith("heads."))
    assert only_heads.regularization(only_heads.model)["reg/l2"].item() == pytest.approx(expected_heads, rel=1e-5)


def test_l2_sp_is_zero_at_start_and_lambda_times_squared_change(data: dict, tmp_path: Path) -> None:
    system, _ = build_system(data, tmp_path / "run", "regularization.l2_sp=0.1", "regularization.l2_sp_scope=encoders",
                             "regularization.l2=0.01")
    reg, model = system.regularization, system.model
    enc = [n for n, p in model.named_parameters() if n.startswith("encoders.")]
    assert reg.sp_names == enc  # every encoder parameter, biases included
    terms = reg(model)
    assert terms["reg/l2_sp"].item() == 0.0
    # parameters under L2-SP are left out of the plain L2 term
    assert terms["reg/l2"].item() == pytest.approx(0.01 * hand_l2(model, skip_prefix="encoders."), rel=1e-5)
    target = dict(model.named_parameters())["encoders.image.vit.patch_embed.proj.weight"]
    g = torch.Generator().manual_seed(1)
    delta = 0.01 * torch.randn(target.shape, generator=g)
    bias = dict(model.named_parameters())["encoders.text.bert.embeddings.LayerNorm.bias"]
    delta_b = torch.full_like(bias, 0.02)
    start = target.detach().clone()
    with torch.no_grad():
        target.add_(delta)
        bias.add_(delta_b)
    expected = 0.1 * (float(delta.double().square().sum()) + float(delta_b.double().square().sum()))
    assert reg(model)["reg/l2_sp"].item() == pytest.approx(expected, rel=1e-4)

    # the start point is in the state dict, so a checkpoint restores it (not the loaded weights)
    sd = system.state_dict()
    key = "regularization.start.encoders__image__vit__patch_embed__proj__weight"
    assert key in sd and torch.equal(sd[key], start)
    assert not torch.equal(sd["model.encoders.image.vit.patch_embed.proj.weight"], start)
    ckpt = tmp_path / "sp.ckpt"
    torch.save({"state_dict": sd, "hyper_parameters": dict(system.hparams),
                "pytorch-lightning_version": L.__version__}, ckpt)
    torch.manual_seed(123)  # a different initialisation before the checkpoint is loaded
    loaded = SupervisedSystem.load_from_checkpoint(str(ckpt), map_location="cpu")
    assert loaded.regularization(loaded.model)["reg/l2_sp"].item() == pytest.approx(expected, rel=1e-4)
    for n in enc:
        buf = n.replace(".", "__")
        assert torch.equal(getattr(loaded.regularization.start, buf), getattr(reg.start, buf)), n


def test_l2_sp_pretrained_scope_holds_only_the_pretrained_encoder(tmp_path: Path) -> None:
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64), add_pooling_layer=False).save_pretrained(tmp_path / "bert")
    cfg = load_config(TINY, [f"model.text.pretrained={tmp_path / 'bert'}", "regularization.l2_sp=0.5",
                             "regularization.l2=0.01"])
    system = SupervisedSystem(to_container(cfg), ["yes", "no"], answer_types=["yes/no"])
    reg, model = system.regularization, system.model
    assert reg.sp_names == [n for n, p in model.named_parameters() if n.startswith("encoders.text.")]
    terms = reg(model)
    assert terms["reg/l2_sp"].item() == 0.0
    assert terms["reg/l2"].item() == pytest.approx(0.01 * hand_l2(model, skip_prefix="encoders.text."), rel=1e-5)
    with torch.no_grad():
        model.encoders["image"].vit.patch_embed.proj.weight.add_(1.0)  # not pretrained: plain L2 only
    assert reg(model)["reg/l2_sp"].item() == 0.0
    w = dict(model.named_parameters())["encoders.text.bert.embeddings.word_embeddings.weight"]
    with torch.no_grad():
        w[3].add_(0.1)
    assert reg(model)["reg/l2_sp"].item() == pytest.approx(0.5 * 32 * 0.1 ** 2, rel=1e-4)


def test_l2_sp_on_pretrained_scope_without_pretrained_encoder_is_an_error(data: dict, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="l2_sp_scope"):
        build_system(data, tmp_path / "run", "regularization.l2_sp=0.1")  # scope: pretrained (default)
    with pytest.raises(ConfigError, match="regularization.l2_sp_scope"):
        load_config(TINY, ["regularization.l2_sp_scope=everything"])


def test_regularisation_logged_in_training_and_start_kept_in_checkpoint(data: dict, tmp_path: Path) -> None:
    run = tmp_path / "run"
    overrides = jsonl_overrides(data, run) + ["trainer.logger=csv", "regularization.l2=0.01",
                                              "regularization.l2_sp=0.1", "regularization.l2_sp_scope=encoders"]
    cfg = mmfuse.load_config(TINY, overrides)
    result = mmfuse.train(cfg)
    rows = read_csv(run)
    step0 = next(r for r in rows if r.get("reg/l2_step") and r["step"] == "0")
    assert float(step0["reg/l2_sp_step"]) == 0.0  # the first step is taken at the start point
    later = [float(r["reg/l2_sp_step"]) for r in rows if r.get("reg/l2_sp_step") and r["step"] != "0"]
    assert later and all(v > 0 for v in later)
    assert per_epoch(rows, "reg/l2_epoch") and per_epoch(rows, "reg/l2_sp_epoch")

    # the initial weights, rebuilt as train() builds them (same seed, same order)
    L.seed_everything(cfg.seed)
    dm = mmfuse.build_datamodule(cfg, tmp_path / "rebuild")
    dm.prepare()
    for split in ("train", "val", "test"):
        dm.split_records(split)
    init = SupervisedSystem(to_container(cfg), dm.vocab.answers, text_vocab_size=len(dm.tokenizer),
                            pad_token_id=int(dm.tokenizer.pad_token_id or 0), answer_types=dm.types("answer_type"),
                            question_types=dm.types("question_type"), answer_words=dm.answer_words)
    state = torch.load(Path(result["run_dir"]) / "checkpoints" / "last.ckpt", map_location="cpu",
                       weights_only=True)["state_dict"]
    for n, p in init.model.named_parameters():
        if n.startswith("encoders."):  # the checkpoint's L2-SP start is the initialisation
            assert torch.equal(state["regularization.start." + n.replace(".", "__")], p.detach()), n
    expected_l2 = 0.01 * hand_l2(init.model, skip_prefix="encoders.")
    assert float(step0["reg/l2_step"]) == pytest.approx(expected_l2, rel=1e-5)

    loaded = mmfuse.load_system(str(Path(result["run_dir"]) / "checkpoints" / "last.ckpt"))
    manual = sum(float((state["model." + n].double() - state["regularization.start." + n.replace(".", "__")].double())
                       .square().sum()) for n in loaded.regularization.sp_names)
    value = loaded.regularization(loaded.model)["reg/l2_sp"].item()
    assert value > 0 and value == pytest.approx(0.1 * manual, rel=1e-4)


# ------------------------------------------------------------------------------ generator evaluation
def test_generation_only_run_trains_and_evaluates(data: dict, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = mmfuse.load_config(TINY, jsonl_overrides(data, run) + ["tasks.active=[answer_generation]",
                                                                  "trainer.logger=none"])
    result = mmfuse.train(cfg)
    assert set(result["test_tasks"]) == {"answer_generation"}
    assert result["test"]["test/acc"] == result["test"]["test/answer_generation/acc"]  # its primary task
    assert "generated answers" in result["training_targets"]
    out = run_tool("tools/evaluate.py", "--checkpoint", result["best_checkpoint"], "--output", str(tmp_path / "ev"))
    assert "overall" in out
    ev = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    preds = json.loads((tmp_path / "ev" / "predictions.json").read_text())
    assert ev["num_questions"] == 12 and len(preds) == 12
    assert all(isinstance(p["answer"], str) for p in preds)
    assert sorted(p["question_id"] for p in preds) == list(range(60, 72))
    assert ev["accuracy"]["overall"] == round(100 * result["test"]["test/answer_generation/acc"], 2)


def test_evaluate_scores_the_generator_when_asked(data: dict, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = mmfuse.load_config(TINY, jsonl_overrides(data, run) + [
        "tasks.active=[vqa,answer_generation]", "trainer.logger=none", "optim.lr=1e-2", "optim.warmup_ratio=0",
        "trainer.max_epochs=3", "tasks.answer_generation.dropout=0", "checkpoint.monitor=val/loss",
        "checkpoint.mode=min"])
    result = mmfuse.train(cfg)
    gen_acc = result["test"]["test/answer_generation/acc"]
    assert result["test_accuracy"]["overall"] == round(100 * result["test"]["test/vqa/acc"], 2)  # training: vqa
    best = result["best_checkpoint"]
    run_tool("tools/evaluate.py", "--checkpoint", best, "--output", str(tmp_path / "ev"), "eval.task=answer_generation")
    ev = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert ev["accuracy"]["overall"] == round(100 * gen_acc, 2)
    assert ev["lightning"]["test/answer_generation/acc"] == pytest.approx(gen_acc, abs=1e-9)
    preds = json.loads((tmp_path / "ev" / "predictions.json").read_text())

    # the written answers are the generator's greedy decoding of the best checkpoint, not the classifier's
    system = mmfuse.load_system(best)
    system.eval()
    dm = mmfuse.build_datamodule(cfg, None, vocab=AnswerVocab(system.answers),
                                 tokenizer=tokenizer_from_json(system.tokenizer_json))
    dm.img_size = system.model.image_size
    decoded, classified = {}, {}
    with torch.no_grad():
        for batch in dm.loader("test"):
            out = system.model(batch)
            answers = system.tasks["answer_generation"].decode(system.model.heads["answer_generation"], out["fusion"])
            decoded.update(zip(batch["question_id"], answers))
            classified.update(zip(batch["question_id"], [system.answers[i] for i in out["vqa"].argmax(-1).tolist()]))
    assert {p["question_id"]: p["answer"] for p in preds} == decoded
    vqa_preds = json.loads((run / "eval_test" / "predictions.json").read_text())  # written by train(): vqa
    assert {p["question_id"]: p["answer"] for p in vqa_preds} == classified
    with pytest.raises(ConfigError, match="eval.task"):
        load_config(TINY, ["tasks.active=[vqa]", "eval.task=answer_generation"])


# ----------------------------------------------------------------------------------------- old configs
def test_old_model_head_config_is_completed_to_tasks_vqa() -> None:
    old = to_container(load_config(TINY))
    del old["tasks"]
    old["model"]["head"] = {"hidden": 32, "dropout": 0.1, "loss": "ce"}
    done = complete_config(old)
    assert done["tasks"]["active"] == ["vqa"]
    assert done["tasks"]["vqa"] == {"weight": 1.0, "loss": "ce", "hidden": 32, "dropout": 0.1}
    assert "head" not in done["model"]
    assert done["loss"]["weighting"] == "static" and done["regularization"]["l2"] == 0.0  # later keys: defaults
    assert old["model"]["head"]["loss"] == "ce" and "tasks" not in old  # the input is not modified
    system = SupervisedSystem(old, ["yes", "no", "red"], text_vocab_size=50, answer_types=["yes/no"])
    assert system.active == ["vqa"] and system.model.heads["vqa"].net[1].out_features == 32


def test_model_head_key_is_a_config_error_naming_tasks_vqa() -> None:
    with pytest.raises(ConfigError, match=r"model\.head.*tasks\.vqa"):
        load_config(TINY, ["model.head.hidden=3"])
