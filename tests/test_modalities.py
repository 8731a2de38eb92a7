"""Unimodal baselines (``model.modalities=[text]`` / ``[image]``): the unused encoder is never built nor read,
the fusion is bypassed by a projection, bad values and ``itm`` with one modality are config errors, and a
unimodal run trains, checkpoints (plain data) and evaluates like any other."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch

import mmfuse
from mmfuse.config import complete_config, load_config, to_container
from mmfuse.config_checks import MODALITIES as CONFIG_MODALITIES
from mmfuse.encoders import EncoderOutput, VideoEncoder
from mmfuse.errors import ConfigError
from mmfuse.model import MODALITIES, UnimodalProjection, build_model, fuse_batch
from mmfuse.systems.rl import check_trainable
from tests.conftest import TINY, jsonl_overrides

OTHER = {"text": "image", "image": "text"}




def tiny_model(modality: str, *extra: str) -> Any:
    torch.manual_seed(0)
    cfg = load_config(TINY, [f"model.modalities=[{modality}]", *extra])
    return build_model(cfg, num_answers=5, text_vocab_size=50).eval()


def batch(seed: int, questions: int = 5, images: int = 2) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(questions, 7, dtype=torch.long)
    mask[1, 4:] = 0
    return {"text": {"input_ids": torch.randint(5, 50, (questions, 7), generator=g), "attention_mask": mask},
            "image": torch.randint(0, 256, (images, 3, 32, 32), dtype=torch.uint8, generator=g),
            "image_index": torch.tensor([0, 1, 1, 0, 1][:questions])}


def test_the_config_and_the_model_agree_on_the_modalities() -> None:
    assert MODALITIES == CONFIG_MODALITIES == ("text", "image")
    assert list(load_config(TINY).model.modalities) == ["text", "image"]
    # a checkpoint written before model.modalities existed keeps both encoders
    stored = to_container(load_config(TINY))
    del stored["model"]["modalities"]
    assert complete_config(stored)["model"]["modalities"] == ["text", "image"]


@pytest.mark.parametrize("modality", MODALITIES)
def test_unimodal_model_builds_one_encoder_and_bypasses_the_fusion(modality: str, caplog: Any) -> None:
    with caplog.at_level(logging.WARNING, logger="mmfuse.model"):
        model = tiny_model(modality)
    assert "the fusion is bypassed (model.fusion.name=cross_attention is not built)" in caplog.text
    assert model.modalities == (modality,) and list(model.encoders) == [modality]
    assert not any(n.startswith(f"encoders.{OTHER[modality]}.") for n, _ in model.named_parameters())
    assert isinstance(model.fusion, UnimodalProjection)
    both = build_model(load_config(TINY), num_answers=5, text_vocab_size=50)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # exactly: the full model less the other encoder and the fusion, plus Linear(32->32) and LayerNorm(32)
    assert count(model) == count(both) - count(both.encoders[OTHER[modality]]) - count(both.fusion) + 32 * 33 + 64
    assert model.image_size == (32, 32) and model.mean.tolist() == [0.5] * 3 and not model.is_video
    out = model(batch(0))
    tokens = {"text": 7, "image": 16}[modality]  # 7 question tokens; a 32 px image in 8 px patches: 16
    assert out["vqa"].shape == (5, 5) and out["fusion"].pooled.shape == (5, 32)
    assert out["fusion"].tokens.shape == (5, tokens, 32) and out["fusion"].mask.shape == (5, tokens)
    assert OTHER[modality] not in out and out[modality].pooled.shape[-1] == 32


def test_text_only_output_ignores_images_and_image_only_ignores_text() -> None:
    text_model, image_model = tiny_model("text"), tiny_model("image")
    a, b = batch(0), batch(1)
    with torch.no_grad():
        same_text = {**b, "text": a["text"]}
        torch.testing.assert_close(text_model(a)["vqa"], text_model(same_text)["vqa"], rtol=0, atol=0)
        no_images = {k: v for k, v in a.items() if k not in ("image", "image_index")}
        torch.testing.assert_close(text_model(a)["vqa"], text_model(no_images)["vqa"], rtol=0, atol=0)
        assert not torch.allclose(text_model(a)["vqa"], text_model(b)["vqa"])  # it does read the question

        same_images = {**a, "text": b["text"]}
        torch.testing.assert_close(image_model(a)["vqa"], image_model(same_images)["vqa"], rtol=0, atol=0)
        no_text = {k: v for k, v in a.items() if k != "text"}
        torch.testing.assert_close(image_model(a)["vqa"], image_model(no_text)["vqa"], rtol=0, atol=0)
        assert not torch.allclose(image_model(a)["vqa"], image_model(b)["vqa"])  # it does read the image
        # each image projected once, then gathered: equal to encoding it per question
        per_question = {"text": a["text"], "image": a["image"][a["image_index"]]}
        torch.testing.assert_close(image_model(a)["vqa"], image_model(per_question)["vqa"], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(fuse_batch(image_model, a).pooled, image_model(a)["fusion"].pooled)
    with pytest.raises(RuntimeError, match=r"no image encoder \(model.modalities=\[text\]\)"):
        text_model.encode_image(a["image"])


def test_unimodal_projection_on_hand_checked_numbers() -> None:
    proj = UnimodalProjection("image", 2, 2)
    with torch.no_grad():
        proj.proj[0].weight.copy_(torch.eye(2))
        proj.proj[0].bias.zero_()
    # per row: Linear = identity, GELU(1) = 0.8413, GELU(0) = 0, LayerNorm of two values: (+1, -1)
    pooled = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    tokens = torch.tensor([[[0.0, 1.0], [5.0, 5.0]], [[1.0, 0.0], [0.0, 1.0]]])
    mask = torch.tensor([[True, False], [True, True]])
    out = proj({"image": EncoderOutput(tokens, mask, pooled)}, index={"image": torch.tensor([1, 0, 1])})
    torch.testing.assert_close(out.pooled, torch.tensor([[-1.0, 1.0], [1.0, -1.0], [-1.0, 1.0]]), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.tokens[1], torch.tensor([[-1.0, 1.0], [0.0, 0.0]]), atol=1e-4, rtol=0)
    assert out.mask.tolist() == [[True, True], [True, False], [True, True]] and out.attention is None
    with pytest.raises(KeyError, match=r"missing modality\(ies\) \['image'\]"):
        proj({"text": EncoderOutput(tokens, mask, pooled)})


@pytest.mark.parametrize("value", ["[audio]", "[]", "[text,text]", "[text,image,audio]"])
def test_bad_modalities_are_one_line_config_errors(value: str) -> None:
    with pytest.raises(ConfigError, match=r"'model.modalities' is .*; expected a non-empty list of distinct "
                                          r"modalities from: text, image") as e:
        load_config(TINY, [f"model.modalities={value}"])
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=r"model.modalities is \['image', 'image'\]; .*from: text, image"):
        build_model({**to_container(load_config(TINY))["model"], "modalities": ["image", "image"]}, num_answers=2)


@pytest.mark.parametrize("modality", MODALITIES)
def test_itm_needs_both_modalities(modality: str) -> None:
    with pytest.raises(ConfigError, match=rf"'tasks.active' has 'itm', which needs both modalities, but "
                                          rf"'model.modalities' is \[{modality}\]") as e:
        load_config(TINY, [f"model.modalities=[{modality}]", "tasks.active=[vqa,itm]"])
    assert "\n" not in str(e.value)
    load_config(TINY, ["tasks.active=[vqa,itm]"])  # both modalities: fine


def test_rl_may_train_only_the_encoder_the_model_has() -> None:
    check_trainable(["generator", "fusion", "text"], ("text",))
    with pytest.raises(ConfigError, match=r"'rl.train' has 'image', but the model of x has no image encoder "
                                          r"\(model.modalities=\['text'\]\); valid parts: generator, fusion, text"):
        check_trainable(["generator", "image"], ("text",), " of x")


def test_video_with_one_modality() -> None:
    video = ["model.video.enabled=true", "data.video.num_frames=3"]
    image_model = tiny_model("image", *video)
    assert isinstance(image_model.encoders["image"], VideoEncoder) and image_model.is_video
    clips = {"text": batch(0)["text"], "video": torch.randint(0, 256, (2, 3, 3, 32, 32), dtype=torch.uint8),
             "video_mask": torch.tensor([[True, True, True], [True, True, False]]),
             "image_index": torch.tensor([0, 1, 1, 0, 1])}
    with torch.no_grad():
        out = image_model(clips)
    assert out["vqa"].shape == (5, 5) and out["fusion"].tokens.shape == (5, 3, 32)  # one token per frame
    text_model = tiny_model("text", *video)  # no clip length needed: no video encoder is built
    assert text_model.is_video and text_model.image_size == (32, 32) and list(text_model.encoders) == ["text"]
    with torch.no_grad():
        torch.testing.assert_close(text_model(clips)["vqa"], text_model(batch(0))["vqa"], rtol=0, atol=0)


@pytest.mark.parametrize("modality,tasks", [("text", "[vqa,answer_generation]"), ("image", "[vqa]")])
def test_unimodal_run_trains_checkpoints_and_evaluates(jsonl_data: dict, tmp_path: Path, modality: str,
                                                       tasks: str) -> None:
    cfg = mmfuse.load_config(TINY, jsonl_overrides(jsonl_data, tmp_path / "run") + [
        "trainer.logger=none", f"model.modalities=[{modality}]", f"tasks.active={tasks}"])
    result = mmfuse.train(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["test/acc"] <= 1.0
    ckpt = torch.load(result["best_checkpoint"], weights_only=True)  # plain data only
    weights = {k: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    assert ckpt["hyper_parameters"]["cfg"]["model"]["modalities"] == [modality]
    assert not any(k.startswith(f"model.encoders.{OTHER[modality]}.") for k in weights)
    assert any(k.startswith(f"model.encoders.{modality}.") for k in weights)
    assert metrics["parameters"]["total"] == sum(v.numel() for v in weights.values())
    assert metrics["parameters"]["fusion"] == 32 * 33 + 64  # the bypass projection
    ev = mmfuse.evaluate(mmfuse.load_config(TINY, jsonl_overrides(jsonl_data, tmp_path / "run") + [
        "trainer.logger=none", f"eval.checkpoint={result['best_checkpoint']}", f"eval.output={tmp_path / 'ev'}"]))
    assert ev["accuracy"]["overall"] == metrics["test_accuracy"]["overall"]
    assert ev["lightning"]["test/acc"] == pytest.approx(metrics["test"]["test/acc"], abs=1e-9)
    if modality != "text":
        return
    # the RL stage fine-tunes a unimodal generator; rl.train may not name the encoder it lacks
    rl = jsonl_overrides(jsonl_data, tmp_path / "rl") + [
        "trainer.logger=none", "stage=rl", f"rl.init_from={result['best_checkpoint']}", "rl.ppo_epochs=1",
        "rl.minibatches=1", "checkpoint.monitor=val/sampled/acc"]
    with pytest.raises(ConfigError, match=r"'rl.train' has 'image', but the model of the rl.init_from checkpoint"):
        mmfuse.train(mmfuse.load_config(TINY, [*rl, "rl.train=[generator,image]"]))
    tuned = mmfuse.train(mmfuse.load_config(TINY, [*rl, "rl.train=[generator,text]"]))
    assert 0.0 <= tuned["rl"]["test_sampled_accuracy"] <= 1.0
    assert tuned["parameters"]["total"] == metrics["parameters"]["total"]  # the policy; no image encoder


def test_text_only_run_on_video_data(video_data: dict, tmp_path: Path) -> None:
    """A question-only baseline on video data: the data still agree with model.video.enabled, no clip is encoded."""
    cfg = mmfuse.load_config(["configs/data/video_qa.yaml", TINY], [
        f"data.root={video_data['train'].parent}", f"run_dir={tmp_path / 'run'}", "trainer.logger=none",
        "data.video.num_frames=4", "model.image.img_size=32", "model.modalities=[text]"])
    result = mmfuse.train(cfg)
    assert 0.0 <= result["test"]["test/acc"] <= 1.0
    keys = torch.load(result["best_checkpoint"], weights_only=True)["state_dict"]
    assert not any(k.startswith("model.encoders.image.") for k in keys)
