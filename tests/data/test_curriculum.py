"""``data.curriculum``: the first epochs train on some question types only, every epoch keeps its length, and
after the stages the batches are exactly those of a run without a curriculum."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmfuse.config import load_config
from mmfuse.data.batching import GroupedBatchSampler, curriculum_stages
from mmfuse.errors import ConfigError
from mmfuse.runner import build_datamodule
from tests.conftest import TINY, jsonl_overrides

# 6 images of 4 questions; question q has type "a" when q % 4 == 0 (one a question per image)
GROUPS = [list(range(4 * i, 4 * i + 4)) for i in range(6)]
A = {q for g in GROUPS for q in g if q % 4 == 0}


@pytest.mark.parametrize("by_image", [True, False])
def test_stages_filter_batches_then_every_question(by_image: bool) -> None:
    cur = GroupedBatchSampler(GROUPS, batch_size=8, shuffle=True, group_by_image=by_image, seed=3,
                              curriculum=[(2, A)])
    plain = GroupedBatchSampler(GROUPS, batch_size=8, shuffle=True, group_by_image=by_image, seed=3)
    for epoch in range(4):
        got, full = list(cur), list(plain)
        assert len(got) == len(full) == len(cur)  # the same number of batches every epoch
        if epoch < 2:
            assert sorted(q for b in got for q in b) == sorted(A)  # the stage's questions, each once
            for b, f in zip(got, full):  # filtered from the batch the epoch would have had
                assert b == [q for q in f if q in A]
        else:
            assert got == full
    assert cur.stage_questions(1) == frozenset(A) and cur.stage_questions(2) is None


def test_a_batch_with_none_of_the_stage_keeps_its_questions() -> None:
    groups = [[0, 1], [2, 3], [4, 5]]
    s = GroupedBatchSampler(groups, batch_size=2, shuffle=False, curriculum=[(1, {0, 2})])
    assert list(s) == [[0], [2], [4, 5]]  # the third image has no stage question: a batch is never empty
    assert list(s) == [[0, 1], [2, 3], [4, 5]]


def test_consecutive_stages() -> None:
    s = GroupedBatchSampler(GROUPS, batch_size=4, shuffle=False, curriculum=[(1, {0}), (2, {0, 1})])
    assert [s.stage_questions(e) for e in range(4)] == [frozenset({0}), frozenset({0, 1}), frozenset({0, 1}), None]


@pytest.mark.parametrize("value, message", [
    ("[{epochs: 0, question_types: [shape]}]", "data.curriculum[0].epochs' is 0"),
    ("[{epochs: 2, question_types: shape}]", "expected a non-empty list"),
    ("[{epochs: 2, question_types: []}]", "expected a non-empty list"),
    ("[{epochs: 2}]", "exactly the keys epochs, question_types"),
    ("[{epochs: 2, question_types: [x], extra: 1}]", "exactly the keys epochs, question_types"),
])
def test_bad_stages_are_config_errors(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(TINY, [f"data.curriculum={value}"])


def test_curriculum_needs_one_in_memory_dataset() -> None:
    with pytest.raises(ConfigError, match="cannot be combined with data.mixture or data.source=prepared"):
        load_config(TINY, ["data.source=prepared", "data.curriculum=[{epochs: 1, question_types: [a]}]"])


def test_datamodule_trains_the_stage_types_first_and_refuses_absent_ones(jsonl_data: dict, tmp_path: Path) -> None:
    over = [*jsonl_overrides(jsonl_data, tmp_path / "run"), "data.batch_size=8"]
    cfg = load_config(TINY, [*over, "data.curriculum=[{epochs: 1, question_types: [what shape]}]"])
    dm = build_datamodule(cfg, tmp_path / "run")
    dm.prepare()
    dm.img_size = (32, 32)
    dm.setup("fit")
    loader = dm.train_dataloader()
    first = [t for b in loader for t in b["question_type"]]
    second = [t for b in loader for t in b["question_type"]]
    assert set(first) == {"what shape"} and len(first) == 12  # one shape question per training image
    assert len(second) == 48 and set(second) == {"what shape", "what color", "is there a"}
    bad = load_config(TINY, [*over, "data.curriculum=[{epochs: 1, question_types: [shape, what shape]}]"])
    dm = build_datamodule(bad, tmp_path / "run2")
    with pytest.raises(ConfigError, match=r"curriculum\[0\]\.question_types' has \['shape'\].*is there a, what color"):
        curriculum_stages(bad.data.curriculum, dm.split_records("train"))
