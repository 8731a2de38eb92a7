"""tools/compare.py: per-run intervals, paired differences over shared questions, per-type rows."""

import json
import sys
from pathlib import Path

import pytest

from mmfuse.evaluation.compare import compare_rows, locate_rows
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
import compare as compare_tool


def rows(scores: list[float], types: list[str], start: int = 0) -> list[dict]:
    return [{"question_id": start + i, "answer": "x", "score": s, "gold": "x", "answer_type": t, "question_type": None}
            for i, (s, t) in enumerate(zip(scores, types))]


def write(path: Path, rs: list[dict]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "per_question.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rs))
    return path


def test_paired_difference_and_per_type() -> None:
    types = ["yes/no"] * 6 + ["other"] * 4
    a = rows([1, 1, 0, 0, 1, 0, 1, 0.3, 0, 0], types)
    b = rows([1, 1, 1, 0, 1, 0, 1, 0.6, 1, 0], types)
    r = compare_rows(a, b, resamples=300)
    assert r["runs"]["a"]["acc"] == 43.0 and r["runs"]["b"]["acc"] == 66.0 and r["shared_questions"] == 10
    assert r["overall"]["diff"] == 23.0 and r["overall"]["ci"][0] >= 0.0  # B never worse on any question
    assert r["per_answer_type"]["yes/no"]["diff"] == pytest.approx(16.67)
    assert r["per_answer_type"]["other"]["diff"] == pytest.approx(32.5)
    assert r["per_answer_type"]["other"]["n"] == 4


def test_only_shared_questions_are_paired() -> None:
    a = rows([1, 0, 1], ["t"] * 3)
    b = rows([1, 1, 1, 1], ["t"] * 4, start=1)  # ids 1..4; shared: 1, 2
    r = compare_rows(a, b, resamples=100)
    assert r["shared_questions"] == 2 and r["overall"]["a"] == 50.0 and r["overall"]["b"] == 100.0
    assert r["runs"]["b"]["n"] == 4
    with pytest.raises(ValueError, match="share no"):
        compare_rows(a, rows([1.0], ["t"], start=50))


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    types = ["yes/no"] * 5 + ["other"] * 5
    run_a = tmp_path / "run_a"
    write(run_a / "eval_test", rows([1, 0] * 5, types))
    eval_b = write(tmp_path / "eval_b", rows([1, 1] * 5, types))
    assert locate_rows(run_a) == run_a / "eval_test" / "per_question.jsonl"
    out_json = tmp_path / "cmp.json"
    assert compare_tool.main([str(run_a), str(eval_b), "--json", str(out_json), "--resamples", "200"]) == 0
    text = capsys.readouterr().out
    assert "paired difference B - A over 10 shared questions" in text and "+50.00" in text and "yes/no" in text
    assert json.loads(out_json.read_text())["overall"]["diff"] == 50.0
    assert compare_tool.main([str(run_a), str(tmp_path / "nowhere")]) == 2
    assert "no per_question.jsonl" in capsys.readouterr().err
