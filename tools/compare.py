#!/usr/bin/env python
"""Compare two evaluated runs on the questions they share, with paired-bootstrap intervals.

    python tools/compare.py RUN_A RUN_B [--split test] [--resamples 1000] [--seed 0] [--json out.json]

RUN_A / RUN_B: a run directory (its eval_<split>/ is used), an evaluation directory, or a
per_question.jsonl file. Prints each run's VQA accuracy with its 95% interval, then the
difference B - A overall and per answer type with a paired-bootstrap interval and p-value.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mmfuse.cli import run_tool
from mmfuse.evaluation.compare import compare_rows, format_comparison, locate_rows
from mmfuse.evaluation.results import read_rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_a")
    p.add_argument("run_b")
    p.add_argument("--split", default="test", help="which eval_<split>/ of a run directory (default test)")
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--level", type=float, default=0.95)
    p.add_argument("--json", default=None, help="also write the comparison as JSON here")
    args = p.parse_args(argv)
    try:
        paths = [locate_rows(r, args.split) for r in (args.run_a, args.run_b)]
        result = compare_rows(read_rows(paths[0]), read_rows(paths[1]), args.resamples, args.seed, args.level)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_comparison(result, str(paths[0]), str(paths[1])))
    if args.json:
        Path(args.json).write_text(json.dumps({"a": str(paths[0]), "b": str(paths[1]), **result}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
