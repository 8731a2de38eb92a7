"""Tests for the data sources (jsonl, vqav2, easy_vqa) and the source registry."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mmfuse.data.schema import QARecord
from mmfuse.data.sources import DataError, list_sources, load_records, register_source
from mmfuse.data.sources.base import SOURCES


def write_jsonl(path: Path, rows: list) -> Path:
    """Write rows (dicts are JSON-encoded, strings written verbatim) one per line."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def row(qid, image="img/a.png", **kw) -> dict:
    return {"question_id": qid, "image": image, "question": "what?", "answers": ["yes"], **kw}


# --------------------------------------------------------------------- registry


def test_registry_lists_builtin_sources():
    assert {"easy_vqa", "jsonl", "vqav2"} <= set(list_sources())


def test_unknown_source_lists_known_ones():
    with pytest.raises(KeyError, match="jsonl"):
        load_records("jsonll", "train", None, None)


def test_register_custom_source():
    @register_source("_test_dummy")
    def dummy(split, spec, root):
        return [QARecord(question_id=1, image="/x.png", question=spec)]

    try:
        assert load_records("_test_dummy", "train", "hi", None)[0].question == "hi"
    finally:
        SOURCES._items.pop("_test_dummy")


# ------------------------------------------------------------------------ jsonl


def test_jsonl_round_trip(tmp_path):
    (tmp_path / "img").mkdir()
    f = write_jsonl(
        tmp_path / "train.jsonl",
        [
            row(1, answers=["red", "red", "blue"], answer_type="other", question_type="what color"),
            "",
            "   ",
            row("q-2", image="img/b.png", answers=[], image_id="shared"),
            row(3, image=str(tmp_path / "img" / "a.png"), image_id=7),
        ],
    )
    recs = load_records("jsonl", "train", str(f), str(tmp_path))
    assert [r.question_id for r in recs] == [1, "q-2", 3]
    assert recs[0].answers == ("red", "red", "blue")
    assert recs[0].answer_type == "other" and recs[0].question_type == "what color"
    assert recs[0].image == os.path.realpath(tmp_path / "img" / "a.png")
    assert os.path.isabs(recs[1].image) and recs[1].answers == ()
    assert recs[1].image_key == "shared" and recs[2].image_key == "7"
    assert recs[0].image_key == recs[0].image  # defaults to the resolved path


def test_jsonl_spec_relative_to_root_and_default_root(tmp_path):
    write_jsonl(tmp_path / "val.jsonl", [row(1)])
    assert load_records("jsonl", "val", "val.jsonl", str(tmp_path))[0].question_id == 1
    # root None: images resolve against the file's own directory
    rec = load_records("jsonl", "val", str(tmp_path / "val.jsonl"), None)[0]
    assert rec.image == os.path.realpath(tmp_path / "img" / "a.png")


@pytest.mark.parametrize(
    "bad_line, expected",
    [
        ('{"question_id": 1, "image": "a.png",', "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ({"question_id": 1, "image": "a.png", "question": "q"}, "missing required field.*answers"),
        ({"image": "a.png", "question": "q", "answers": []}, "missing required field.*question_id"),
        (row(1, answers="yes"), "'answers' must be a list of strings"),
        (row(1, answers=["yes", 3]), "'answers' must be a list of strings"),
        ({**row(1), "question": 5}, "'question' must be a string"),
        (row(1.5), "'question_id' must be an int or a string"),
        (row(True), "'question_id' must be an int or a string"),
        (row(1, answer_type=3), "'answer_type' must be a string"),
    ],
)
def test_jsonl_errors_name_file_and_line(tmp_path, bad_line, expected):
    f = write_jsonl(tmp_path / "d.jsonl", [row(0), "", bad_line])
    with pytest.raises(DataError, match=expected) as ei:
        load_records("jsonl", "train", str(f), str(tmp_path))
    assert str(f) in str(ei.value) and "line 3" in str(ei.value)


@pytest.mark.parametrize("first, second", [(7, 7), ("a", "a"), (7, "7")])
def test_jsonl_duplicate_id_names_both_lines(tmp_path, first, second):
    f = write_jsonl(tmp_path / "d.jsonl", [row(first), row(1), row(second)])
    with pytest.raises(DataError, match="duplicate question_id") as ei:
        load_records("jsonl", "train", str(f), str(tmp_path))
    msg = str(ei.value)
    assert str(f) in msg and "line 3" in msg and "line 1" in msg


def test_jsonl_missing_file_and_no_spec(tmp_path):
    with pytest.raises(DataError, match="nope.jsonl"):
        load_records("jsonl", "train", "nope.jsonl", str(tmp_path))
    with pytest.raises(DataError, match="split 'test' has no file"):
        load_records("jsonl", "test", None, str(tmp_path))


@pytest.mark.parametrize("image", ["../x.png", "img/../../x.png", "/etc/passwd", "link.png", "dirlink/x.png"])
def test_jsonl_refuses_paths_escaping_root(tmp_path, image):
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"x")
    os.symlink(outside / "secret.png", root / "link.png")
    os.symlink(outside, root / "dirlink")
    f = write_jsonl(root / "d.jsonl", [row(0), row(1, image=image)])
    with pytest.raises(DataError, match="outside the data root") as ei:
        load_records("jsonl", "train", str(f), str(root))
    msg = str(ei.value)
    assert str(f) in msg and "line 2" in msg and repr(image) in msg


# ------------------------------------------------------------------------ vqav2


def write_vqav2(tmp_path: Path, subtype: str | None = "val2014", n_img: int = 2, annotate: bool = True) -> dict:
    """A tiny dataset in the official VQAv2 format; returns the split spec."""
    questions, annotations = [], []
    for img in range(n_img):
        image_id = 100 + img
        for k in range(2):
            qid = image_id * 10 + k
            questions.append({"image_id": image_id, "question": f"q{qid}?", "question_id": qid})
            answers = [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1}
                       for i, a in enumerate(["yes"] * 7 + ["no"] * 3)]
            annotations.append({"question_id": qid, "image_id": image_id, "answers": answers,
                                "multiple_choice_answer": "yes", "answer_type": "yes/no",
                                "question_type": "is the"})
    qjson = {"info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "questions": questions}
    if subtype is not None:
        qjson["data_subtype"] = subtype
    (tmp_path / "q.json").write_text(json.dumps(qjson))
    (tmp_path / "a.json").write_text(json.dumps({"annotations": annotations}))
    (tmp_path / "images").mkdir(exist_ok=True)
    return {"questions": "q.json", "annotations": "a.json" if annotate else None, "images": "images"}


def test_vqav2_round_trip(tmp_path):
    spec = write_vqav2(tmp_path)
    recs = load_records("vqav2", "val", spec, str(tmp_path))
    assert len(recs) == 4 and [r.question_id for r in recs] == [1000, 1001, 1010, 1011]
    r = recs[0]
    assert r.image == os.path.join(os.path.realpath(tmp_path / "images"), "COCO_val2014_000000000100.jpg")
    assert r.answers == ("yes",) * 7 + ("no",) * 3
    assert r.answer_type == "yes/no" and r.question_type == "is the" and r.question == "q1000?"
    assert r.image_key == "val2014/100" and recs[1].image_key == r.image_key


def test_vqav2_test_split_without_annotations_and_test_dev(tmp_path):
    spec = write_vqav2(tmp_path, subtype="test-dev2015", annotate=False)
    recs = load_records("vqav2", "test", spec, str(tmp_path))
    assert all(r.answers == () and r.answer_type is None for r in recs)
    assert os.path.basename(recs[0].image) == "COCO_test2015_000000000100.jpg"


def test_vqav2_subset_inferred_from_folder(tmp_path):
    spec = write_vqav2(tmp_path, subtype=None)
    (tmp_path / "images" / "COCO_train2014_000000000100.jpg").write_bytes(b"")
    recs = load_records("vqav2", "train", spec, str(tmp_path))
    assert os.path.basename(recs[0].image) == "COCO_train2014_000000000100.jpg"
    (tmp_path / "images" / "COCO_val2014_000000000007.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="cannot tell the COCO subset"):
        load_records("vqav2", "train", spec, str(tmp_path))


def _edit(path: Path, key: str, fn) -> None:
    data = json.loads(path.read_text())
    fn(data[key])
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "file, edit, expected, qid",
    [
        ("a.json", lambda anns: anns.pop(1), "annotation for question_id 1001 .* missing", 1001),
        ("q.json", lambda qs: qs.pop(3), "have no question in", 1011),
        ("q.json", lambda qs: qs.append(dict(qs[0])), "duplicate question_id 1000", 1000),
        ("a.json", lambda anns: anns.append(dict(anns[2])), "duplicate annotation for question_id 1010", 1010),
        ("a.json", lambda anns: anns[0].update(image_id=5), "annotation image_id 5", 1000),
        ("a.json", lambda anns: anns[2].update(answers=["yes"]), "'answers' must be", 1010),
        ("q.json", lambda qs: qs[1].update(question=None), "'question' must be a string", 1001),
        ("q.json", lambda qs: qs[2].update(image_id="x"), "'image_id' must be an int", 1010),
    ],
)
def test_vqav2_errors_name_file_and_question_id(tmp_path, file, edit, expected, qid):
    spec = write_vqav2(tmp_path)
    _edit(tmp_path / file, "annotations" if file == "a.json" else "questions", edit)
    with pytest.raises(DataError, match=expected) as ei:
        load_records("vqav2", "val", spec, str(tmp_path))
    assert str(tmp_path / file) in str(ei.value) and str(qid) in str(ei.value)


def test_vqav2_bad_spec_and_files(tmp_path):
    spec = write_vqav2(tmp_path)
    with pytest.raises(DataError, match="expected a mapping"):
        load_records("vqav2", "val", "q.json", str(tmp_path))
    with pytest.raises(DataError, match="images folder"):
        load_records("vqav2", "val", {**spec, "images": "nope"}, str(tmp_path))
    (tmp_path / "bad.json").write_text('{"questions": [')
    with pytest.raises(DataError, match="bad.json.*not valid JSON"):
        load_records("vqav2", "val", {**spec, "questions": "bad.json"}, str(tmp_path))
    (tmp_path / "wrong.json").write_text('{"qs": []}')
    with pytest.raises(DataError, match="wrong.json.*'questions' list"):
        load_records("vqav2", "val", {**spec, "questions": "wrong.json"}, str(tmp_path))


# --------------------------------------------------------------------- easy_vqa


@pytest.fixture(scope="module")
def easy():
    return {s: load_records("easy_vqa", s, None, None) for s in ("train", "test")}


def test_easy_vqa_sizes_answers_and_types(easy):
    train, test = easy["train"], easy["test"]
    assert (len(train), len(test)) == (38_575, 9_673)
    assert len({r.image_key for r in train}) == 4_000 and len({r.image_key for r in test}) == 1_000
    answers = {r.answers for r in train + test}
    assert len(answers) == 13 and all(len(a) == 1 for a in answers)
    types = {a[0]: t for r in train + test for a, t in [(r.answers, r.answer_type)]}
    assert types["yes"] == types["no"] == "yes/no"
    assert types["teal"] == "color" and types["circle"] == "shape"
    assert set(types.values()) == {"yes/no", "color", "shape"}
    assert len({r.question_type for r in train + test}) == 24
    assert train[0].question_type == "what is the <color> shape?"


def test_easy_vqa_ids_unique_stable_and_images_exist(easy):
    train, test = easy["train"], easy["test"]
    ids = [r.question_id for r in train + test]
    assert len(set(ids)) == len(ids)
    assert [r.question_id for r in train[:3]] == [0, 1, 2] and test[0].question_id == 1_000_000
    again = load_records("easy_vqa", "test", None, None)
    assert again == test  # deterministic
    assert test[0].image_key.startswith("test/") and train[0].image_key == "train/0"
    paths = {r.image for r in train + test}
    assert len(paths) == 5_000 and all(os.path.isfile(p) and p.endswith(".png") for p in paths)


def test_easy_vqa_unknown_split_lists_splits():
    with pytest.raises(ValueError, match="'train', 'test'"):
        load_records("easy_vqa", "val", None, None)
