#!/usr/bin/env python
"""Score a VQA results file with the official VQA accuracy (GT-Vision-Lab/VQA vqaEval.py, HEAD a013f00).

    python tools/score.py predictions.json annotations.json questions.json \
        [--normalize-predictions] [--output scores.json]

Files are in the official VQAv2 formats: results ``[{"question_id", "answer"}, ...]``, annotations
``{"annotations": [...]}``, questions ``{"questions": [...]}``. As the official ``loadRes`` does,
the results must cover exactly the annotated questions. By default the raw predictions are scored
(official); ``--normalize-predictions`` applies the official answer normalisation to each
prediction first (the convention of mmfuse's ``VQAAccuracy``). Prints overall, per answer type and
per question type accuracy (percent, two decimals, the official rounding); ``--output`` writes them
with the per-question values (``evalQA``) as JSON. Exit status 2 on a bad file or coverage mismatch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mmfuse.cli import run_tool
from mmfuse.metrics.official_format import (
    CoverageError,
    FormatError,
    load_annotations,
    load_results,
    score_results,
)


def _table(title: str, rows: dict[str, float], counts: dict[str, int]) -> list[str]:
    width = max([len(title)] + [len(t) for t in rows])
    lines = [f"{title:<{width}}  {'VQA acc':>8}  {'questions':>9}"]
    lines += [f"{t:<{width}}  {rows[t]:>8.2f}  {counts[t]:>9}" for t in sorted(rows)]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("predictions", help="results JSON: [{question_id, answer}, ...]")
    p.add_argument("annotations", help="annotations JSON: {annotations: [...]}")
    p.add_argument("questions", help="questions JSON: {questions: [...]}")
    p.add_argument("--normalize-predictions", action="store_true",
                   help="normalise each prediction first (mmfuse VQAAccuracy convention; default: official, raw)")
    p.add_argument("--output", default=None, help="write the scores (with per-question evalQA) to this JSON file")
    args = p.parse_args(argv)
    try:
        results = load_results(args.predictions)
        annotations = load_annotations(args.annotations, args.questions)
        scores = score_results(results, annotations, normalize_predictions=args.normalize_predictions)
    except (FormatError, CoverageError, ValueError, OSError) as e:  # ValueError: e.g. no annotations
        print(f"error: {e}", file=sys.stderr)
        return 2

    counts: dict[str, dict[str, int]] = {"answer_type": {}, "question_type": {}}
    for a in annotations.values():
        for key, c in counts.items():
            c[a[key]] = c.get(a[key], 0) + 1
    print(f"{scores['num_questions']} questions, {scores['convention']}")
    print(f"overall VQA accuracy: {scores['overall']:.2f}\n")
    print("\n".join(_table("answer type", scores["perAnswerType"], counts["answer_type"])) + "\n")
    print("\n".join(_table("question type", scores["perQuestionType"], counts["question_type"])))
    if args.output:
        out = Path(args.output)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(scores, indent=1) + "\n", encoding="utf-8")
        except OSError as e:
            print(f"error: cannot write {out}: {e}", file=sys.stderr)
            return 2
        print(f"\nscores written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
