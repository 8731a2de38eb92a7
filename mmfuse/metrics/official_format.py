"""The official VQA file formats (VQAv2 results / annotations / questions JSON) and official numbers, fast.

:func:`score_results` reproduces GT-Vision-Lab/VQA ``vqaEval.py`` (HEAD ``a013f00``, run by Python
2.7) bit for bit: per question :func:`~mmfuse.metrics.vqa.vqa_accuracy`, each distinct (prediction,
answers) pair scored once; per group the unrounded values added left to right in annotation order,
as Python 2's ``sum()`` does (``math.fsum`` and Python 3.12+ ``sum`` compensate and can change the
rounded result), then ``round(100 * total / n, 2)`` with Python 2's rounding (:func:`py2_round`).
Checked against the official script under Python 2.7 on synthetic data and hand-made edge cases.
"""

from __future__ import annotations

import contextlib
import gc
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mmfuse.errors import CoverageError, FormatError
from mmfuse.metrics.rounding import py2_round
from mmfuse.metrics.scoring import batch_vqa_accuracy, vqa_accuracy

__all__ = ["CoverageError", "FormatError", "check_coverage", "load_annotations", "load_results",
           "py2_round", "score_results"]

PathLike = str | Path


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Cyclic GC off meanwhile: building ~10^6 dicts / tuples otherwise runs full collections over and over."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _preview(ids: Iterable[int], limit: int = 10) -> str:
    """``"<count> (<first ids, sorted>, ... (<n> more))"``."""
    s = sorted(ids)
    return f"{len(s)} ({', '.join(map(str, s[:limit]))}{f', ... ({len(s) - limit} more)' if len(s) > limit else ''})"


def _load(path: PathLike, key: str | None) -> list:
    """The entry list of a JSON file: the top level (``key=None``) or ``data[key]``."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise FormatError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise FormatError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    items = data if key is None else data.get(key) if isinstance(data, dict) else None
    if not isinstance(items, list):
        what = f"a JSON object whose {key!r} is a list" if key else "a JSON list of {question_id, answer} objects"
        raise FormatError(f"{path}: expected {what}, got {type(data).__name__}")
    return items


def _field(path: PathLike, where: str, entry: Any, key: str, kind: type) -> Any:
    """``entry[key]``, checked to be a ``kind`` (a ``bool`` is not an ``int``), or a FormatError."""
    if not isinstance(entry, dict):
        raise FormatError(f"{path}: {where} is not a JSON object (got {type(entry).__name__})")
    value = entry.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        got = "missing" if key not in entry else f"{value!r} ({type(value).__name__})"
        raise FormatError(f"{path}: {where} needs {kind.__name__} {key!r}, got {got}")
    return value


_RESULT = {"question_id": int, "answer": str}
_ANNOTATION = {"question_id": int, "answers": list, "answer_type": str, "question_type": str, "image_id": int}
_QUESTION = {"question_id": int, "image_id": int, "question": str}


def _records(path: PathLike, items: list, name: str, spec: dict[str, type]) -> dict[int, list]:
    """question_id -> ``[entry[k] for k in spec]``, type-checked; duplicate ids refused (named)."""
    kinds = list(spec.values())
    out: dict[int, list] = {}
    dups: set[int] = set()
    for i, entry in enumerate(items):
        try:  # fast path: JSON values have exact types (and a bool is not an int)
            values = [entry[k] for k in spec]
            ok = list(map(type, values)) == kinds
        except (KeyError, TypeError):
            ok = False
        if not ok:  # raises, naming the entry and the field
            values = [_field(path, f"{name} {i}", entry, k, t) for k, t in spec.items()]
        if values[0] in out:
            dups.add(values[0])
        out[values[0]] = values
    if dups:
        raise FormatError(f"{path}: duplicate question ids, {_preview(dups)}")
    return out


def _answers(path: PathLike, where: str, raw: list) -> list[str]:
    """The answer strings of an annotation's ``answers`` list."""
    try:
        answers = [a["answer"] for a in raw]
    except (KeyError, TypeError):
        answers = []
    if answers and set(map(type, answers)) == {str}:
        return answers
    if not raw:
        raise FormatError(f"{path}: {where} has an empty 'answers' list")
    return [_field(path, f"{where} answer {j}", a, "answer", str) for j, a in enumerate(raw)]


@_gc_paused()
def load_results(path: PathLike) -> dict[int, str]:
    """question_id -> answer from an official results file ``[{"question_id", "answer"}, ...]``.

    Raises:
        FormatError: bad JSON, not a list, an entry (named by index) without an int ``question_id``
            or a str ``answer``, duplicate ids (named; the official ``loadRes`` keeps the last).
        OSError: the file cannot be read.
    """
    records = _records(path, _load(path, None), "entry", _RESULT)
    return {q: v[1] for q, v in records.items()}


@_gc_paused()
def load_annotations(annotations_path: PathLike, questions_path: PathLike) -> dict[int, dict]:
    """question_id -> ``{"answers": [raw str, ...], "answer_type", "question_type", "image_id", "question"}``.

    In annotation-file order, the order the official ``evaluate()`` sums in.

    Raises:
        FormatError: a malformed file or entry (file and entry index named), an empty ``answers``
            list, duplicate ids, ids in one file only, or an ``image_id`` that differs between them.
        OSError: a file cannot be read.
    """
    apath, qpath = annotations_path, questions_path
    anns = _records(apath, _load(apath, "annotations"), "annotation", _ANNOTATION)
    answers = [_answers(apath, f"annotation {i}", v[1]) for i, v in enumerate(anns.values())]
    ques = _records(qpath, _load(qpath, "questions"), "question", _QUESTION)
    for a, b, pa, pb in ((anns, ques, apath, qpath), (ques, anns, qpath, apath)):
        if a.keys() - b.keys():
            raise FormatError(f"question ids in {pa} but not in {pb}: {_preview(a.keys() - b.keys())}")
    bad = [q for q, v in anns.items() if v[4] != ques[q][1]]
    if bad:
        raise FormatError(f"image_id differs between {apath} and {qpath} for question ids {_preview(bad)}")
    return {q: {"answers": g, "answer_type": v[2], "question_type": v[3], "image_id": v[4], "question": ques[q][2]}
            for (q, v), g in zip(anns.items(), answers)}


def check_coverage(results_ids: Iterable[int], annotated_ids: Iterable[int]) -> None:
    """Raise :class:`CoverageError` (naming the missing and extra ids: counts, first 10 sorted) unless
    the results cover exactly the annotated questions, as the official ``loadRes`` asserts."""
    res, ann = set(results_ids), set(annotated_ids)
    parts = [f"{what} question ids {_preview(ids)}"
             for what, ids in (("missing", ann - res), ("extra (not annotated)", res - ann)) if ids]
    if parts:
        raise CoverageError(f"results do not cover exactly the {len(ann)} annotated questions: {'; '.join(parts)}")


@_gc_paused()
def score_results(results: dict[int, str], annotations: dict[int, dict], normalize_predictions: bool = False) -> dict:
    """The official ``evaluate()`` numbers for every annotated question.

    Args:
        results: question_id -> prediction (:func:`load_results`); must cover exactly ``annotations``.
        annotations: question_id -> ``{"answers", "answer_type", "question_type", ...}``
            (:func:`load_annotations`), in the order to sum in.
        normalize_predictions: ``False``: official, the raw prediction is scored (``vqa_accuracy``);
            ``True``: ``normalize_answer(prediction)`` first (``batch_vqa_accuracy``, the ``VQAAccuracy`` numbers).

    Returns:
        ``{"overall", "perAnswerType": {t: %}, "perQuestionType": {t: %}, "evalQA": {qid: %},
        "num_questions", "convention"}``: two-decimal percentages, rounded as the official script
        does (:func:`~mmfuse.metrics.rounding.py2_round`). One deviation: a question with a single GT answer
        scores as ``vqa_accuracy`` defines it (normalised exact match); the official formula gives 0.

    Raises:
        CoverageError: see :func:`check_coverage`.
    """
    check_coverage(results, annotations)
    if not annotations:
        raise ValueError("score_results: no annotated questions to score")
    keys = [(results[q], tuple(a["answers"])) for q, a in annotations.items()]
    unique = list(dict.fromkeys(keys))  # score each distinct (prediction, answers) pair once
    scores = (batch_vqa_accuracy([p for p, _ in unique], [g for _, g in unique]) if normalize_predictions
              else [vqa_accuracy(p, g) for p, g in unique])
    score_of = dict(zip(unique, scores))
    values = [score_of[k] for k in keys]
    groups = {"perAnswerType": "answer_type", "perQuestionType": "question_type"}
    sums: dict[str, dict[str, list]] = {g: {} for g in groups}
    total = 0.0
    for v, a in zip(values, annotations.values()):  # left to right, in annotation order: Python 2's sum()
        total += v
        for g, field in groups.items():
            acc = sums[g].setdefault(a[field], [0.0, 0])
            acc[0] += v
            acc[1] += 1
    n = len(values)
    rounded = {v: py2_round(100 * v) for v in set(values)}
    return {
        "overall": py2_round(100 * total / n),
        **{g: {t: py2_round(100 * s / c) for t, (s, c) in d.items()} for g, d in sums.items()},
        "evalQA": {q: rounded[v] for q, v in zip(annotations, values)},
        "num_questions": n,
        "convention": "normalized-predictions (mmfuse VQAAccuracy)" if normalize_predictions
        else "official (raw predictions, vqaEval.py a013f00)",
    }
