"""Sort-of-CLEVR generator (mmfuse/data/sort_of_clevr.py): answers re-derived from the scenes by an independent
reading of the spec, the pixels checked against the scenes, byte-identical output per seed, clear errors."""

from __future__ import annotations

import json
import math
import random
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmfuse.data.answer_tokens import AnswerTokenizer
from mmfuse.data.sort_of_clevr import SceneObject, answer, colours_left_to_right, noisy_orders
from mmfuse.data.sort_of_clevr_files import write_sort_of_clevr
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
            (re.compile(r"how many objects have the same shape as the (\w+) object\?"), "count"),
            (re.compile(r"what are the colors of the objects from left to right\?()"), "colour_order")]
COUNTS = {"train": 200, "val": 50, "test": 50}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def spec_answer(objects: list[dict], question: str) -> tuple[str, str]:
    """(question_type, answer) from the task's spec alone."""
    (qtype, color), = [(t, m.group(1)) for p, t in PATTERNS if (m := p.fullmatch(question))]
    if qtype == "colour_order":  # rank = objects further left, or at the same x and higher up (smaller y)
        rank = {o["color"]: sum(b["center"][0] < o["center"][0] or (b["center"][0] == o["center"][0] and
                                                                    b["center"][1] < o["center"][1]) for b in objects)
                for o in objects}
        return qtype, " ".join(sorted(rank, key=rank.__getitem__))
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


# --- the opt-in colour_order question (order_<split>.jsonl) ----------------------------------------

@pytest.fixture(scope="module")
def soc_order(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("soc_order")
    write_sort_of_clevr(root, COUNTS, seed=0, colour_order=True)
    return root


def test_colour_order_answers_follow_from_the_scene_and_nothing_else_changes(soc: Path, soc_order: Path) -> None:
    qid, ties = 20 * sum(COUNTS.values()), 0  # order ids go on after the twenty questions' ids
    for split in COUNTS:
        scenes = read_jsonl(soc_order / f"scenes_{split}.jsonl")
        records = read_jsonl(soc_order / f"order_{split}.jsonl")
        assert [r["image"] for r in records] == [s["image"] for s in scenes]  # one question per image, in order
        for r, scene in zip(records, scenes):
            qtype, expected = spec_answer(scene["objects"], r["question"])
            assert r == {"question_id": qid, "image": scene["image"], "question": r["question"],
                         "answers": [expected], "question_type": "colour_order", "answer_type": "sequence"}
            assert sorted(expected.split()) == sorted(SIX) and qtype == "colour_order"
            xs = [o["center"][0] for o in scene["objects"]]
            ties += len(set(xs)) < 6
            qid += 1
    assert 30 <= ties <= 90  # equal x in about one image in five (300 here): the tie-break is exercised
    # the flag only adds the order files: every other file is byte for byte the default output
    default, flagged = _files(soc), _files(soc_order)
    assert set(flagged) - set(default) == {"order_train.jsonl", "order_val.jsonl", "order_test.jsonl"}
    assert all(flagged[k] == default[k] for k in default if k != "summary.json")
    summary = json.loads(flagged["summary.json"])
    assert summary.pop("colour_order") == {"file": "order_<split>.jsonl", "noise": None, "annotators": 1, "splits": {
        s: {"questions": n, "corrupted_answers": 0} for s, n in COUNTS.items()}}
    assert summary == json.loads(default["summary.json"])


def test_colour_order_ties_go_top_first_and_words_stay_whole() -> None:
    def obj(color: str, x: int, y: int) -> SceneObject:
        return SceneObject(color, "square", (x, y), 11)

    scene = [obj("red", 40, 60), obj("green", 10, 50), obj("blue", 40, 20), obj("orange", 64, 10),
             obj("gray", 25, 30), obj("yellow", 40, 40)]
    assert colours_left_to_right(scene) == ["green", "gray", "blue", "yellow", "red", "orange"]
    tok = AnswerTokenizer.from_answers(["green gray blue yellow red orange"])
    ids = tok.encode_batch(["green gray blue yellow red orange"], max_length=8)  # base.yaml's max_length
    assert ids.shape == (1, 7) and ids[0, -1] == tok.eos_id and tok.unk_id not in ids  # 6 whole words + EOS
    assert tok.decode(ids[0]) == "green gray blue yellow red orange"


def _one_adjacent_swap(noisy: str, true: str) -> int:
    """The index i of the swapped pair (i, i + 1) turning ``true`` into ``noisy``; fails otherwise."""
    a, b = noisy.split(), true.split()
    diff = [k for k in range(6) if a[k] != b[k]]
    assert len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]
    return diff[0]


def test_noisy_annotators_corrupt_the_share_p_deterministically(tmp_path: Path) -> None:
    counts = {"train": 100, "val": 10, "test": 10}
    write_sort_of_clevr(tmp_path / "a", counts, seed=0, colour_order=True, noise=0.3)
    write_sort_of_clevr(tmp_path / "b", counts, seed=0, colour_order=True, noise=0.3)
    write_sort_of_clevr(tmp_path / "c", counts, seed=1, colour_order=True, noise=0.3)
    a, b, c = (_files(tmp_path / k) for k in "abc")
    assert a == b and a["order_train.jsonl"] != c["order_train.jsonl"]  # deterministic per seed
    swaps, noisy_slots, n = Counter(), Counter(), 0
    for split in counts:
        scenes = read_jsonl(tmp_path / "a" / f"scenes_{split}.jsonl")
        for r, scene in zip(read_jsonl(tmp_path / "a" / f"order_{split}.jsonl"), scenes):
            _, true = spec_answer(scene["objects"], r["question"])
            assert len(r["answers"]) == 10
            noisy = [k for k, ans in enumerate(r["answers"]) if ans != true]
            assert len(noisy) == 3  # exactly round(0.3 * 10) per question: the true order keeps the majority
            swaps.update(_one_adjacent_swap(r["answers"][k], true) for k in noisy)
            noisy_slots.update(noisy)
            n += 1
    assert sum(swaps.values()) / (10 * n) == 0.3  # the corruption rate is p
    assert set(swaps) == set(range(5)) and all(40 <= v <= 105 for v in swaps.values()), swaps  # ~72 each
    assert set(noisy_slots) == set(range(10)) and all(15 <= v <= 60 for v in noisy_slots.values()), noisy_slots
    summary = json.loads(a["summary.json"])["colour_order"]
    assert (summary["noise"], summary["annotators"], summary["splits"]["train"]) == \
        (0.3, 10, {"questions": 100, "corrupted_answers": 300})
    # the twenty questions and the images are the clean output's, noise or not
    write_sort_of_clevr(tmp_path / "d", counts, seed=0)
    d = _files(tmp_path / "d")
    assert all(a[k] == d[k] for k in d if k != "summary.json")


def test_noisy_orders_hand_values_and_bad_options(tmp_path: Path) -> None:
    order = ["red", "green", "blue", "orange", "gray", "yellow"]
    true = " ".join(order)
    assert noisy_orders(order, 4, 0.0, random.Random(0)) == (true,) * 4
    every = noisy_orders(order, 4, 1.0, random.Random(0))
    assert len(every) == 4 and all(ans != true for ans in every)
    for ans in every:
        _one_adjacent_swap(ans, true)
    assert sum(ans != true for ans in noisy_orders(order, 10, 0.5, random.Random(7))) == 5
    assert noisy_orders(order, 10, 0.5, random.Random(7)) == noisy_orders(order, 10, 0.5, random.Random(7))
    one = {"train": 1, "val": 1, "test": 1}
    with pytest.raises(DataError, match=r"noise=0.3 corrupts the colour_order answers; pass colour_order=True"):
        write_sort_of_clevr(tmp_path / "x", one, noise=0.3)
    with pytest.raises(DataError, match=r"noise must be a number in \[0, 1\] .*got 1.5"):
        write_sort_of_clevr(tmp_path / "x", one, colour_order=True, noise=1.5)
    with pytest.raises(DataError, match=r"annotators must be an integer >= 1, got 0"):
        write_sort_of_clevr(tmp_path / "x", one, colour_order=True, noise=0.3, annotators=0)
    assert not (tmp_path / "x").exists()  # refused before writing anything
