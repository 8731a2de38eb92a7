"""The prepared, streamed path: prepare_data writes LitData chunks once; training streams them (every
question once an epoch, the same pixels as the in-memory path, resumable mid-epoch)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mmfuse
from mmfuse.config import load_config
from mmfuse.errors import DataError
from mmfuse.runner import build_datamodule
from tests.conftest import REPO, TINY, jsonl_overrides, make_jsonl_dataset, run_tool


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("stream")
    files = make_jsonl_dataset(root / "data", n_images=10, fmt="jpg", image_size=(96, 72))
    cfg = load_config(TINY, jsonl_overrides(files, root / "unused"))
    meta = mmfuse.prepare_data(cfg, root / "prepared", num_workers=1)
    return {"root": root, "files": files, "out": root / "prepared", "meta": meta}


def streamed_dm(out: Path, run: Path, *extra: str):
    cfg = load_config(TINY, ["data.source=prepared", f"data.root={out}", f"run_dir={run}", "data.batch_size=8",
                             *extra])
    dm = build_datamodule(cfg)
    dm.prepare()
    dm.img_size = (32, 32)
    return dm


def test_prepare_writes_every_split_once_and_reuses_it(prepared: dict) -> None:
    meta, out = prepared["meta"], prepared["out"]
    assert meta["img_size"] == [32, 32] and set(meta["splits"]) == {"train", "val", "test"}
    assert meta["splits"]["train"] == {"questions": 40, "images": 10, "skipped_questions": 0, "skipped_images": 0}
    assert (out / "train" / "index.json").is_file() and (out / "train.jsonl").is_file()
    again = mmfuse.prepare_data(load_config(TINY, jsonl_overrides(prepared["files"], out / "x")), out)
    assert again["reused"] is True
    with pytest.raises(DataError, match="another data config or image size"):
        mmfuse.prepare_data(load_config(TINY, [*jsonl_overrides(prepared["files"], out / "x"),
                                               "model.image.img_size=48"]), out)


def test_streamed_batches_hold_every_question_once_with_the_in_memory_pixels(prepared: dict, tmp_path: Path) -> None:
    dm = streamed_dm(prepared["out"], tmp_path / "s")
    dm.setup("fit")
    loader = dm.train_dataloader()  # Lightning iterates one loader every epoch
    epochs = [list(loader) for _ in range(2)]
    ids = [[q for b in batches for q in b["question_id"]] for batches in epochs]
    train_ids = sorted(r.question_id for r in dm.records["train"])
    assert sorted(ids[0]) == sorted(ids[1]) == train_ids  # each question exactly once an epoch
    assert ids[0] != ids[1]  # reshuffled
    cached = build_datamodule(load_config(TINY, [*jsonl_overrides(prepared["files"], tmp_path / "c")]))
    cached.prepare()
    cached.img_size = (32, 32)
    cached.setup("fit")
    ds = cached.datasets["train"]
    row = {r.question_id: ds.image_rows[i] for i, r in enumerate(ds.records)}
    for b in epochs[0]:
        assert b["image"].dtype == torch.uint8 and b["text"]["input_ids"].shape[0] == len(b["question_id"])
        for j, q in enumerate(b["question_id"]):
            assert torch.equal(b["image"][b["image_index"][j]], ds.images[row[q]])  # pixel for pixel


def test_a_resumed_loader_continues_mid_epoch(prepared: dict, tmp_path: Path) -> None:
    dm = streamed_dm(prepared["out"], tmp_path / "r", "data.batch_size=4")
    dm.setup("fit")
    whole = [b["question_id"] for b in dm.train_dataloader()]
    first = dm.train_dataloader()
    it = iter(first)
    head = [next(it)["question_id"] for _ in range(2)]
    state = first.state_dict()
    resumed = dm.train_dataloader()
    resumed.load_state_dict(state)
    tail = [b["question_id"] for b in resumed]
    assert head == whole[:2] and tail == whole[2:]  # no image repeated or skipped


def test_training_on_the_stream_and_its_checkpoint_holds_the_loader_state(prepared: dict, tmp_path: Path) -> None:
    cfg = load_config(TINY, ["data.source=prepared", f"data.root={prepared['out']}", f"run_dir={tmp_path / 'run'}",
                             "trainer.logger=none", "trainer.max_epochs=2"])
    result = mmfuse.train(cfg)
    assert result["num_questions"] == {"train": 40, "val": 8, "test": 8}
    assert 0 <= result["test_accuracy"]["overall"] <= 100 and result["skipped_bad_records"] == {}
    ckpt = torch.load(Path(result["run_dir"]) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    (state,) = ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert state["current_epoch"] == 2 and state["dataset"]["shuffle"] is True


def test_wrong_size_and_corrupt_images(prepared: dict, tmp_path: Path) -> None:
    dm = streamed_dm(prepared["out"], tmp_path / "w")
    dm.img_size = (48, 48)
    with pytest.raises(DataError, match=r"prepared at \(32, 32\) px but the model takes \(48, 48\)"):
        dm.setup("fit")
    files = make_jsonl_dataset(tmp_path / "bad", n_images=6, fmt="jpg", image_size=(96, 72))
    path = tmp_path / "bad" / "images" / "train_2.jpg"
    data = path.read_bytes()
    scan = data.index(b"\xff\xda")
    path.write_bytes(data[: scan + (len(data) - scan) // 2])  # corrupt past the header
    qids = [json.loads(x)["question_id"] for x in files["train"].read_text().splitlines() if "train_2.jpg" in x]
    with pytest.raises(DataError, match=rf"{path} \(question_id {qids[0]}\)"):
        mmfuse.prepare_data(load_config(TINY, jsonl_overrides(files, tmp_path / "u")), tmp_path / "p1", ["train"],
                            num_workers=1)
    skip = load_config(TINY, [*jsonl_overrides(files, tmp_path / "u"), "data.skip_bad_records=true"])
    meta = mmfuse.prepare_data(skip, tmp_path / "p2", num_workers=1)
    assert meta["splits"]["train"]["skipped_questions"] == len(qids) and meta["splits"]["train"]["skipped_images"] == 1
    dm = streamed_dm(tmp_path / "p2", tmp_path / "s2")
    dm.setup("fit")
    assert dm.skipped == {"train": len(qids)} and not set(qids) & {r.question_id for r in dm.records["train"]}


def test_prepare_data_tool(prepared: dict, tmp_path: Path) -> None:
    files = prepared["files"]
    out = run_tool("tools/prepare_data.py", "--config", str(TINY), "--output", str(prepared["out"]),
                   *jsonl_overrides(files, tmp_path / "u"))
    assert f"reused {prepared['out']} at 32x32 px" in out and "train: 40 questions on 10 images" in out
    assert f"data.source=prepared data.root={prepared['out']}" in out
    proc = subprocess.run([sys.executable, "tools/prepare_data.py", "--config", str(TINY), "--output",
                           str(tmp_path / "x"), "data.source=prepared"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: data.source=prepared is already prepared; " \
        "give the original source to prepare_data"
