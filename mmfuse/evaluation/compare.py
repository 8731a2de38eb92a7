"""Compare two evaluated runs question by question: each run's accuracy with its interval, and the
paired difference (run B - run A) with a paired-bootstrap interval over the shared questions,
overall and per answer type."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mmfuse.evaluation.bootstrap import DEFAULT_RESAMPLES, DEFAULT_SEED, bootstrap_ci, paired_bootstrap


def locate_rows(path: str | Path, split: str = "test") -> Path:
    """``per_question.jsonl`` of a run directory, an evaluation directory, or the file itself."""
    p = Path(path)
    for candidate in (p, p / "per_question.jsonl", p / f"eval_{split}" / "per_question.jsonl"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{path}: no per_question.jsonl (looked in {p}, {p / f'eval_{split}'}); "
                            f"train the run or run tools/evaluate.py on it first")


def _scored(rows: Sequence[Mapping[str, Any]]) -> dict[Any, Mapping[str, Any]]:
    return {r["question_id"]: r for r in rows if r.get("score") is not None}


def _pct(x: float) -> float:
    return round(100 * x, 2)


def compare_rows(rows_a: Sequence[Mapping[str, Any]], rows_b: Sequence[Mapping[str, Any]],
                 resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED, level: float = 0.95) -> dict[str, Any]:
    """Both runs' accuracies (own questions) and their paired differences (shared questions), in %.

    Raises:
        ValueError: the runs share no scored question.
    """
    a, b = _scored(rows_a), _scored(rows_b)
    shared = [q for q in a if q in b]
    if not shared:
        raise ValueError("the two runs share no scored question: nothing to compare pairwise")
    out: dict[str, Any] = {"runs": {}, "shared_questions": len(shared),
                           "bootstrap": {"resamples": resamples, "seed": seed, "level": level}}
    for name, rows in (("a", a), ("b", b)):
        iv = bootstrap_ci([r["score"] for r in rows.values()], level, resamples, seed)
        out["runs"][name] = {"n": iv.n, "acc": _pct(iv.estimate), "ci": [_pct(iv.low), _pct(iv.high)]}

    def diff(qids: list[Any]) -> dict[str, Any]:
        iv, p = paired_bootstrap([a[q]["score"] for q in qids], [b[q]["score"] for q in qids], level, resamples, seed)
        acc_a = sum(a[q]["score"] for q in qids) / len(qids)
        return {"n": len(qids), "a": _pct(acc_a), "b": _pct(acc_a + iv.estimate), "diff": _pct(iv.estimate),
                "ci": [_pct(iv.low), _pct(iv.high)], "p": round(p, 4)}

    out["overall"] = diff(shared)
    types: dict[str, list[Any]] = {}
    for q in shared:
        if a[q].get("answer_type") is not None:
            types.setdefault(a[q]["answer_type"], []).append(q)
    out["per_answer_type"] = {t: diff(qs) for t, qs in sorted(types.items())}
    return out


def format_comparison(result: Mapping[str, Any], name_a: str, name_b: str) -> str:
    """A plain-text report of :func:`compare_rows`."""
    lvl = int(round(100 * result["bootstrap"]["level"]))
    lines = [f"A = {name_a}", f"B = {name_b}", "", f"{'run':<6}{'n':>8}{'VQA acc':>10}   {lvl}% interval"]
    for key in ("a", "b"):
        r = result["runs"][key]
        lines.append(f"{key.upper():<6}{r['n']:>8}{r['acc']:>9.2f}%   [{r['ci'][0]:.2f}, {r['ci'][1]:.2f}]")
    lines += ["", f"paired difference B - A over {result['shared_questions']} shared questions "
                  f"({result['bootstrap']['resamples']} paired bootstrap resamples, "
                  f"seed {result['bootstrap']['seed']}):",
              f"{'':<16}{'n':>8}{'A':>9}{'B':>9}{'B - A':>9}   {lvl}% interval     p"]
    for name, d in [("overall", result["overall"]), *result["per_answer_type"].items()]:
        lines.append(f"{name:<16}{d['n']:>8}{d['a']:>8.2f}%{d['b']:>8.2f}%{d['diff']:>+8.2f}   "
                     f"[{d['ci'][0]:+.2f}, {d['ci'][1]:+.2f}]  {d['p']:.3f}")
    if result["runs"]["a"]["n"] != result["shared_questions"] or result["runs"]["b"]["n"] != result["shared_questions"]:
        lines.append("note: the runs were scored on different question sets; differences use the shared ones only")
    return "\n".join(lines)
