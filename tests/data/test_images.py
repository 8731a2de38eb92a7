"""Tests for image loading (``mmfuse.data.images``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from mmfuse.data.images import BadImage, DataError, load_image, load_images, resolve_inside
from mmfuse.data.schema import QARecord


def make_png(path: Path, color=(255, 0, 0), size=(5, 4), mode: str = "RGB") -> str:
    img = Image.new("RGB", size, color)
    img.convert(mode).save(path)
    return str(path)


def rec(qid, image: str, image_id: str | None = None) -> QARecord:
    return QARecord(question_id=qid, image=image, question="q?", answers=("yes",), image_id=image_id)


def test_load_image_shape_dtype_and_values(tmp_path):
    t = load_image(make_png(tmp_path / "a.png", color=(10, 20, 30), size=(5, 4)))
    assert t.dtype == torch.uint8 and t.shape == (3, 4, 5)
    assert t[:, 0, 0].tolist() == [10, 20, 30] and t.is_contiguous()


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK"])
def test_load_image_converts_to_rgb(tmp_path, mode):
    ext = "jpg" if mode == "CMYK" else "png"
    t = load_image(make_png(tmp_path / f"a.{ext}", color=(0, 0, 0), mode=mode))
    assert t.shape == (3, 4, 5) and t.dtype == torch.uint8


def test_missing_image_names_file_and_question(tmp_path):
    path = str(tmp_path / "missing.png")
    with pytest.raises(DataError, match="not found") as ei:
        load_image(path, question_id=42)
    assert path in str(ei.value) and "42" in str(ei.value)


@pytest.mark.parametrize("content", [b"", b"not an image at all", "truncated"])
def test_corrupt_image_names_file_and_question(tmp_path, content):
    path = tmp_path / "bad.png"
    if content == "truncated":
        make_png(path, size=(64, 64))
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(DataError, match="cannot read image") as ei:
        load_image(str(path), question_id="q-7")
    assert str(path) in str(ei.value) and "q-7" in str(ei.value)


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path)):
        load_image(str(tmp_path), question_id=1)


def test_load_images_loads_each_image_once(tmp_path, monkeypatch):
    a = make_png(tmp_path / "a.png", color=(1, 1, 1))
    b = make_png(tmp_path / "b.png", color=(2, 2, 2))
    records = [rec(1, a), rec(2, b, "img-b"), rec(3, a), rec(4, b, "img-b")]
    calls = []
    import mmfuse.data.images as images_mod

    real = images_mod.load_image
    monkeypatch.setattr(images_mod, "load_image", lambda p, q=None, **kw: calls.append(p) or real(p, q, **kw))
    images, bad = load_images(records)
    assert bad == [] and sorted(calls) == sorted([a, b])
    assert set(images) == {a, "img-b"}
    assert images["img-b"][0, 0, 0].item() == 2


def test_load_images_raises_on_first_bad_image(tmp_path):
    good = make_png(tmp_path / "a.png")
    missing = str(tmp_path / "gone.png")
    with pytest.raises(DataError) as ei:
        load_images([rec(1, good), rec(2, missing), rec(3, missing)], skip_bad=False)
    assert missing in str(ei.value) and "question_id 2" in str(ei.value)


def test_load_images_skip_bad_collects_and_reports(tmp_path):
    good = make_png(tmp_path / "a.png")
    missing = str(tmp_path / "gone.png")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"garbage")
    records = [rec(1, good), rec(2, missing), rec(3, str(corrupt)), rec(4, missing), rec(5, good)]
    images, bad = load_images(records, skip_bad=True)
    assert list(images) == [good]
    assert [b.path for b in bad] == [missing, str(corrupt)]
    assert all(isinstance(b, BadImage) for b in bad)
    assert bad[0].question_ids == (2, 4) and bad[1].question_ids == (3,)
    assert "not found" in bad[0].reason and "cannot read image" in bad[1].reason
    dropped = {b.image_key for b in bad}
    kept = [r for r in records if r.image_key not in dropped]
    assert [r.question_id for r in kept] == [1, 5]
    assert sum(len(b.question_ids) for b in bad) == 3


def test_one_image_id_for_two_files_is_an_error(tmp_path):
    a = make_png(tmp_path / "a.png")
    b = make_png(tmp_path / "b.png")
    with pytest.raises(DataError, match="names two files"):
        load_images([rec(1, a, "same"), rec(2, b, "same")])


def test_resolve_inside_is_exported(tmp_path):
    make_png(tmp_path / "a.png")
    assert resolve_inside(str(tmp_path), "a.png").endswith("a.png")
    with pytest.raises(DataError, match="outside the data root"):
        resolve_inside(str(tmp_path), "../a.png")


def test_resolve_inside_allows_inner_symlink_and_dotdot(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"x")
    os.symlink(tmp_path / "a" / "x.png", tmp_path / "inner.png")
    assert resolve_inside(str(tmp_path), "inner.png") == os.path.realpath(tmp_path / "a" / "x.png")
    assert resolve_inside(str(tmp_path), "a/../a/x.png") == os.path.realpath(tmp_path / "a" / "x.png")
    # a sibling directory whose name merely starts with the root's name is outside
    (tmp_path.parent / (tmp_path.name + "-evil")).mkdir(exist_ok=True)
    with pytest.raises(DataError):
        resolve_inside(str(tmp_path), f"../{tmp_path.name}-evil/x.png")
