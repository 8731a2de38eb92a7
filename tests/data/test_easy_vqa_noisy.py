"""Tests for the ``easy_vqa_noisy`` data source (easy-VQA with simulated noisy annotators)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from mmfuse.data.sources import DataError, list_sources, load_records
from mmfuse.data.sources.easy_vqa import COLORS, SHAPES, answer_type_of
from mmfuse.data.sources.easy_vqa_noisy import noisy_answers
from mmfuse.metrics.vqa import batch_vqa_accuracy, vqa_accuracy

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "data" / "easy_vqa_noisy.yaml"
TYPE_ANSWERS = {"yes/no": {"yes", "no"}, "color": set(COLORS), "shape": set(SHAPES)}


@pytest.fixture(scope="module")
def clean():
    return {s: load_records("easy_vqa", s, None, None) for s in ("train", "test")}


@pytest.fixture(scope="module")
def noisy():
    return {s: load_records("easy_vqa_noisy", s, None, None) for s in ("train", "test")}


def test_registered():
    assert "easy_vqa_noisy" in list_sources()


@pytest.mark.parametrize("split", ["train", "test"])
def test_same_questions_as_easy_vqa(clean, noisy, split):
    assert len(noisy[split]) == len(clean[split])
    for c, n in zip(clean[split], noisy[split]):
        assert (n.question_id, n.image, n.question, n.answer_type, n.question_type, n.image_id) == (
            c.question_id, c.image, c.question, c.answer_type, c.question_type, c.image_id)


@pytest.mark.parametrize("split", ["train", "test"])
def test_default_noise_3_of_10_same_type_wrong_answers(clean, noisy, split):
    wrong_votes: Counter = Counter()
    for c, n in zip(clean[split], noisy[split]):
        truth = c.answers[0]
        assert len(n.answers) == 10
        wrong = [a for a in n.answers if a != truth]
        assert len(wrong) == 3
        assert all(answer_type_of(a) == c.answer_type and a in TYPE_ANSWERS[c.answer_type] for a in wrong)
        wrong_votes[max(Counter(wrong).values())] += 1
    # replacements are independent: colours are often all different, yes/no always all the same
    assert set(wrong_votes) == {1, 2, 3}


def test_replacements_cover_all_other_answers(clean, noisy):
    seen: dict[str, set] = {}
    for c, n in zip(clean["train"], noisy["train"]):
        seen.setdefault(c.answers[0], set()).update(a for a in n.answers if a != c.answers[0])
    for truth, others in seen.items():
        assert others == TYPE_ANSWERS[answer_type_of(truth)] - {truth}


def test_positions_are_random(noisy, clean):
    positions = Counter(i for c, n in zip(clean["test"], noisy["test"])
                        for i, a in enumerate(n.answers) if a != c.answers[0])
    assert set(positions) == set(range(10))


def test_deterministic_and_seeded(noisy):
    again = load_records("easy_vqa_noisy", "test", {"seed": 0}, None)
    assert again == noisy["test"]
    other = load_records("easy_vqa_noisy", "test", {"seed": 1}, None)
    assert [r.question_id for r in other] == [r.question_id for r in noisy["test"]]
    assert sum(a.answers != b.answers for a, b in zip(other, noisy["test"])) > len(other) // 2


def test_noise_depends_only_on_seed_split_and_question_id(noisy, clean):
    # what any subset/order of questions would get: recomputed from (seed, split, qid) alone
    for c, n in list(zip(clean["test"], noisy["test"]))[::997]:
        rng = random.Random(f"0/test/{c.question_id}")
        assert noisy_answers(c.answers[0], 10, 0.3, rng) == n.answers


def test_stable_across_processes(noisy):
    code = ("import random; from mmfuse.data.sources.easy_vqa_noisy import noisy_answers as f; "
            "print(list(f('red', 10, 0.3, random.Random('0/test/1000000'))))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == str(list(noisy_answers("red", 10, 0.3, random.Random("0/test/1000000"))))
    first = noisy["test"][0]
    assert first.question_id == 1_000_000
    assert load_records("easy_vqa_noisy", "test", None, None)[0].answers == first.answers


@pytest.mark.parametrize("spec,n,k", [({"noise": 0}, 10, 0), ({"annotators": 1, "noise": 0}, 1, 0),
                                      ({"annotators": 7, "noise": 0.5, "seed": 3}, 7, 4),
                                      ({"annotators": 4, "noise": 1.0}, 4, 4)])
def test_spec_counts(clean, spec, n, k):
    recs = load_records("easy_vqa_noisy", "test", spec, "/ignored/root")
    for c, r in zip(clean["test"], recs):
        assert len(r.answers) == n
        assert sum(a != c.answers[0] for a in r.answers) == k


@pytest.mark.parametrize("spec,key", [
    ({"annotator": 10}, "annotator"), ({"annotators": 0}, "annotators"), ({"annotators": 2.0}, "annotators"),
    ({"annotators": True}, "annotators"), ({"noise": 1.5}, "noise"), ({"noise": -0.1}, "noise"),
    ({"noise": "0.3"}, "noise"), ({"seed": "0"}, "seed"), ({"seed": 1.0}, "seed"),
])
def test_bad_spec_raises(spec, key):
    with pytest.raises(DataError, match=f"easy_vqa_noisy test.*'{key}'") as e:
        load_records("easy_vqa_noisy", "test", spec, None)
    if key == "annotator":
        assert "annotators, noise, seed" in str(e.value)


def test_spec_not_a_mapping_raises():
    with pytest.raises(DataError, match="easy_vqa_noisy train.*mapping"):
        load_records("easy_vqa_noisy", "train", "noise=0.3", None)


def test_unknown_split_like_easy_vqa():
    with pytest.raises(DataError, match="no split 'val'.*'train', 'test'"):
        load_records("easy_vqa_noisy", "val", None, None)


def test_vqa_accuracy_is_graded(clean, noisy):
    for c, n in list(zip(clean["test"], noisy["test"]))[:500]:
        truth = c.answers[0]
        assert vqa_accuracy(truth, n.answers) == pytest.approx(1.0)
        for wrong in TYPE_ANSWERS[c.answer_type] - {truth}:
            expected = {0: 0.0, 1: 0.3, 2: 0.6, 3: 0.9}[n.answers.count(wrong)]
            assert vqa_accuracy(wrong, n.answers) == pytest.approx(expected)
            assert batch_vqa_accuracy([wrong], [n.answers])[0] == pytest.approx(expected)


def test_vqa_accuracy_exact_values():
    three = ("no",) * 3 + ("yes",) * 7
    assert vqa_accuracy("no", three) == pytest.approx(0.9)  # (3 * 2/3 + 7 * 1) / 10
    assert vqa_accuracy("yes", three) == pytest.approx(1.0)
    assert vqa_accuracy("red", ("red",) + ("blue",) * 9) == pytest.approx(0.3)
    assert vqa_accuracy("red", ("red", "green") + ("blue",) * 8) == pytest.approx(0.3)
    assert vqa_accuracy("red", ("red", "red") + ("blue",) * 8) == pytest.approx(0.6)
    assert vqa_accuracy("teal", ("red",) * 10) == 0.0


def test_config_fragment_loads_with_noisy_test():
    from mmfuse import load_config

    cfg = load_config(CONFIG)
    assert cfg.data.source == "easy_vqa_noisy" and cfg.data.val_fraction == 0.1 and list(cfg.data.augment) == ["hflip"]
    for split in ("train", "test"):
        assert dict(cfg.data[split]) == {"annotators": 10, "noise": 0.3, "seed": 0}
    recs = load_records(cfg.data.source, "test", cfg.data.test, cfg.data.root)  # a DictConfig spec
    assert len(recs[0].answers) == 10
