"""End to end, as a user runs it: tools/train.py then tools/evaluate.py on a tiny generated dataset."""

import json
from pathlib import Path

import pytest

import mmfuse
from mmfuse.data.sources import DataError
from tests.conftest import TINY, jsonl_overrides, run_tool


def test_train_then_evaluate_reproduces_test_accuracy(jsonl_data: dict, tmp_path: Path) -> None:
    run = tmp_path / "run"
    out = run_tool("tools/train.py", "--config", "configs/experiments/easy_vqa.yaml", "--config", str(TINY),
                   *jsonl_overrides(jsonl_data, run), "trainer.max_epochs=2", "trainer.logger=csv")
    assert "official VQA accuracy" in out and "95% interval" in out
    metrics = json.loads((run / "metrics.json").read_text())
    acc = metrics["test"]["test/acc"]
    assert 0.0 <= acc <= 1.0 and metrics["num_questions"]["test"] == 12
    assert metrics["train_samples_per_s"] > 0 and metrics["wall_seconds"] > 0
    assert (run / "config.yaml").is_file() and (run / "answers.json").is_file()
    assert (run / "logs" / "metrics.csv").is_file()
    best = Path(metrics["best_checkpoint"])
    assert best.is_file()
    from_train = (run / "eval_test" / "predictions.json").read_text()
    out = run_tool("tools/evaluate.py", "--checkpoint", str(best), "--split", "test")
    assert "overall" in out and "yes/no" in out and "LEAKAGE" not in out
    ev = json.loads((run / "eval_test" / "metrics.json").read_text())
    assert ev["lightning"]["test/acc"] == pytest.approx(acc, abs=1e-9)
    assert ev["accuracy"]["overall"] == round(100 * acc, 2) == metrics["test_accuracy"]["overall"]
    assert ev["num_questions"] == 12 and ev["checkpoint"] == str(best) and ev["split"] == "test"
    assert ev["num_questions_in_split"] == 12 and ev["evaluation_limited_by"] == {}  # nothing cut short
    assert "questions of the split" not in out
    assert ev["config_hash"] == metrics["config_hash"] and len(ev["config_hash"]) == 64
    assert ev["leakage"] == {"checked": True, "shared_question_ids": 0, "shared_image_question_pairs": 0,
                             "image_identity": "content", "examples": []}
    assert "soft VQA targets" in ev["training_targets"]
    preds = json.loads((run / "eval_test" / "predictions.json").read_text())
    assert preds == json.loads(from_train)  # evaluate.py reproduces the test stage of training
    assert sorted(p["question_id"] for p in preds) == list(range(60, 72))
    assert all(set(p) == {"question_id", "answer"} for p in preds)
    lo, hi = ev["accuracy"]["overall_ci95"]
    assert lo <= ev["accuracy"]["overall"] <= hi

    # scoring the training questions as if they were a test set: loud warning + counts on record
    out = run_tool("tools/evaluate.py", "--checkpoint", str(best), "--output", str(tmp_path / "leak"),
                   f"data.test={jsonl_data['train']}")
    assert "WARNING: LEAKAGE: the test split shares 48 question id(s) and 48 identical" in out
    leak = json.loads((tmp_path / "leak" / "metrics.json").read_text())["leakage"]
    assert (leak["shared_question_ids"], leak["shared_image_question_pairs"]) == (48, 48)


def test_resume_from_checkpoint(jsonl_data: dict, tmp_path: Path) -> None:
    cfg = mmfuse.load_config(TINY, jsonl_overrides(jsonl_data, tmp_path / "a") + ["trainer.logger=none"])
    first = mmfuse.train(cfg)
    last = Path(first["run_dir"]) / "checkpoints" / "last.ckpt"
    cfg2 = mmfuse.load_config(TINY, jsonl_overrides(jsonl_data, tmp_path / "b") +
                              ["trainer.logger=none", "trainer.max_epochs=2", f"resume={last}"])
    second = mmfuse.train(cfg2)
    import torch
    assert torch.load(second["best_checkpoint"], weights_only=True)["epoch"] >= 0
    resumed = torch.load(Path(second["run_dir"]) / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["epoch"] == 1
    # the resumed run keeps the checkpoint's tokenizer and vocabularies (a retrained WordPiece
    # tokenizer may number tied tokens differently, scrambling the trained embeddings)
    start = torch.load(last, weights_only=True)
    assert resumed["mmfuse_tokenizer"] == start["mmfuse_tokenizer"]
    for key in ("answers", "answer_words"):
        assert resumed["hyper_parameters"][key] == start["hyper_parameters"][key]


def test_missing_image_fails_or_is_skipped_and_counted(jsonl_data: dict, tmp_path: Path) -> None:
    victim = jsonl_data["train"].parent / "images" / "train_0.png"
    victim.unlink()
    cfg = mmfuse.load_config(TINY, jsonl_overrides(jsonl_data, tmp_path / "a") + ["trainer.logger=none"])
    with pytest.raises(DataError, match=r"train_0\.png.*question_id"):
        mmfuse.train(cfg)
    cfg = mmfuse.load_config(TINY, jsonl_overrides(jsonl_data, tmp_path / "b") +
                             ["trainer.logger=none", "data.skip_bad_records=true"])
    result = mmfuse.train(cfg)
    assert result["skipped_bad_records"] == {"train": 4}  # the 4 questions about that image
    assert result["num_questions"]["train"] == 12 * 4 - 4


def test_weighted_sum_weights_logged_every_epoch_to_tensorboard(jsonl_data: dict, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = mmfuse.load_config(TINY, jsonl_overrides(jsonl_data, tmp_path / "run") +
                             ["trainer.logger=tensorboard", "model.fusion.name=weighted_sum", "trainer.max_epochs=2"])
    mmfuse.train(cfg)
    events = list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file written"
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert "val/acc" in tags and "train/loss_step" in tags
    w_img, w_txt = acc.Scalars("fusion/weight/image"), acc.Scalars("fusion/weight/text")
    assert len(w_img) == 2  # one value per epoch
    for a, b in zip(w_img, w_txt):
        assert abs(a.value + b.value - 1.0) < 1e-5  # softmax-normalised


def test_last_checkpoint_is_the_last_epoch_even_when_the_best_is_earlier(jsonl_data: dict, tmp_path: Path) -> None:
    # monitoring `epoch` with mode=min makes epoch 0 the best forever; Lightning 2.6's own save_last
    # would then leave last.ckpt at epoch 0
    import torch

    cfg = mmfuse.load_config(TINY, jsonl_overrides(jsonl_data, tmp_path / "run") + [
        "trainer.logger=none", "trainer.max_epochs=3", "checkpoint.monitor=epoch", "checkpoint.mode=min"])
    result = mmfuse.train(cfg)
    best = torch.load(result["best_checkpoint"], map_location="cpu", weights_only=True)
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert best["epoch"] == 0 and last["epoch"] == 2
    assert last["global_step"] == 3 * best["global_step"]
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert names == [Path(result["best_checkpoint"]).name, "last.ckpt"]


def test_resuming_into_the_same_run_keeps_the_earlier_log_rows(jsonl_data: dict, tmp_path: Path) -> None:
    import csv

    run = tmp_path / "run"
    base = jsonl_overrides(jsonl_data, run) + ["trainer.logger=csv"]
    mmfuse.train(mmfuse.load_config(TINY, base + ["trainer.max_epochs=2"]))

    def val_epochs() -> list[int]:
        with (run / "logs" / "metrics.csv").open(newline="") as f:
            return [int(float(r["epoch"])) for r in csv.DictReader(f) if r.get("val/acc")]

    assert val_epochs() == [0, 1]
    mmfuse.train(mmfuse.load_config(TINY, base + ["trainer.max_epochs=3",
                                                  f"resume={run / 'checkpoints' / 'last.ckpt'}"]))
    assert val_epochs() == [0, 1, 2]  # the history before the resume is kept, nothing repeated


def test_max_minutes_stops_mid_epoch_then_validates_checkpoints_and_tests(jsonl_data: dict, tmp_path: Path) -> None:
    # a budget of ~6 ms: Lightning's Timer stops after the first batch of epoch 0 (4 batches an epoch here)
    import torch

    run = tmp_path / "run"
    cfg = mmfuse.load_config(TINY, jsonl_overrides(jsonl_data, run) + [
        "trainer.logger=none", "trainer.max_epochs=3", "trainer.max_minutes=0.0001", "data.batch_size=12"])
    result = mmfuse.train(cfg)
    best = torch.load(result["best_checkpoint"], map_location="cpu", weights_only=True)
    assert best["epoch"] == 0 and best["global_step"] == 1
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["test/acc"] <= 1.0
    with pytest.raises(ValueError, match="trainer.max_minutes"):
        mmfuse.load_config(TINY, ["trainer.max_minutes=0"])


def test_a_class_token_pool_without_attention_layers_is_refused_before_training(jsonl_data: dict,
                                                                                 tmp_path: Path) -> None:
    # depth 0: the class token never attends to a patch, so pool=cls would give every image the same vector
    from mmfuse.errors import ConfigError

    cfg = mmfuse.load_config(TINY, jsonl_overrides(jsonl_data, tmp_path / "run") + ["model.image.depth=0"])
    with pytest.raises(ConfigError, match=r"'model.image.pool' is 'cls' with model.image.depth=0.*mean, flatten"):
        mmfuse.train(cfg)
    assert not (tmp_path / "run").exists()
    ok = mmfuse.load_config(TINY, jsonl_overrides(jsonl_data, tmp_path / "ok") + [
        "model.image.depth=0", "model.image.pool=mean", "trainer.logger=none"])
    assert mmfuse.train(ok)["best_checkpoint"]
