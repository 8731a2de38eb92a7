"""An ablation grid's bookkeeping and summary (``tools/ablate.py``): axes of ``key=v1,v2`` overrides, their
cartesian product as rows, one training run per (row, seed) as cells, and per row the mean and range over
seeds of the test accuracy (overall and per question type) with the paired-bootstrap difference against a
baseline row.

The difference pairs questions, not seeds: each question's score is first averaged over a row's seeds
(the seeds both rows have), then :func:`mmfuse.evaluation.bootstrap.paired_bootstrap` resamples questions.
Its interval therefore says how sure the *test set* makes the difference of the seed-averaged models; how
far seeds move a row is the range column beside it.

With ``--corrupt`` (:mod:`mmfuse.evaluation.robustness`), each cell's best checkpoint is also evaluated under the
corruptions, and per spec a row gains its relative robustness (area under its accuracy-vs-level curve / level
range) and its effective robustness, ``RR_cell − (RR_base + (clean_cell − clean_base))`` with the baseline row's
RR and clean accuracy averaged over its seeds (so the baseline row's mean is 0): mean and range over seeds.
"""

from __future__ import annotations

import itertools
import re
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from mmfuse.evaluation.bootstrap import DEFAULT_RESAMPLES, DEFAULT_SEED, paired_bootstrap
from mmfuse.evaluation.robustness import effective_robustness

Row = dict[str, str]  # one grid row: {config key: value}, in axis order


def parse_axis(spec: str) -> tuple[str, list[str]]:
    """``"model.fusion.name=concat,gated"`` → ``("model.fusion.name", ["concat", "gated"])``.

    Commas inside brackets belong to one value: ``"model.modalities=[text],[image],[text,image]"`` has three.

    Raises:
        ValueError: no ``=``, an empty key, no value, or unbalanced brackets.
    """
    key, sep, values = spec.partition("=")
    items = [v.strip() for v in _split_top_level(spec, values) if v.strip()] if sep else []
    if not sep or not key.strip() or not items:
        raise ValueError(f"--grid {spec!r}: expected KEY=V1,V2,... (e.g. model.fusion.name=concat,gated)")
    if len(set(items)) != len(items):
        raise ValueError(f"--grid {spec!r}: a value is listed twice")
    return key.strip(), items


def _split_top_level(spec: str, values: str, flag: str = "--grid") -> list[str]:
    """``values`` split on the commas outside ``[...]`` / ``{...}`` (list and dict values of an override)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(values):
        depth += ch in "[{"
        depth -= ch in "]}"
        if depth < 0:
            break
        if ch == "," and depth == 0:
            parts.append(values[start:i])
            start = i + 1
    if depth != 0:
        raise ValueError(f"{flag} {spec!r}: unbalanced brackets")
    return [*parts, values[start:]]


def parse_row(text: str) -> Row:
    """``"model.modalities=[text],optim.lr=1e-4"`` → one row ``{key: value, ...}`` (``tools/ablate.py --row``): items
    separated by commas outside brackets (one argument, so that overrides after it are never taken for the row's).

    Raises:
        ValueError: an item without ``=`` or with an empty key or value, a key given twice, unbalanced brackets.
    """
    specs = [v for v in _split_top_level(text, text, "--row") if v.strip()]
    row: Row = {}
    for spec in specs:
        key, sep, value = (part.strip() for part in spec.partition("="))
        if not sep or not key or not value:
            raise ValueError(f"--row item {spec!r}: expected KEY=VALUE")
        if key in row:
            raise ValueError(f"--row {text!r}: {key!r} given twice")
        row[key] = value
    return row


def expand_grid(axes: Sequence[tuple[str, Sequence[str]]]) -> list[Row]:
    """Every combination of the axes' values, the first axis varying slowest.

    Raises:
        ValueError: a key appears on two axes.
    """
    keys = [k for k, _ in axes]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise ValueError(f"--grid: {', '.join(twice)} given on more than one axis; list its values once: K=V1,V2")
    return [dict(zip(keys, combo)) for combo in itertools.product(*(vals for _, vals in axes))]


def row_label(row: Row) -> str:
    """What a row is called in the table and in ``--baseline``: ``key=value`` pairs joined by spaces."""
    return " ".join(f"{k}={v}" for k, v in row.items())


def row_slug(row: Row) -> str:
    """A folder name for the row's runs: ``<last key part>-<value>`` pairs, filesystem-safe."""
    parts = [f"{k.split('.')[-2] if k.endswith('.name') and '.' in k else k.split('.')[-1]}-{v}"
             for k, v in row.items()]
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", "__".join(parts))


def find_row(rows: Sequence[Row], label: str) -> Row:
    """The row whose :func:`row_label` (or, with one axis, whose value) is ``label``.

    Raises:
        ValueError: no such row; the message lists the rows.
    """
    for row in rows:
        if label in (row_label(row), *([next(iter(row.values()))] if len(row) == 1 else [])):
            return row
    raise ValueError(f"--baseline {label!r} is not a row of the grid; rows: "
                     + "; ".join(row_label(r) for r in rows))


def _span(values: Sequence[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}


def _seed_mean_scores(cells: Sequence[Mapping[str, Any]]) -> dict[Any, float]:
    """Question id → its score averaged over the cells (seeds); only questions scored in every cell."""
    per_cell = [{r["question_id"]: r["score"] for r in c["per_question"] if r.get("score") is not None}
                for c in cells]
    shared = set(per_cell[0]).intersection(*per_cell[1:])
    return {q: sum(p[q] for p in per_cell) / len(per_cell) for q in per_cell[0] if q in shared}


def summarize_row(cells: Sequence[Mapping[str, Any]], baseline: Sequence[Mapping[str, Any]] | None,
                  resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """One table row from its cells (one per seed).

    Each cell: ``seed``, ``metrics`` (the run's ``metrics.json``) and ``per_question`` (its
    ``eval_test/per_question.jsonl`` rows). ``baseline``: the baseline row's cells, or None for the baseline
    itself. Accuracies in % (the official scorer's, from each run's metrics); the difference against the
    baseline over the seeds both rows have, in points, with its 95% paired-bootstrap interval and p-value.
    """
    acc = [c["metrics"]["test_accuracy"] for c in cells]
    types = sorted({t for a in acc for t in a.get("perQuestionType", {})})
    out: dict[str, Any] = {
        "seeds": [c["seed"] for c in cells],
        "overall": _span([a["overall"] for a in acc]),
        "per_question_type": {t: _span([a["perQuestionType"][t] for a in acc if t in a.get("perQuestionType", {})])
                              for t in types},
        "per_answer_type": {t: _span([a["perAnswerType"][t] for a in acc if t in a.get("perAnswerType", {})])
                            for t in sorted({t for a in acc for t in a.get("perAnswerType", {})})},
        "parameters": cells[0]["metrics"].get("parameters", {}).get("total"),
        "samples_per_s": statistics.fmean(c["metrics"]["train_samples_per_s"] for c in cells),
        "wall_seconds": statistics.fmean(c["metrics"]["wall_seconds"] for c in cells),
        "vs_baseline": None,
    }
    if baseline is not None:
        seeds = sorted(set(out["seeds"]) & {c["seed"] for c in baseline})
        if seeds:
            mine = _seed_mean_scores([c for c in cells if c["seed"] in seeds])
            base = _seed_mean_scores([c for c in baseline if c["seed"] in seeds])
            qids = [q for q in mine if q in base]
            if qids:
                iv, p = paired_bootstrap([base[q] for q in qids], [mine[q] for q in qids], resamples=resamples,
                                         seed=seed)
                out["vs_baseline"] = {"diff": 100 * iv.estimate, "ci": [100 * iv.low, 100 * iv.high], "p": p,
                                      "seeds": seeds, "questions": len(qids)}
    return out


def _maybe_span(values: Sequence[float | None]) -> dict[str, float] | None:
    kept = [v for v in values if v is not None]
    return _span(kept) if kept else None


def summarize_robustness(cells: Sequence[Mapping[str, Any]], baseline: Sequence[Mapping[str, Any]],
                         specs: Sequence[str]) -> dict[str, Any]:
    """Per spec, a row's robustness over its cells (seeds): the accuracy curve (mean, min, max per level), the
    relative robustness and the effective robustness against ``baseline``'s cells (its seeds' mean RR and clean
    accuracy), each as mean / min / max. Each cell's ``robustness`` is its evaluation's ``metrics["robustness"]``."""
    out: dict[str, Any] = {}
    for spec in specs:
        blocks = [c["robustness"][spec] for c in cells]
        base = [c["robustness"][spec] for c in baseline]
        base_rr = [b["relative_robustness"] for b in base if b["relative_robustness"] is not None]
        base_clean = [b["clean_accuracy"] for b in base if b["clean_accuracy"] is not None]
        effective: list[float | None] = []
        for b in blocks:
            known = b["relative_robustness"] is not None and b["clean_accuracy"] is not None
            effective.append(effective_robustness(b["relative_robustness"], b["clean_accuracy"],
                                                  statistics.fmean(base_rr), statistics.fmean(base_clean))
                             if known and base_rr and base_clean else None)
        per_level = list(zip(*(b["accuracy"] for b in blocks)))
        spans = [_maybe_span(v) for v in per_level]
        out[spec] = {"levels": blocks[0]["levels"],
                     "accuracy": {k: [None if sp is None else sp[k] for sp in spans] for k in ("mean", "min", "max")},
                     "relative": _maybe_span([b["relative_robustness"] for b in blocks]),
                     "effective": _maybe_span(effective)}
    return out


def _fmt_span(s: Mapping[str, float] | None, n: int) -> str:
    if not s:
        return ""
    return f"{s['mean']:.2f}" if n == 1 else f"{s['mean']:.2f} ({s['min']:.2f}–{s['max']:.2f})"


def format_markdown(summaries: Sequence[Mapping[str, Any]], baseline_label: str) -> str:
    """The ablation table: one line per row; accuracies in %, mean over seeds with the range in brackets."""
    types = sorted({t for s in summaries for t in s["per_question_type"]})
    atypes = _answer_types(summaries)
    specs = _specs(summaries)
    head = ["row", "seeds", "overall", *[f"{t} (answer type)" for t in atypes], *types,
            f"Δ vs {baseline_label} [95% CI]", *[f"{kind} {spec}" for spec in specs for kind in ("RR", "ER")],
            "parameters", "samples/s", "wall (min)"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for s in summaries:
        n = len(s["seeds"])
        d = s["vs_baseline"]
        delta = "baseline" if s["label"] == baseline_label else (
            "" if d is None else f"{d['diff']:+.2f} [{d['ci'][0]:+.2f}, {d['ci'][1]:+.2f}]")
        params = "" if s["parameters"] is None else f"{s['parameters'] / 1e6:.2f} M"
        cells = [s["label"], ",".join(map(str, s["seeds"])), _fmt_span(s["overall"], n),
                 *[_fmt_span(s.get("per_answer_type", {}).get(t), n) for t in atypes],
                 *[_fmt_span(s["per_question_type"].get(t), n) for t in types], delta,
                 *[_fmt_span(((s.get("robustness") or {}).get(spec) or {}).get(kind), n) for spec in specs
                   for kind in ("relative", "effective")], params,
                 f"{s['samples_per_s']:.0f}", f"{s['wall_seconds'] / 60:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _answer_types(summaries: Sequence[Mapping[str, Any]]) -> list[str]:
    """The answer types of the table (e.g. Sort-of-CLEVR's relational / non-relational), sorted."""
    return sorted({t for s in summaries for t in s.get("per_answer_type", {})})


def _specs(summaries: Sequence[Mapping[str, Any]]) -> list[str]:
    """The corruption specs of the table, in first-seen order."""
    return list(dict.fromkeys(spec for s in summaries for spec in (s.get("robustness") or {})))


def csv_rows(summaries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Flat dicts for a CSV writer: one per row, every number in its own column (robustness: ``rr_<spec>_mean``,
    ``er_<spec>_min``, ...)."""
    types = sorted({t for s in summaries for t in s["per_question_type"]})
    specs = _specs(summaries)
    out = []
    for s in summaries:
        d = s["vs_baseline"] or {}
        row: dict[str, Any] = {"row": s["label"], "seeds": " ".join(map(str, s["seeds"]))}
        answer = [(f"answer_type:{t}", s.get("per_answer_type", {}).get(t)) for t in _answer_types(summaries)]
        for name, span in [("overall", s["overall"]), *answer, *[(t, s["per_question_type"].get(t)) for t in types]]:
            for stat in ("mean", "min", "max"):
                row[f"{name}_{stat}"] = None if span is None else round(span[stat], 4)
        for spec in specs:
            block = (s.get("robustness") or {}).get(spec) or {}
            for kind, key in (("rr", "relative"), ("er", "effective")):
                for stat in ("mean", "min", "max"):
                    row[f"{kind}_{spec}_{stat}"] = None if block.get(key) is None else round(block[key][stat], 4)
        row.update({"diff_vs_baseline": d.get("diff"), "diff_ci_low": (d.get("ci") or [None])[0],
                    "diff_ci_high": (d.get("ci") or [None, None])[1], "diff_p": d.get("p"),
                    "parameters": s["parameters"], "samples_per_s": round(s["samples_per_s"], 1),
                    "wall_seconds": round(s["wall_seconds"], 1)})
        out.append(row)
    return out
