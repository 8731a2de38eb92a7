"""Leakage guard on constructed overlaps: ids, same image and question, a copied image file."""

import shutil
from pathlib import Path

import pytest

from mmfuse.data.schema import QARecord
from mmfuse.evaluation.leakage import LeakageWarning, check_leakage, leakage_line, warn_leakage
from tests.conftest import draw


@pytest.fixture
def images(tmp_path: Path) -> dict[str, str]:
    out = {}
    for name, (shape, color) in {"a": ("circle", "red"), "b": ("rectangle", "blue"), "c": ("circle", "green")}.items():
        out[name] = str(tmp_path / f"{name}.png")
        draw(shape, color).save(out[name])
    shutil.copy(out["a"], tmp_path / "copy_of_a.png")
    out["copy_of_a"] = str(tmp_path / "copy_of_a.png")
    return out


def rec(qid: int, image: str, question: str) -> QARecord:
    return QARecord(question_id=qid, image=image, question=question, answers=("yes",))


def test_disjoint_splits_have_no_overlap(images: dict) -> None:
    train = [rec(0, images["a"], "what color is it?"), rec(1, images["b"], "what shape?")]
    test = [rec(10, images["c"], "what color is it?"), rec(11, images["a"], "is it big?")]
    report = check_leakage(train, test)
    assert (report["shared_question_ids"], report["shared_image_question_pairs"]) == (0, 0)
    assert report["image_identity"] == "content" and not warn_leakage(report, "test")
    assert leakage_line(report, "test") == ""


def test_constructed_overlap_is_counted(images: dict) -> None:
    train = [rec(0, images["a"], "What colour is it?"), rec(1, images["b"], "what shape?"), rec(2, images["c"], "q")]
    test = [
        rec(2, images["b"], "something else"),          # shared question id only
        rec(20, images["a"], "what  colour is it? "),   # same image, same question up to case/spaces
        rec(21, images["copy_of_a"], "what colour is it?"),  # a copied file: same content
        rec(22, images["a"], "what shape?"),            # same question, other image
    ]
    report = check_leakage(train, test)
    assert report["shared_question_ids"] == 1 and report["shared_image_question_pairs"] == 2
    assert [e["question_id"] for e in report["examples"]] == [20, 21, 2]
    with pytest.warns(LeakageWarning, match="1 shared question id.*2 identical"):
        assert warn_leakage(report, "test")
    assert "LEAKAGE" in leakage_line(report, "test")


def test_path_identity_when_contents_are_too_big_to_read(images: dict) -> None:
    train = [rec(0, images["a"], "what colour is it?")]
    test = [rec(20, images["a"], "what colour is it?"), rec(21, images["copy_of_a"], "what colour is it?")]
    report = check_leakage(train, test, max_hash_bytes=0)
    assert report["image_identity"] == "path" and report["shared_image_question_pairs"] == 1
