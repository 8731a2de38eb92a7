"""The lazy image path (``data.cache_images=false``): start-up reads headers only, batches decode their own
images at the model's size (JPEGs at reduced scale), a file corrupt past its header is found when decoded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

import mmfuse
import mmfuse.data.images as images_mod
from mmfuse.config import load_config
from mmfuse.data.images import check_image, check_images, load_image
from mmfuse.data.schema import QARecord
from mmfuse.data.transforms import resize_uint8
from mmfuse.errors import DataError
from mmfuse.runner import build_datamodule
from tests.conftest import TINY, jsonl_overrides, make_jsonl_dataset


def corrupt_past_header(path: Path) -> None:
    """Keep the JPEG's header (it still opens and reports its size) but cut its scan data in half."""
    data = path.read_bytes()
    scan = data.index(b"\xff\xda")  # start of scan: every marker before it is header
    path.write_bytes(data[: scan + (len(data) - scan) // 2])


@pytest.fixture
def jpeg_data(tmp_path: Path) -> dict[str, Path]:
    return make_jsonl_dataset(tmp_path / "data", n_images=8, fmt="jpg", image_size=(96, 72))


def datamodule(files: dict[str, Path], run: Path, *extra: str):
    cfg = load_config(TINY, [*jsonl_overrides(files, run), "data.batch_size=8", *extra])
    dm = build_datamodule(cfg)
    dm.prepare()
    dm.img_size = (32, 32)
    return dm


def test_header_check_reads_no_pixels_and_passes_a_file_corrupt_past_it(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    Image.new("RGB", (64, 48), (200, 10, 10)).save(path, quality=95)
    corrupt_past_header(path)
    assert check_image(str(path)) == (64, 48)
    with pytest.raises(DataError, match=rf"cannot read image {path} \(question_id 7\)"):
        load_image(str(path), 7)
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    recs = [QARecord(1, str(path), "q"), QARecord(2, str(tmp_path / "junk.jpg"), "q"),
            QARecord(3, str(tmp_path / "missing.jpg"), "q")]
    keys, bad = check_images(recs, skip_bad=True)
    assert keys == [str(path)] and [b.question_ids for b in bad] == [(2,), (3,)]
    with pytest.raises(DataError, match="question_id 2"):
        check_images(recs)


def test_jpeg_is_decoded_at_reduced_scale_and_resized(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 8, generator=g), size=(480, 640), mode="bilinear")
    pixels = (smooth[0] * 255).round().to(torch.uint8)
    Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(tmp_path / "photo.jpg", quality=95)
    Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(tmp_path / "photo.png")
    decoded: list[tuple] = []  # the (H, W) the decoder produced, before the exact resize
    real = images_mod.F.interpolate
    monkeypatch.setattr(images_mod.F, "interpolate", lambda x, *a, **kw: decoded.append(tuple(x.shape[-2:]))
                        or real(x, *a, **kw))
    small = load_image(str(tmp_path / "photo.jpg"), size=(112, 112))
    assert small.shape == (3, 112, 112) and small.dtype == torch.uint8
    assert decoded == [(120, 160)]  # 1/4 of 640x480: the smallest JPEG scale still covering 112x112
    full = resize_uint8(load_image(str(tmp_path / "photo.jpg")), (112, 112))
    assert (small.float() - full.float()).abs().mean() < 2.0  # the same picture, to JPEG rounding
    load_image(str(tmp_path / "photo.png"), size=(112, 112))
    assert decoded[-1] == (480, 640)  # PNG has no reduced-scale decode


def test_nothing_is_decoded_at_start_up_and_batches_decode_each_image_once(
        jpeg_data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[str] = []
    real = images_mod._decode
    monkeypatch.setattr(images_mod, "_decode", lambda p, *a: decoded.append(p) or real(p, *a))
    lazy = datamodule(jpeg_data, tmp_path / "lazy", "data.cache_images=false")
    lazy.setup("fit")
    assert decoded == []  # headers only
    batches = list(lazy.train_dataloader())
    assert sorted(decoded) == sorted({r.image for r in lazy.records["train"]})  # each image once this epoch
    assert sum(len(b["question_id"]) for b in batches) == len(lazy.records["train"])
    # the same pixels as the in-memory path, question for question
    cached = datamodule(jpeg_data, tmp_path / "cached")
    cached.setup("fit")
    ds = cached.datasets["train"]
    row = {q: ds.image_rows[i] for i, q in enumerate(r.question_id for r in ds.records)}
    for b in batches:
        for j, q in enumerate(b["question_id"]):
            assert torch.equal(b["image"][b["image_index"][j]], ds.images[row[q]])


def test_corrupt_image_found_when_decoded_stops_or_is_dropped_and_counted(
        jpeg_data: dict[str, Path], tmp_path: Path) -> None:
    bad = jpeg_data["train"].parent / "images" / "train_3.jpg"
    corrupt_past_header(bad)
    lines = [json.loads(x) for x in jpeg_data["train"].read_text().splitlines()]
    bad_ids = sorted(x["question_id"] for x in lines if x["image"].endswith("train_3.jpg"))
    strict = datamodule(jpeg_data, tmp_path / "strict", "data.cache_images=false")
    strict.setup("fit")  # passes: the header is fine
    with pytest.raises(DataError, match=rf"{bad}.*question_id {bad_ids[0]}"):
        list(strict.train_dataloader())
    cfg = load_config(TINY, [*jsonl_overrides(jpeg_data, tmp_path / "run"), "data.cache_images=false",
                             "data.skip_bad_records=true", "data.num_workers=1", "trainer.max_epochs=2",
                             "trainer.logger=none", "data.batch_size=8"])
    result = mmfuse.train(cfg)
    assert result["skipped_bad_records"] == {"train": len(bad_ids)}  # each question once, over two epochs
    assert result["num_questions"]["train"] == len(lines)  # found while decoding: still listed as records


@pytest.mark.parametrize("cache", ["true", "false"])
def test_an_image_error_names_the_jsonl_file_and_line_that_referenced_it(jpeg_data: dict[str, Path],
                                                                         tmp_path: Path, cache: str) -> None:
    lines = jpeg_data["train"].read_text().splitlines()
    victim = json.loads(lines[5])
    corrupt_past_header(jpeg_data["train"].parent / victim["image"])
    first = next(i for i, line in enumerate(lines, 1) if json.loads(line)["image"] == victim["image"])
    qid = json.loads(lines[first - 1])["question_id"]
    dm = datamodule(jpeg_data, tmp_path / "run", f"data.cache_images={cache}", "data.val_fraction=0.0")
    where = rf"\(question_id {qid!r}, from {jpeg_data['train']} line {first}\)"
    with pytest.raises(DataError, match=where):
        dm.setup("fit")
        for _ in dm.train_dataloader():  # the lazy path finds it when the batch decodes it
            pass
