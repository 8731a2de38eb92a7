"""Per-question results of an evaluation, the official aggregate numbers and the files written.

An evaluation directory holds

* ``predictions.json``: ``[{"question_id": ..., "answer": ...}]``, the format of the official
  evaluation server and of ``tools/score.py``;
* ``per_question.jsonl``: one JSON object a line, ``question_id``, ``answer``, ``score`` (the
  unrounded VQA accuracy in [0, 1]), ``gold`` (the most frequent normalised GT answer),
  ``answer_type``, ``question_type``: what ``tools/compare.py`` and the report read;
* ``metrics.json`` (written by the caller with :func:`summarize`'s numbers).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mmfuse.data.schema import QARecord
from mmfuse.errors import CoverageError
from mmfuse.evaluation.bootstrap import DEFAULT_RESAMPLES, DEFAULT_SEED, bootstrap_ci
from mmfuse.metrics.scoring import (
    batch_vqa_accuracy,
    majority_answer,
    official_aggregate,
    official_sum,
)

CONVENTION = (
    "official VQA accuracy (GT-Vision-Lab/VQA vqaEval.py at a013f00: whitespace clean-up, unanimity gate, "
    "leave-one-out over annotators), with model predictions passed through the official normalize_answer first; "
    "percentages are round(100 * mean of unrounded per-question scores, 2)"
)
# Keys that name where a run writes, not what it computes: left out of the config hash.
_UNHASHED = ("name", "output_dir", "run_dir", "resume", "eval")


def config_hash(cfg: Mapping[str, Any]) -> str:
    """sha256 of the resolved config (as canonical JSON), ignoring output locations and ``eval``."""
    payload = {k: v for k, v in cfg.items() if k not in _UNHASHED}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def gold_answer(answers: Sequence[str]) -> str | None:
    """The most frequent normalised GT answer (first seen wins a tie); None when unlabelled."""
    return majority_answer(answers)


def score_predictions(records: Sequence[QARecord], predictions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per record, in record order, scored with the metric's convention.

    Raises:
        CoverageError: a record without a prediction, a prediction for an unknown question, or a
            question predicted twice (the ids are named).
    """
    by_id: dict[Any, str] = {}
    dup = []
    for p in predictions:
        if p["question_id"] in by_id:
            dup.append(p["question_id"])
        by_id.setdefault(p["question_id"], p["answer"])
    known = {r.question_id for r in records}
    missing = [r.question_id for r in records if r.question_id not in by_id]
    extra = [q for q in by_id if q not in known]
    if dup or missing or extra:
        raise CoverageError(f"predictions do not cover the {len(records)} evaluated questions exactly: "
                            f"{len(missing)} missing {missing[:10]}, {len(extra)} unknown {extra[:10]}, "
                            f"{len(dup)} duplicated {dup[:10]}")
    labelled = [r for r in records if r.answers]
    scores = dict(zip((r.question_id for r in labelled),
                      batch_vqa_accuracy([by_id[r.question_id] for r in labelled], [r.answers for r in labelled])))
    return [{"question_id": r.question_id, "answer": by_id[r.question_id], "score": scores.get(r.question_id),
             "gold": gold_answer(r.answers), "answer_type": r.answer_type, "question_type": r.question_type}
            for r in records]


def _group(rows: Sequence[Mapping[str, Any]], field: str) -> dict[str, list[float]]:
    groups: dict[str, list[float]] = {}
    for r in rows:
        if r[field] is not None:
            groups.setdefault(r[field], []).append(r["score"])
    return dict(sorted(groups.items()))


def _pct(lo_hi: tuple[float, float]) -> list[float]:
    return [round(100 * lo_hi[0], 2), round(100 * lo_hi[1], 2)]


def summarize(rows: Sequence[Mapping[str, Any]], resamples: int = DEFAULT_RESAMPLES,
              seed: int = DEFAULT_SEED, level: float = 0.95) -> dict[str, Any]:
    """Official percentages (overall, per answer type, per question type) with bootstrap intervals.

    Sums run left to right in question order, then ``round(100 * sum / n, 2)`` with Python 2's
    rounding, as the official ``evaluate()`` does. Unlabelled rows (``score`` None) are not scored.
    """
    scored = [r for r in rows if r["score"] is not None]
    out: dict[str, Any] = {"num_questions": len(rows), "num_scored": len(scored), "convention": CONVENTION}
    if not scored:
        return out
    scores = [r["score"] for r in scored]
    ci = bootstrap_ci(scores, level, resamples, seed)
    out["overall"] = official_aggregate(official_sum(scores), len(scores))
    out["overall_ci95"] = _pct((ci.low, ci.high))
    out["bootstrap"] = {"resamples": resamples, "seed": seed, "level": level, "unit": "question"}
    for field, key in (("answer_type", "perAnswerType"), ("question_type", "perQuestionType")):
        groups = _group(scored, field)
        out[key] = {t: official_aggregate(official_sum(s), len(s)) for t, s in groups.items()}
        out[key + "Count"] = {t: len(s) for t, s in groups.items()}
        if field == "answer_type":
            out[key + "CI95"] = {t: _pct(_ci(s, level, resamples, seed)) for t, s in groups.items()}
    return out


def _ci(scores: Sequence[float], level: float, resamples: int, seed: int) -> tuple[float, float]:
    iv = bootstrap_ci(scores, level, resamples, seed)
    return iv.low, iv.high


def write_rows(out_dir: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """``predictions.json`` and ``per_question.jsonl`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    preds = [{"question_id": r["question_id"], "answer": r["answer"]} for r in rows]
    (out_dir / "predictions.json").write_text(json.dumps(preds) + "\n")
    with open(out_dir / "per_question.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(dict(r)) + "\n")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``per_question.jsonl`` (errors name the file and line)."""
    rows = []
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{i}: not valid JSON ({e.msg})") from None
                if not isinstance(row, dict) or "question_id" not in row or "score" not in row:
                    raise ValueError(f"{path}:{i}: expected an object with 'question_id' and 'score'")
                rows.append(row)
    return rows


def format_table(accuracy: Mapping[str, Any]) -> str:
    """Overall and per-answer-type accuracy with 95% intervals, as a plain-text table."""
    if "overall" not in accuracy:
        return "no ground-truth answers: predictions written, nothing scored"
    lines = [f"{'answer type':<16}{'n':>8}{'VQA acc':>10}   95% interval"]
    rows = [("overall", accuracy["num_scored"], accuracy["overall"], accuracy["overall_ci95"])]
    rows += [(t, accuracy["perAnswerTypeCount"][t], v, accuracy["perAnswerTypeCI95"][t])
             for t, v in accuracy["perAnswerType"].items()]
    for name, n, v, (lo, hi) in rows:
        lines.append(f"{name:<16}{n:>8}{v:>9.2f}%   [{lo:.2f}, {hi:.2f}]")
    return "\n".join(lines)
