"""Sort-of-CLEVR generator (mmfuse/data/sort_of_clevr.py): answers re-derived from the scenes by an independent
reading of the spec, the pixels checked against the scenes, byte-identical output per seed, clear errors."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmfuse.data.sort_of_clevr import SceneObject, answer, write_sort_of_clevr
from mmfuse.data.sources import load_records
from mmfuse.errors import DataError

W = 75
SIX = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "orange": (255, 156, 0),
       "gray": (128, 128, 128), "yellow": (255, 255, 0)}
# the spec's questions, written out again here (not imported), with the type each one has
PATTERNS = [(re.compile(r"what is the shape of the (\w+) object\?"), "shape"),
            (re.compile(r"is the (\w+) object on the left or right of the image\?"), "horizontal"),
            (re.compile(r"is the (\w+) object on the top or bottom of the image\?"), "vertical"),
            (re.compile(r"what is the shape of the object closest to the (\w+) object\?"), "closest"),
            (re.compile(r"what is the shape of the object furthest from the (\w+) object\?"), "furthest"),
            (re.compile(r"how many objects have the same shape as the (\w+) object\?"), "count")]
COUNTS = {"train": 200, "val": 50, "test": 50}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def spec_answer(objects: list[dict], question: str) -> tuple[str, str]:
    """(question_type, answer) from the task's spec alone."""
    (qtype, color), = [(t, m.group(1)) for p, t in PATTERNS if (m := p.fullmatch(question))]
    me = next(o for o in objects if o["color"] == color)
    x, y = me["center"]
    if qtype == "shape":
        return qtype, me["shape"]
    if qtype == "horizontal":
        return qtype, "left" if x < W / 2 else "right"
    if qtype == "vertical":
        return qtype, "top" if y < W / 2 else "bottom"
    if qtype == "count":
        return qtype, str(len([o for o in objects if o["shape"] == me["shape"]]))
    dist = sorted((math.dist(o["center"], me["center"]), o["shape"]) for o in objects if o is not me)
    return qtype, (dist[0] if qtype == "closest" else dist[-1])[1]


@pytest.fixture(scope="module")
def soc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("soc")
    write_sort_of_clevr(root, COUNTS, seed=0)
    return root


def test_every_answer_follows_from_the_scene(soc: Path) -> None:
    seen = Counter()
    for split in COUNTS:
        scenes = {s["image"]: s["objects"] for s in read_jsonl(soc / f"scenes_{split}.jsonl")}
        assert len(scenes) == COUNTS[split]
        for r in read_jsonl(soc / f"{split}.jsonl"):
            qtype, expected = spec_answer(scenes[r["image"]], r["question"])
            assert (r["question_type"], r["answers"]) == (qtype, [expected]), r
            seen[qtype, expected] += 1
    # every answer of every type occurs (count 6 needs six equal shapes: 1 image in 32)
    assert set(seen) >= {("shape", "square"), ("shape", "circle"), ("horizontal", "left"), ("horizontal", "right"),
                         ("vertical", "top"), ("vertical", "bottom"), ("closest", "square"), ("closest", "circle"),
                         ("furthest", "square"), ("furthest", "circle")} | {("count", str(k)) for k in range(1, 6)}
    assert sum(seen.values()) == 20 * sum(COUNTS.values())


def test_ten_non_relational_then_ten_relational_questions_per_image(soc: Path) -> None:
    records = read_jsonl(soc / "train.jsonl")
    per_image: dict[str, list[dict]] = {}
    for r in records:
        per_image.setdefault(r["image"], []).append(r)
    assert len(per_image) == 200 and all(len(v) == 20 for v in per_image.values())
    for rs in per_image.values():
        assert [r["answer_type"] for r in rs] == ["non-relational"] * 10 + ["relational"] * 10
        assert {r["question_type"] for r in rs[:10]} <= {"shape", "horizontal", "vertical"}
        assert {r["question_type"] for r in rs[10:]} <= {"closest", "furthest", "count"}
    assert all(list(r) == ["question_id", "image", "question", "answers", "question_type", "answer_type"]
               for r in records)
    # types and colours drawn uniformly: 2,000 questions per kind, 3 types each (sd ~21), 6 colours (sd ~19)
    types = Counter(r["question_type"] for r in records)
    assert all(580 <= n <= 760 for n in types.values()) and len(types) == 6, types
    colours = Counter(re.search(r"the (\w+) object", r["question"]).group(1) for r in records)
    assert set(colours) == set(SIX) and all(560 <= n <= 780 for n in colours.values()), colours


def test_scenes_have_the_six_colours_apart_and_unambiguous(soc: Path) -> None:
    for split in COUNTS:
        for scene in read_jsonl(soc / f"scenes_{split}.jsonl"):
            objs = scene["objects"]
            assert sorted(o["color"] for o in objs) == sorted(SIX)
            assert all(o["shape"] in ("square", "circle") and o["size"] == 11 for o in objs)
            for i, a in enumerate(objs):
                ax, ay = a["center"]
                assert 5 <= ax <= 69 and 5 <= ay <= 69  # inside the image
                assert abs(ax + 0.5 - W / 2) >= 2 and abs(ay + 0.5 - W / 2) >= 2  # off the middle lines
                d = sorted(math.dist(a["center"], b["center"]) for b in objs if b is not a)
                assert d[0] >= 16  # bounding boxes (11 px) at least 16/sqrt(2) - 11 > 0 px apart: no overlap
                assert d[1] >= 1.1 * d[0] - 1e-9 and d[4] >= 1.1 * d[3] - 1e-9  # closest / furthest clear
                for b in objs[i + 1:]:
                    assert max(abs(ax - b["center"][0]), abs(ay - b["center"][1])) > 11  # boxes disjoint


def test_pixels_show_exactly_the_scene(soc: Path) -> None:
    circle_area = set()
    for scene in read_jsonl(soc / "scenes_val.jsonl"):
        with Image.open(soc / scene["image"]) as im:
            assert (im.format, im.mode, im.size) == ("PNG", "RGB", (W, W))
            px = np.asarray(im)
        painted = np.zeros((W, W), dtype=bool)
        for o in scene["objects"]:
            ys, xs = np.nonzero((px == SIX[o["color"]]).all(-1))
            painted[ys, xs] = True
            x, y = o["center"]
            # the object's pixels are centred on its centre pixel and fit its 11x11 box
            assert (xs.mean(), ys.mean()) == pytest.approx((x, y), abs=1e-9)
            assert xs.min() >= x - 5 and xs.max() <= x + 5 and ys.min() >= y - 5 and ys.max() <= y + 5
            if o["shape"] == "square":
                assert len(xs) == 121  # a full 11x11 square: nothing drawn over it
            else:
                assert 80 < len(xs) < 121
                circle_area.add(len(xs))
        assert (px[~painted] == 255).all()  # everything else is the white background
    assert len(circle_area) == 1  # every circle intact, none partly covered


def test_records_load_through_the_jsonl_source_with_unique_ids(soc: Path) -> None:
    ids = []
    for split, n in COUNTS.items():
        records = load_records("jsonl", split, f"{split}.jsonl", str(soc))
        assert len(records) == 20 * n
        assert all(Path(r.image).is_file() and len(r.answers) == 1 for r in records)
        assert records[0].image == str((soc / f"images/{split}/00000.png").resolve())
        assert {r.answer_type for r in records} == {"relational", "non-relational"}
        ids += [r.question_id for r in records]
    assert ids == list(range(20 * sum(COUNTS.values())))  # unique across splits


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_and_a_split_prefix_is_stable(tmp_path: Path, soc: Path) -> None:
    small = {"train": 3, "val": 1, "test": 2}
    write_sort_of_clevr(tmp_path / "a", small, seed=0)
    write_sort_of_clevr(tmp_path / "b", small, seed=0)
    write_sort_of_clevr(tmp_path / "c", small, seed=1)
    a, b, c = (_files(tmp_path / k) for k in "abc")
    assert len(a) == 6 + 3 + 3 + 1 and a == b
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a if k.endswith((".png", "scenes_train.jsonl")))
    # image i of a split does not depend on the other counts: the small set is the big one's prefix
    assert a["images/test/00001.png"] == (soc / "images/test/00001.png").read_bytes()
    assert read_jsonl(tmp_path / "a" / "scenes_train.jsonl") == read_jsonl(soc / "scenes_train.jsonl")[:3]


def test_hand_placed_scene_answers() -> None:
    def obj(color: str, shape: str, x: int, y: int) -> SceneObject:
        return SceneObject(color, shape, (x, y), 11)

    scene = [obj("red", "square", 10, 10), obj("green", "circle", 30, 10), obj("blue", "circle", 64, 64),
             obj("orange", "square", 10, 40), obj("gray", "square", 64, 10), obj("yellow", "circle", 40, 64)]
    got = {(c, t): answer(scene, c, t) for c in ("red", "blue", "green")
           for t in ("shape", "horizontal", "vertical", "closest", "furthest", "count")}
    assert got == {
        ("red", "shape"): "square", ("red", "horizontal"): "left", ("red", "vertical"): "top",
        ("red", "closest"): "circle",    # green at 20 px, orange at 30
        ("red", "furthest"): "circle",   # blue at 76.4 px, yellow at 61.7
        ("red", "count"): "3",           # red, orange, gray
        ("blue", "shape"): "circle", ("blue", "horizontal"): "right", ("blue", "vertical"): "bottom",
        ("blue", "closest"): "circle",   # yellow at 24 px, gray at 54
        ("blue", "furthest"): "square",  # red at 76.4 px
        ("blue", "count"): "3",
        ("green", "shape"): "circle", ("green", "horizontal"): "left", ("green", "vertical"): "top",
        ("green", "closest"): "square",  # red at 20 px, gray at 34
        ("green", "furthest"): "circle",  # blue at 63.8 px, yellow at 54.9
        ("green", "count"): "3",
    }
    with pytest.raises(DataError, match=r"unknown Sort-of-CLEVR question_type 'size'; valid: shape, horizontal"):
        answer(scene, "red", "size")
    with pytest.raises(DataError, match=r"no 'purple' object in the scene"):
        answer(scene, "purple", "shape")


def test_bad_input_is_refused_and_overwrite_replaces_only_its_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"counts must give train, val and test each an integer >= 1, got .*'val': 0"):
        write_sort_of_clevr(tmp_path / "x", {"train": 2, "val": 0, "test": 1})
    with pytest.raises(DataError, match=r"counts must give train, val and test"):
        write_sort_of_clevr(tmp_path / "x", {"train": 2, "test": 1})
    with pytest.raises(DataError, match=r"seed must be a non-negative integer, got -1"):
        write_sort_of_clevr(tmp_path / "x", {"train": 1, "val": 1, "test": 1}, seed=-1)
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match=r"output '.*file' exists and is not a directory"):
        write_sort_of_clevr(tmp_path / "file", {"train": 1, "val": 1, "test": 1})

    out = tmp_path / "out"
    write_sort_of_clevr(out, {"train": 3, "val": 1, "test": 1})
    (out / "notes.txt").write_text("mine")
    before = _files(out)
    with pytest.raises(DataError, match=r"output directory '.*out' is not empty; pass --overwrite"):
        write_sort_of_clevr(out, {"train": 2, "val": 1, "test": 1})
    assert _files(out) == before  # refused before touching anything
    write_sort_of_clevr(out, {"train": 2, "val": 1, "test": 1}, overwrite=True)
    assert sorted(p.name for p in (out / "images" / "train").iterdir()) == ["00000.png", "00001.png"]
    assert (out / "notes.txt").read_text() == "mine"  # not the generator's: left alone
    assert len(read_jsonl(out / "train.jsonl")) == 40
