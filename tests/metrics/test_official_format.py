"""Official VQA files and numbers: loaders, the coverage check, score_results, the plain port, tools/score.py.

Expected numbers are derived by hand with the official formulas (vqaEval.py, HEAD a013f00); those
marked "Python 2.7" were also confirmed by running the official script under Python 2.7.18.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from mmfuse.metrics.official_format import (
    CoverageError,
    FormatError,
    check_coverage,
    load_annotations,
    load_results,
    score_results,
)
from mmfuse.metrics.reference import reference_evaluate, reference_vqa_accuracy
from mmfuse.metrics.rounding import py2_round
from mmfuse.metrics.synthetic import synthetic_vqa, write_official_files
from mmfuse.metrics.vqa import VQAAccuracy, batch_vqa_accuracy, official_aggregate, vqa_accuracy

REPO = Path(__file__).resolve().parents[2]


def ann(answers: list[str], answer_type: str = "other", question_type: str = "what", image_id: int = 1) -> dict:
    return {"answers": answers, "answer_type": answer_type, "question_type": question_type,
            "image_id": image_id, "question": "what is it?"}


def at(positions: list[int], hit: str = "x", miss: str = "y") -> list[str]:
    """10 answers, ``hit`` at the given positions (the per-question value depends on them)."""
    return [hit if j in positions else miss for j in range(10)]


# positions giving exactly 0.3 / 0.6 / 0.9 (others give 0.5999999999999999, 0.8999999999999998, ...)
EXACT = {0.0: [], 0.3: [0], 0.6: [6, 9], 0.9: [7, 8, 9], 1.0: [0, 1, 2, 3]}


def plain_sum(xs: list[float]) -> float:
    total = 0.0
    for x in xs:
        total += x
    return total


# ---------------------------------------------------------------- files and coverage


def test_files_round_trip(tmp_path: Path) -> None:
    results, annotations = synthetic_vqa(50, seed=3)
    rp, ap, qp = write_official_files(results, annotations, tmp_path)
    assert load_results(rp) == results
    loaded = load_annotations(ap, qp)
    assert loaded == annotations and list(loaded) == list(annotations)  # annotation-file order kept


def test_coverage_names_missing_and_extra() -> None:
    with pytest.raises(CoverageError) as e:
        check_coverage([1, 2, 3, 99, 98], [5, 4, 3, 2, 1])
    msg = str(e.value)
    assert "missing question ids 2 (4, 5)" in msg and "extra (not annotated) question ids 2 (98, 99)" in msg
    assert isinstance(e.value, ValueError)
    with pytest.raises(CoverageError) as e:
        check_coverage([], range(25))
    assert str(e.value).endswith("missing question ids 25 (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ... (15 more))")
    check_coverage([2, 1], {1: "a", 2: "b"})  # exact cover: fine


def test_score_results_refuses_partial_results() -> None:
    with pytest.raises(CoverageError, match=r"missing question ids 1 \(2\)"):
        score_results({1: "x"}, {1: ann(at([0])), 2: ann(at([0]))})


def write(tmp_path: Path, name: str, content: object) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "content, message",
    [
        ('[{"question_id": 1, "answer": "a"}', "invalid JSON at line 1"),
        ({"question_id": 1, "answer": "a"}, "expected a JSON list"),
        ([1], "entry 0 is not a JSON object"),
        ([{"question_id": 1, "answer": "a"}, {"answer": "b"}], "entry 1 needs int 'question_id', got missing"),
        ([{"question_id": "1", "answer": "a"}], "entry 0 needs int 'question_id', got '1' (str)"),
        ([{"question_id": True, "answer": "a"}], "entry 0 needs int 'question_id'"),
        ([{"question_id": 1, "answer": 3}], "entry 0 needs str 'answer', got 3 (int)"),
        ([{"question_id": 7, "answer": "a"}, {"question_id": 7, "answer": "b"}], "duplicate question ids, 1 (7)"),
    ],
)
def test_bad_results_file(tmp_path: Path, content: object, message: str) -> None:
    path = write(tmp_path, "preds.json", content)
    with pytest.raises(FormatError) as e:
        load_results(path)
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value)


def official_ann(qid: int, answers: list, image_id: int = 1) -> dict:
    return {"question_id": qid, "image_id": image_id, "question_type": "what", "answer_type": "other",
            "answers": [{"answer": a, "answer_id": i + 1} for i, a in enumerate(answers)]}


@pytest.mark.parametrize(
    "anns, ques, where, message",
    [
        ([], [], "a", "expected a JSON object whose 'annotations' is a list"),
        ({"annotations": [official_ann(1, [])]}, [], "a", "annotation 0 has an empty 'answers' list"),
        ({"annotations": [official_ann(1, ["a", 2])]}, [], "a", "annotation 0 answer 1 needs str 'answer'"),
        ({"annotations": [official_ann(1, ["a"]), official_ann(1, ["b"])]}, [], "a", "duplicate question ids, 1 (1)"),
        ({"annotations": [official_ann(1, ["a"])]}, {"questions": [{"question_id": 1, "image_id": 1}]}, "q",
         "question 0 needs str 'question', got missing"),
        ({"annotations": [official_ann(i, ["a"]) for i in range(1, 15)]},
         {"questions": [{"question_id": 1, "image_id": 1, "question": "?"}]}, None,
         "but not in {q}: 13 (2, 3, 4, 5, 6, 7, 8, 9, 10, 11, ... (3 more))"),
        ({"annotations": [official_ann(1, ["a"])]},
         {"questions": [{"question_id": q, "image_id": 1, "question": "?"} for q in (1, 5)]}, None,
         "question ids in {q} but not in {a}: 1 (5)"),
        ({"annotations": [official_ann(1, ["a"], image_id=2)]},
         {"questions": [{"question_id": 1, "image_id": 3, "question": "?"}]}, None, "image_id differs"),
    ],
)
def test_bad_annotation_files(tmp_path: Path, anns: object, ques: object, where: str | None, message: str) -> None:
    ap = write(tmp_path, "anns.json", anns if isinstance(anns, dict) else [])
    qp = write(tmp_path, "ques.json", ques if isinstance(ques, dict) else {"questions": []})
    with pytest.raises(FormatError) as e:
        load_annotations(ap, qp)
    msg = str(e.value)
    assert message.format(a=ap, q=qp) in msg
    if where is not None:  # the offending file is named first
        assert msg.startswith(f"{ap if where == 'a' else qp}: ")


# ---------------------------------------------------------------- official numbers


def test_three_questions_by_hand() -> None:
    annotations = {
        1: ann(["yes"] + ["no"] * 9, "yes/no", "is the"),  # 1 annotator agrees -> 0.3
        2: ann(at([6, 9], "2", "3"), "number", "how many"),  # "two" -> "2" (GT differ): 2 agree -> 0.6
        3: ann(at([7, 8, 9], "red", "blue"), "other", "what color"),  # "Red" -> "red": 3 agree -> 0.9
    }
    results = {1: "yes", 2: "two", 3: "Red"}
    out = score_results(results, annotations)
    assert out["evalQA"] == {1: 30.0, 2: 60.0, 3: 90.0}
    assert out["perAnswerType"] == {"yes/no": 30.0, "number": 60.0, "other": 90.0}
    assert out["perQuestionType"] == {"is the": 30.0, "how many": 60.0, "what color": 90.0}
    # 0.3 + 0.6 = 0.8999999999999999; + 0.9 = 1.7999999999999998; * 100 / 3 = 59.99999999999999 -> 60.0
    assert out["overall"] == 60.0 and out["num_questions"] == 3
    assert out["convention"].startswith("official")
    # the same type twice: (0.9 + 0.6) / 2
    annotations[4], results[4] = ann(at([6, 9], "red", "blue"), "other", "what color"), "red"
    assert score_results(results, annotations)["perAnswerType"]["other"] == 75.0


def test_aggregates_use_unrounded_values() -> None:
    # 3 identical answers, prediction matches: each annotator sees 2 of 2 others -> 2/3 (evalQA 66.67)
    annotations = {1: ann(["x"] * 3), 2: ann(["x"] * 3), 3: ann(["x"] * 3)}
    out = score_results({1: "x", 2: "x", 3: "z"}, annotations)
    assert out["evalQA"] == {1: 66.67, 2: 66.67, 3: 0.0}
    assert out["overall"] == 44.44  # 100 * (4/3) / 3 = 44.444...
    assert round((66.67 + 66.67 + 0.0) / 3, 2) == 44.45  # what averaging the rounded values would give


def test_sums_left_to_right_in_annotation_order() -> None:
    """Python 2's sum() adds left to right; math.fsum (and Python 3.12+ sum) would give 51.88 here."""
    xs = [0.3, 0.0, 1.0, 0.9, 0.0, 0.6, 0.9, 0.6, 0.6, 0.6, 0.3, 0.0, 0.9, 1.0, 0.3, 0.3]
    annotations = {i + 1: ann(at(EXACT[v])) for i, v in enumerate(xs)}
    out = score_results(dict.fromkeys(annotations, "x"), annotations)
    assert [v / 100 for v in out["evalQA"].values()] == xs
    assert out["overall"] == 51.87  # Python 2.7 official script: 51.87
    assert round(100 * math.fsum(xs) / len(xs), 2) == 51.88
    # the torchmetrics metric keeps one running left-to-right sum, so batching does not matter
    gts = [at(EXACT[v]) for v in xs]
    for batch in (1, 3, 16):
        m = VQAAccuracy()
        for i in range(0, len(xs), batch):
            m.update(["x"] * len(xs[i:i + batch]), gts[i:i + batch])
        assert official_aggregate(float(m.score_sum), int(m.count)) == 51.87, batch


def test_python2_rounding_of_exact_halves() -> None:
    # 32 questions of one type, one right: 100 * 1 / 32 = 3.125 exactly. Python 2.7 official: 3.13.
    annotations = {q: ann(["yes"] * 10, "yes/no", "is the") for q in range(32)}
    out = score_results({q: "yes" if q == 0 else "no" for q in range(32)}, annotations)
    assert out["perQuestionType"] == {"is the": 3.13} and out["overall"] == 3.13
    assert official_aggregate(1.0, 32) == 3.13 and round(3.125, 2) == 3.12  # Python 3's round(): halves to even
    assert [py2_round(x) for x in (0.125, -0.125, 2.675, 1 / 3, 0.5, 12.5, 0.005)] == [
        0.13, -0.13, 2.67, 0.33, 0.5, 12.5, 0.01]


def test_position_dependent_values_are_kept() -> None:
    annotations = {1: ann(at([8, 9])), 2: ann(at([5, 6])), 3: ann(at([3, 8, 9]))}
    out = score_results({1: "x", 2: "x", 3: "x"}, annotations)
    assert [vqa_accuracy("x", a["answers"]) for a in annotations.values()] == [
        0.5999999999999999, 0.6000000000000001, 0.8999999999999998]
    assert out["evalQA"] == {1: 60.0, 2: 60.0, 3: 90.0} and out["overall"] == 70.0


def test_normalize_predictions_is_the_metric_mean() -> None:
    results, annotations = synthetic_vqa(1500, seed=5)
    preds = [results[q] for q in annotations]
    scores = batch_vqa_accuracy(preds, [a["answers"] for a in annotations.values()])
    out = score_results(results, annotations, normalize_predictions=True)
    assert out["overall"] == py2_round(100 * plain_sum(scores) / len(scores))
    assert list(out["evalQA"].values()) == [py2_round(100 * s) for s in scores]
    assert out["convention"].startswith("normalized")
    assert out["overall"] > score_results(results, annotations)["overall"]  # raw variants cost points


# ---------------------------------------------------------------- the plain port


TRICKY = [
    ("Yes", ["yes"] * 10, 0.0), ("yes", ["yes"] * 10, 1.0), (" yes\n", ["yes"] * 10, 1.0),
    ("Yes", ["yes"] * 9 + ["no"], 1.0), ("two", ["2"] * 10, 0.0), ("two", ["2"] * 9 + ["3"], 1.0),
    ("1,000-2,000", ["10002000"] * 3 + ["x"] * 7, 0.9), ("1,000", ["1000", "1,000"] + ["x"] * 8, 0.6),
    ("2.", ["2"] * 2 + ["3"] * 8, None), (".5", [".5"] * 4 + ["5"] * 6, 1.0), ("3.5", ["3.5", "35"] * 5, 1.0),
    ("none", ["0"] * 3 + ["1"] * 7, None), ("a", [""] + ["b"] * 9, 0.3), ("", ["a"] * 3 + ["b"] * 7, None),
    ("." * 40 + "x", ["." * 8 + "x"] * 5 + ["y"] * 5, 0.0), ("." * 33, ["." * 33] * 10, 1.0),
    ("." * 33, ["."] + ["x"] * 9, 0.0), ("red - white", ["red white"] * 4 + ["red"] * 6, 1.0),
    ("dont", ["don't"] * 2 + ["do"] * 8, None), ("Im", ["im"] * 3 + ["i'm"] * 7, None),
    ("\u0130", ["i"] * 4 + ["x"] * 6, 1.0), ("ΟΔΟΣ", ["οδοσ"] * 4 + ["x"] * 6, 1.0),
    ("٣.٥", ["٣٥"] * 4 + ["x"] * 6, 1.0), ("x", ["x", "x"], 1 / 3), ("x", ["x", "x", "y"], 4 / 9),
]


@pytest.mark.parametrize("pred, gts, expected", TRICKY)
def test_reference_equals_vqa_accuracy_on_tricky_cases(pred: str, gts: list[str], expected: float | None) -> None:
    assert reference_vqa_accuracy(pred, gts) == vqa_accuracy(pred, gts)
    if expected is not None:
        assert vqa_accuracy(pred, gts) == pytest.approx(expected, abs=1e-15)


def test_reference_single_answer_is_official_zero() -> None:
    assert reference_vqa_accuracy("yes", ["yes"]) == 0.0  # vqa_accuracy deliberately gives 1.0 here
    assert vqa_accuracy("yes", ["yes"]) == 1.0


def test_reference_equals_vqa_accuracy_on_synthetic() -> None:
    results, annotations = synthetic_vqa(3000, seed=11)
    for q, a in annotations.items():
        assert reference_vqa_accuracy(results[q], a["answers"]) == vqa_accuracy(results[q], a["answers"]), q


def test_reference_evaluate_equals_score_results() -> None:
    results, annotations = synthetic_vqa(2000, seed=2)
    ours, ref = score_results(results, annotations), reference_evaluate(results, annotations)
    assert {k: ours[k] for k in ref} == ref
    assert len(ref["perQuestionType"]) > 40 and set(ref["perAnswerType"]) == {"yes/no", "number", "other"}


# ---------------------------------------------------------------- tools/score.py


@pytest.fixture(scope="module")
def score_tool():
    spec = importlib.util.spec_from_file_location("mmfuse_tools_score", REPO / "tools" / "score.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_score_tool_writes_json(tmp_path: Path, score_tool, capsys: pytest.CaptureFixture) -> None:
    results, annotations = synthetic_vqa(300, seed=4)
    rp, ap, qp = write_official_files(results, annotations, tmp_path)
    out = tmp_path / "out" / "scores.json"
    assert score_tool.main([str(rp), str(ap), str(qp), "--output", str(out)]) == 0
    saved = json.loads(out.read_text())
    expected = score_results(results, annotations)
    assert saved["overall"] == expected["overall"] and saved["perQuestionType"] == expected["perQuestionType"]
    assert saved["evalQA"] == {str(q): v for q, v in expected["evalQA"].items()}
    printed = capsys.readouterr().out
    assert f"overall VQA accuracy: {expected['overall']:.2f}" in printed and "yes/no" in printed
    assert score_tool.main([str(rp), str(ap), str(qp), "--normalize-predictions"]) == 0
    assert "normalized" in capsys.readouterr().out


def test_score_tool_refuses_coverage_mismatch(tmp_path: Path, score_tool, capsys: pytest.CaptureFixture) -> None:
    results, annotations = synthetic_vqa(20, seed=4)
    dropped = sorted(results)[3]
    del results[dropped]
    rp, ap, qp = write_official_files(results, annotations, tmp_path)
    assert score_tool.main([str(rp), str(ap), str(qp)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and f"missing question ids 1 ({dropped})" in err
    bad = write(tmp_path, "bad.json", "{")
    assert score_tool.main([str(bad), str(ap), str(qp)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}: invalid JSON") and "Traceback" not in err
