"""Tests for mmfuse.metrics.vqa against hand-computed values of the official VQA scorer (HEAD a013f00)."""

from __future__ import annotations

import math

import pytest
import torch

from mmfuse.metrics import (
    VQAAccuracy,
    answer_scores,
    batch_vqa_accuracy,
    normalize_answer,
    official_aggregate,
    official_round,
    vqa_accuracy,
)
from mmfuse.metrics._vqa_tables import CONTRACTIONS, PUNCTUATION
from mmfuse.metrics.scoring import _process_punctuation


def gts_with(k: int, answer: str = "x", other: str = "y", n: int = 10) -> list[str]:
    return [answer] * k + [other] * (n - k)


@pytest.mark.parametrize(
    "raw, expected",
    [
        # punctuation: replaced by a space, or deleted when next to a space / digit,comma,digit anywhere
        ("red-white", "red white"), ("red - white", "red white"), ("yes!", "yes"), ("what?", "what"),
        ("1,000", "1000"), ("1, 000", "1 000"), ("10,5", "105"), ("1,,000", "1 000"),
        ("1,000-2,000", "10002000"), ("1,000 (approx)", "1000 approx"), ("a/b", "b"),
        ("10:30", "10:30"), ("girl's", "girl's"), ("50%", "50%"),
        # periods: deleted unless followed by a digit
        ("2.", "2"), ("3.5", "3.5"), (".5", ".5"), ("u.s.a.", "usa"), ("mr. t", "mr t"),
        ("." * 40 + "x", "." * 8 + "x"),  # at most 32 removed
        # number words, articles
        ("none", "0"), ("Zero", "0"), ("Two dogs", "2 dogs"), ("ten", "10"), ("eleven", "eleven"),
        ("a", ""), ("The cat", "cat"), ("an apple", "apple"), ("another", "another"),
        # contractions table, defects included
        ("dont", "don't"), ("Dont", "don't"), ("cant", "can't"), ("oclock", "o'clock"),
        ("im", "im"), ("Im", "im"), ("ive", "ive"), ("lets", "lets"), ("let's", "let's"),
        ("somebody'd", "somebodyd"), ("couldnt've", "couldn't've"), ("couldntve", "couldntve"),
        # case, whitespace
        ("YES", "yes"), ("  fire\thydrant\n", "fire hydrant"), ("fire  hydrant", "fire hydrant"), ("", ""),
        # Python 2 semantics: \d is ASCII only; lower() is one-to-one
        ("٣.٥", "٣٥"), ("\u0130", "i"), ("ΟΔΟΣ", "οδοσ"),
    ],
)
def test_normalize_answer(raw: str, expected: str) -> None:
    assert normalize_answer(raw) == expected


def test_punctuation_step_keeps_double_space_before_split() -> None:
    assert _process_punctuation("red - white") == "red  white"
    assert _process_punctuation("red-white") == "red white"


def test_tables() -> None:
    assert len(CONTRACTIONS) == 120 and len(PUNCTUATION) == 21
    assert CONTRACTIONS["Im"] == "I'm"  # present but unreachable after lower()


@pytest.mark.parametrize(
    "k, expected", [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (9, 1.0), (10, 1.0)]
)
def test_leave_one_out_table(k: int, expected: float) -> None:
    assert vqa_accuracy("x", gts_with(k)) == expected


def test_leave_one_out_is_by_position() -> None:
    assert vqa_accuracy("yes", ["yes"] * 10) == 1.0
    assert vqa_accuracy("yes", ["yes"] * 9 + ["no"]) == 1.0
    assert vqa_accuracy("no", ["yes"] * 9 + ["no"]) == 0.3


def test_fewer_answers() -> None:
    assert vqa_accuracy("x", ["x", "x"]) == pytest.approx(1 / 3)
    assert vqa_accuracy("x", ["x", "x", "y"]) == pytest.approx(4 / 9)
    assert vqa_accuracy("Yes!", ["yes"]) == 1.0  # one answer: normalised exact match
    assert vqa_accuracy("no", ["yes"]) == 0.0
    with pytest.raises(ValueError, match="empty"):
        vqa_accuracy("yes", [])
    with pytest.raises(TypeError):
        vqa_accuracy("yes", "yes")


def test_unanimity_gate() -> None:
    assert vqa_accuracy("Yes", ["yes"] * 10) == 0.0
    assert vqa_accuracy("yes.", ["yes"] * 10) == 0.0
    assert vqa_accuracy("two", ["2"] * 10) == 0.0
    assert vqa_accuracy(" yes\n", ["yes"] * 10) == 1.0  # whitespace clean-up is unconditional
    assert vqa_accuracy("Yes", ["yes"] * 9 + ["no"]) == 1.0
    assert vqa_accuracy("two", ["2"] * 9 + ["3"]) == 1.0
    assert vqa_accuracy("", ["a"] * 3 + ["b"] * 7) == 0.9  # "a" normalises to ""


ODD = ["", "日本語 ça", "x" * 10_000, "." * 10_000, "1,0" * 3000, "\x00\u200b🙂"]


@pytest.mark.parametrize("text", ODD)
def test_odd_inputs(text: str) -> None:
    assert isinstance(normalize_answer(text), str)
    assert 0.0 <= vqa_accuracy(text, [text, "y", text]) <= 1.0
    assert 0.0 <= batch_vqa_accuracy([text], [[text] * 10])[0] <= 1.0


def test_period_cap_on_long_input() -> None:
    assert normalize_answer("." * 10_000) == "." * 9_968


@pytest.mark.parametrize(
    "gts, expected",
    [
        (["yes"] * 9 + ["no"], {"yes": 1.0, "no": 0.3}),
        (["red", "red", "Red!"] + ["blue"] * 7, {"red": 0.9, "blue": 1.0}),
        (["two", "2", "3"] + ["four"] * 7, {"2": 0.6, "3": 0.3, "4": 1.0}),
        (["Yes"] * 10, {"yes": 1.0}),  # unanimous, un-normalised: credited like the metric does
        (["Yes", "Yes"], {"yes": 1 / 3}),
        (["Yes"], {"yes": 1.0}),
        (["a", "b"], {"": 1 / 6, "b": 1 / 6}),
    ],
)
def test_answer_scores(gts: list[str], expected: dict[str, float]) -> None:
    scores = answer_scores(gts)
    assert scores == pytest.approx(expected)
    for c, s in scores.items():  # consistent with the metric's per-sample score
        assert batch_vqa_accuracy([c], [gts]) == [s]


def test_answer_scores_empty() -> None:
    with pytest.raises(ValueError):
        answer_scores([])


def test_metric_credits_unanimous_surface_form() -> None:
    gts = ["Yes"] * 10
    assert vqa_accuracy("yes", gts) == 0.0 and vqa_accuracy("Yes", gts) == 1.0
    assert batch_vqa_accuracy(["yes", "YES!", "Yes", "no"], [gts] * 4) == [1.0, 1.0, 1.0, 0.0]
    assert batch_vqa_accuracy(["Yes"], [["yes"] * 10]) == [1.0]  # official raw "Yes" would score 0


BATCH = [
    ("Two", ["2"] * 4 + ["3"] * 6, "number", "how many"),
    ("Yes!", gts_with(1, "yes", "no"), "yes/no", "is the"),
    ("no", gts_with(2, "no", "yes"), "yes/no", None),
    ("red-white", ["red white"] * 3 + ["red"] * 7, None, "what color"),
    ("dont know", ["don't know"] * 10, "other", "what color"),
]


def test_metric_equals_mean_of_per_sample_scores() -> None:
    preds, gts, atypes, qtypes = map(list, zip(*BATCH))
    m = VQAAccuracy(("yes/no", "number", "other"), question_types=("how many", "is the", "what color"))
    m.update(preds[:2], gts[:2], atypes[:2], qtypes[:2])
    m.update(preds[2:], gts[2:], atypes[2:], qtypes[2:])
    per_sample = [vqa_accuracy(normalize_answer(p), g) for p, g in zip(preds, gts)]
    assert per_sample == [1.0, 0.3, 0.6, 0.9, 1.0]
    assert m.scores_for(preds, gts) == per_sample
    out = m.compute()
    assert out["acc"].item() == pytest.approx(sum(per_sample) / 5, abs=1e-15)
    assert out["acc/number"].item() == 1.0
    assert out["acc/yes/no"].item() == pytest.approx(0.45, abs=1e-15)
    assert out["acc/other"].item() == 1.0
    assert out["qtype/what color"].item() == pytest.approx(0.95, abs=1e-15)
    assert out["qtype/is the"].item() == pytest.approx(0.3, abs=1e-15)
    assert m.answer_type_sum.dtype == torch.float64
    assert m.answer_type_sum.tolist() == pytest.approx([0.9, 1.0, 1.0])
    assert m.answer_type_count.tolist() == [2, 1, 1]  # the None type counts only overall
    assert m.count.item() == 5


def test_metric_omits_unseen_types_and_resets() -> None:
    m = VQAAccuracy(answer_types=("yes/no", "number", "other"))
    m.update(["yes"], [["yes"] * 10], ["yes/no"])
    assert set(m.compute()) == {"acc", "acc/yes/no"}
    m.update(["2"], [["3"] * 10])  # no types at all: overall only
    assert m.compute()["acc"].item() == 0.5 and m.answer_type_count.tolist() == [1, 0, 0]
    m.reset()
    assert m.count.item() == 0 and m.answer_type_sum.tolist() == [0.0, 0.0, 0.0]


def test_metric_errors() -> None:
    m = VQAAccuracy(answer_types=("yes/no", "number"))
    with pytest.raises(ValueError, match=r"unknown answer type 'color'.*'yes/no', 'number'"):
        m.update(["red"], [["red"] * 10], ["color"])
    with pytest.raises(ValueError, match="unknown question type"):
        m.update(["red"], [["red"] * 10], question_types=["what color"])
    with pytest.raises(ValueError):
        m.update(["a", "b"], [["a"] * 10])
    with pytest.raises(ValueError):
        m.update(["a"], [["a"] * 10], ["yes/no", "number"])
    with pytest.raises(ValueError, match="empty"):
        m.update(["a"], [[]])
    assert m.count.item() == 0  # failed updates change nothing
    with pytest.raises(ValueError):
        VQAAccuracy(answer_types=("a", "a"))


def test_official_rounding() -> None:
    assert official_round(0.3) == 30.0 and official_round(1 / 3) == 33.33
    # Python 2.7's round (the official script's): exact halves go away from zero (Python 3: to even)
    assert official_round(38.7 / 48) == 80.63 and round(100 * (38.7 / 48), 2) == 80.62
    assert official_aggregate(1.0, 32) == 3.13 and official_round(-0.03125) == -3.13
    # the official aggregate multiplies the unrounded sum by 100 before dividing (here: 80.62500000000001)
    assert official_aggregate(38.7, 48) == 80.63
    with pytest.warns(UserWarning):  # torchmetrics: compute() before update()
        assert math.isnan(VQAAccuracy().compute()["acc"].item())


def test_majority_answer_is_the_one_answer_of_a_question() -> None:
    """Most frequent after normalisation; a tie goes to the answer given first; None without answers. The
    generation target, the exact-match reward and the results' gold column all use it."""
    from mmfuse.evaluation.results import gold_answer
    from mmfuse.metrics.scoring import majority_answer
    from mmfuse.rl.rewards import exact_match_reward
    from mmfuse.tasks import most_common_answer

    cases = [(["no", "yes", "yes", "no"], "no"), (["Two", "2", "3", "circle", "circle"], "2"),
             (["No.", "yes", "no"], "no"), (["a", "b"], "")]  # "a" normalises to "" (an article)
    for answers, expected in cases:
        assert majority_answer(answers) == gold_answer(answers) == most_common_answer(answers) == expected
    assert majority_answer([]) is None and gold_answer([]) is None
    with pytest.raises(ValueError):
        most_common_answer([])
    batch = {"answers": [["red", "blue", "blue"], ["yes", "no"], []]}
    assert exact_match_reward(["Blue", "no", "x"], batch).tolist() == [1.0, 0.0, 0.0]
