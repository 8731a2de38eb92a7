"""Per-question rows, official aggregates with intervals, coverage errors, config hash."""

import json
from pathlib import Path

import pytest

from mmfuse.data.schema import QARecord
from mmfuse.evaluation.results import (
    CoverageError,
    config_hash,
    format_table,
    gold_answer,
    read_rows,
    score_predictions,
    summarize,
    write_rows,
)

TEN = ("2",) * 1 + ("3",) * 9  # "2" matches 1 annotator -> 0.3


def records() -> list[QARecord]:
    return [
        QARecord(1, "i1", "how many?", TEN, "number", "how many"),
        QARecord(2, "i1", "is it red?", ("yes",) * 10, "yes/no", "is the"),
        QARecord(3, "i2", "is it blue?", ("no",) * 9 + ("yes",), "yes/no", "is the"),
        QARecord(4, "i2", "what?", (), None, None),  # unlabelled: predicted, not scored
    ]


def preds(answers: list[str]) -> list[dict]:
    return [{"question_id": q, "answer": a} for q, a in zip((1, 2, 3, 4), answers)]


def test_rows_and_official_aggregates() -> None:
    rows = score_predictions(records(), preds(["two", "Yes", "yes", "x"]))
    assert [r["score"] for r in rows] == [pytest.approx(0.3), 1.0, pytest.approx(0.3), None]
    assert [r["gold"] for r in rows] == ["3", "yes", "no", None]
    s = summarize(rows, resamples=200)
    assert s["num_questions"] == 4 and s["num_scored"] == 3
    assert s["overall"] == round(100 * 1.6 / 3, 2) == 53.33
    assert s["perAnswerType"] == {"number": 30.0, "yes/no": 65.0}
    assert s["perAnswerTypeCount"] == {"number": 1, "yes/no": 2}
    assert s["perQuestionType"] == {"how many": 30.0, "is the": 65.0}
    lo, hi = s["overall_ci95"]
    assert 30.0 <= lo <= s["overall"] <= hi <= 100.0
    assert s["perAnswerTypeCI95"]["number"] == [30.0, 30.0]
    assert s["bootstrap"] == {"resamples": 200, "seed": 0, "level": 0.95, "unit": "question"}
    table = format_table(s)
    assert "overall" in table and "53.33%" in table and "yes/no" in table


def test_unlabelled_only() -> None:
    rows = score_predictions(records()[3:], preds(["x"])[:1] and [{"question_id": 4, "answer": "x"}])
    s = summarize(rows)
    assert s["num_scored"] == 0 and "overall" not in s and "nothing scored" in format_table(s)


@pytest.mark.parametrize("mutate, match", [
    (lambda p: p[:3], r"1 missing \[4\]"),
    (lambda p: p + [{"question_id": 99, "answer": "x"}], r"1 unknown \[99\]"),
    (lambda p: p + [{"question_id": 2, "answer": "no"}], r"1 duplicated \[2\]"),
])
def test_coverage_is_exact(mutate, match: str) -> None:
    with pytest.raises(CoverageError, match=match):
        score_predictions(records(), mutate(preds(["2", "yes", "no", "x"])))


def test_files_round_trip(tmp_path: Path) -> None:
    rows = score_predictions(records(), preds(["3", "yes", "no", "x"]))
    write_rows(tmp_path, rows)
    assert json.loads((tmp_path / "predictions.json").read_text()) == preds(["3", "yes", "no", "x"])
    assert read_rows(tmp_path / "per_question.jsonl") == rows
    (tmp_path / "bad.jsonl").write_text('{"question_id": 1, "score": 1.0}\n{oops\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2"):
        read_rows(tmp_path / "bad.jsonl")


def test_gold_answer_is_the_normalised_majority() -> None:
    assert gold_answer(["Two", "2", "3"]) == "2" and gold_answer(["a", "b"]) == "" and gold_answer([]) is None


def test_config_hash_ignores_output_locations() -> None:
    cfg = {"seed": 0, "optim": {"lr": 1e-3}, "run_dir": "a", "output_dir": "runs", "name": "x",
           "eval": {"split": "test"}}
    moved = {**cfg, "run_dir": "b", "eval": {"split": "val"}, "name": "y"}
    assert config_hash(cfg) == config_hash(moved)
    assert config_hash(cfg) != config_hash({**cfg, "optim": {"lr": 2e-3}})


def test_evaluation_numbers_equal_score_py_numbers() -> None:
    """evaluate's metrics.json and tools/score.py --normalize-predictions agree to the last digit."""
    from mmfuse.metrics.official_format import score_results
    from mmfuse.metrics.synthetic import synthetic_vqa

    results, annotations = synthetic_vqa(3000, seed=5)
    recs = [QARecord(q, "img", "q?", tuple(a["answers"]), a["answer_type"], a["question_type"])
            for q, a in annotations.items()]
    rows = score_predictions(recs, [{"question_id": q, "answer": results[q]} for q in annotations])
    ours, official = summarize(rows, resamples=10), score_results(results, annotations, normalize_predictions=True)
    assert ours["overall"] == official["overall"]
    assert ours["perAnswerType"] == official["perAnswerType"]
    assert ours["perQuestionType"] == official["perQuestionType"]
