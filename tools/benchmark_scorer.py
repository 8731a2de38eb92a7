#!/usr/bin/env python
"""Scorer speed: ``score_results`` vs the plain line-by-line port of the official ``evaluate()``.

Both score the same synthetic VQAv2-like data (``mmfuse.metrics.synthetic``; VQAv2 val has 214k
questions with 10 answers each). Rounds alternate (ours, plain, ours, ...) so machine noise hits
both; the answer-normalisation cache is cleared before each of our rounds, so every round starts
cold. Every round's per-question values and overall / per-type numbers must be identical to the
plain port's, or the run fails. Prints the medians and their ratio, plus one end-to-end timing of
loading the official JSON files and scoring them.

    python tools/benchmark_scorer.py [--questions 214000] [--rounds 3] [--seed 0] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mmfuse.cli import run_tool
from mmfuse.metrics.official_format import load_annotations, load_results, score_results
from mmfuse.metrics.reference import reference_evaluate
from mmfuse.metrics.scoring import normalize_answer
from mmfuse.metrics.synthetic import synthetic_vqa, write_official_files

_KEYS = ("overall", "perAnswerType", "perQuestionType", "evalQA")


def _timed(fn: Callable[[], dict]) -> tuple[float, dict]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _check_identical(ours: dict, plain: dict) -> None:
    for k in _KEYS:
        if ours[k] != plain[k]:
            if isinstance(ours[k], dict):
                diff = [t for t in plain[k] if ours[k].get(t) != plain[k][t]][:5]
                detail = ", ".join(f"{t!r}: ours {ours[k].get(t)} vs plain {plain[k][t]}" for t in diff)
            else:
                detail = f"ours {ours[k]} vs plain {plain[k]}"
            raise AssertionError(f"{k} differs from the plain port: {detail}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--questions", type=int, default=214_000, help="number of questions (VQAv2 val: 214k)")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds of each scorer")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the timings and numbers here")
    args = p.parse_args(argv)
    if args.questions < 1 or args.rounds < 1:
        print("error: --questions and --rounds must be positive", file=sys.stderr)
        return 2

    try:
        return _run(args)
    except AssertionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    t_gen, (results, annotations) = _timed(lambda: synthetic_vqa(args.questions, args.seed))
    print(f"{args.questions} synthetic questions (seed {args.seed}) generated in {t_gen:.1f}s")
    ours_s: list[float] = []
    plain_s: list[float] = []
    reference: dict[str, Any] = {}
    for r in range(args.rounds):
        normalize_answer.cache_clear()
        t, ours = _timed(lambda: score_results(results, annotations))
        ours_s.append(t)
        t, plain = _timed(lambda: reference_evaluate(results, annotations))
        plain_s.append(t)
        _check_identical(ours, plain)
        if reference:
            _check_identical(ours, reference)
        reference = plain
        print(f"round {r + 1}/{args.rounds}: ours {ours_s[-1]:.3f}s, plain port {plain_s[-1]:.3f}s "
              "(numbers identical)", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        rp, ap, qp = write_official_files(results, annotations, tmp)
        normalize_answer.cache_clear()
        t_files, files_out = _timed(lambda: score_results(load_results(rp), load_annotations(ap, qp)))
    _check_identical(files_out, reference)

    med_ours, med_plain = statistics.median(ours_s), statistics.median(plain_s)
    print(f"\nmedian over {args.rounds} rounds: ours {med_ours:.3f}s, plain port {med_plain:.3f}s, "
          f"ratio {med_plain / med_ours:.1f}x")
    print(f"end to end (load the three JSON files + score), once: {t_files:.3f}s")
    print(f"overall {reference['overall']}, per answer type {reference['perAnswerType']}")
    if args.json:
        summary = {
            "questions": args.questions, "seed": args.seed, "rounds": args.rounds,
            "ours_s": ours_s, "plain_s": plain_s, "median_ours_s": med_ours, "median_plain_s": med_plain,
            "ratio": med_plain / med_ours, "end_to_end_s": t_files, "generate_s": t_gen,
            "overall": reference["overall"], "perAnswerType": reference["perAnswerType"],
            "python": platform.python_version(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
        }
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        print(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
