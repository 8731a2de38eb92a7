"""Video QA end to end, as a user runs it: tools/make_video_qa.py, tools/train.py, tools/evaluate.py; every
temporal pooling trains; data and model must agree on the media; the RL stage's fused features on video."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import mmfuse
from mmfuse.config import ConfigError
from mmfuse.encoders import list_temporal_poolings
from tests.conftest import TINY, make_video_dataset, run_tool


def overrides(files: dict[str, Path], run_dir: Path, *extra: str) -> list[str]:
    return [f"data.root={files['train'].parent}", f"run_dir={run_dir}", "trainer.logger=none",
            "data.video.num_frames=4", "model.image.img_size=32", *extra]


def test_make_train_evaluate_video_qa_from_the_command_line(tmp_path: Path) -> None:
    data = tmp_path / "vq"
    out = run_tool("tools/make_video_qa.py", "--out", str(data), "--train", "10", "--val", "3", "--test", "4")
    assert "train: 10 videos" in out and (data / "videos" / "train_00009.mp4").is_file()
    run = tmp_path / "run"
    out = run_tool("tools/train.py", "--config", "configs/experiments/video_qa.yaml", "--config", str(TINY),
                   f"data.root={data}", f"run_dir={run}", "trainer.logger=csv", "model.image.img_size=32")
    assert "official VQA accuracy" in out and "direction" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["padded_short_videos"] == {} and metrics["num_questions"]["test"] > 0
    ev_out = run_tool("tools/evaluate.py", "--checkpoint", metrics["best_checkpoint"])
    ev = json.loads((run / "eval_test" / "metrics.json").read_text())
    assert ev["accuracy"]["overall"] == metrics["test_accuracy"]["overall"] and "overall" in ev_out
    assert set(ev["accuracy"]["perQuestionType"]) <= {"direction", "order", "count", "colour_change", "colour", "shape"}


@pytest.mark.parametrize("pooling", list_temporal_poolings())
def test_every_temporal_pooling_trains_and_checkpoints(video_data: dict, tmp_path: Path, pooling: str) -> None:
    output = "patches" if pooling == "attention" else "frames"
    cfg = mmfuse.load_config(["configs/data/video_qa.yaml", TINY], overrides(
        video_data, tmp_path / pooling, f"model.video.pooling={pooling}", f"model.video.output={output}"))
    result = mmfuse.train(cfg)
    assert 0.0 <= result["test"]["test/acc"] <= 1.0
    ckpt = torch.load(result["best_checkpoint"], weights_only=True)
    keys = ckpt["state_dict"].keys()
    assert any(k.startswith("model.encoders.image.frame_encoder.vit.") for k in keys)
    assert any(k.startswith("model.encoders.image.temporal.") for k in keys) == (pooling != "mean")


def test_short_videos_are_padded_and_counted_in_metrics(tmp_path: Path) -> None:
    files = make_video_dataset(tmp_path / "v", (6, 2, 2))
    cfg = mmfuse.load_config(["configs/data/video_qa.yaml", TINY], overrides(
        files, tmp_path / "run", "data.video.num_frames=20", "trainer.max_epochs=1"))
    result = mmfuse.train(cfg)
    assert result["padded_short_videos"] == {"train": 6, "val": 2, "test": 2}  # 16-frame videos, 20-frame clips


def test_data_and_model_must_agree_on_the_media(video_data: dict, jsonl_data: dict, tmp_path: Path) -> None:
    cfg = mmfuse.load_config(["configs/data/video_qa.yaml", TINY], overrides(video_data, tmp_path / "a",
                                                                             "model.video.enabled=false"))
    with pytest.raises(ConfigError, match="data is about videos but model.video.enabled is false; set "
                                          "model.video.enabled=true"):
        mmfuse.train(cfg)
    root = jsonl_data["train"].parent
    cfg = mmfuse.load_config(TINY, ["data.source=jsonl", f"data.root={root}", f"data.train={jsonl_data['train']}",
                                    f"data.val={jsonl_data['val']}", f"data.test={jsonl_data['test']}",
                                    f"run_dir={tmp_path / 'b'}", "model.video.enabled=true"])
    with pytest.raises(ConfigError, match="data is about images but model.video.enabled is true"):
        mmfuse.train(cfg)


def test_generator_and_rl_fusion_on_video_batches(video_data: dict, tmp_path: Path) -> None:
    """The answer generator trains on video, and the RL stage's fused features (fuse_batch) read clips."""
    from mmfuse.runner import load_system
    from mmfuse.systems.rl import fuse_batch

    cfg = mmfuse.load_config(["configs/data/video_qa.yaml", TINY], overrides(
        video_data, tmp_path / "gen", "tasks.active=[vqa,answer_generation]"))
    result = mmfuse.train(cfg)
    assert "answer_generation" in result["test_tasks"]
    system = load_system(result["best_checkpoint"]).eval()
    dm = mmfuse.build_datamodule(cfg)
    dm.prepare()
    dm.img_size = system.model.image_size
    batch = next(iter(dm.loader("test")))
    with torch.no_grad():
        fused = fuse_batch(system.model, batch)
        assert torch.equal(fused.pooled, system.model(batch)["fusion"].pooled)
        with pytest.raises(KeyError, match="this model encodes videos"):
            system.model({**{k: v for k, v in batch.items() if k != "video"}, "image": batch["video"][:, 0]})


def test_direction_probe_from_the_command_line(tmp_path: Path) -> None:
    """README "Video QA on the procedural benchmark": the direction-only probe with flattened frames."""
    data = tmp_path / "vq_direction"
    out = run_tool("tools/make_video_qa.py", "--types", "direction", "--out", str(data), "--train", "12", "--val", "8",
                   "--test", "8")
    assert "(direction " in out and "order" not in out
    types = {json.loads(line)["question_type"] for s in ("train", "val", "test")
             for line in (data / f"{s}.jsonl").read_text().splitlines()}
    assert types == {"direction"}
    run = tmp_path / "run"
    run_tool("tools/train.py", "--config", "configs/experiments/video_qa.yaml", "--config", str(TINY),
             f"data.root={data}", f"run_dir={run}", "model.image.img_size=32", "model.image.pool=flatten")
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["test_accuracy"]["perQuestionType"]) == {"direction"}
    ckpt = torch.load(metrics["best_checkpoint"], weights_only=True)
    assert "model.encoders.image.frame_encoder.flatten.weight" in ckpt["state_dict"]
