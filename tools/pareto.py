#!/usr/bin/env python
"""Measure the trade-off between two tasks: a static loss-weight sweep and adaptive weightings.

    python tools/pareto.py --config CONFIG --tasks A B [--weights 0.1,0.25,0.5,0.75,0.9]
                           [--strategies uncertainty dwa gradnorm pcgrad] [--output DIR] [--force]
                           [key=value ...]

For each w: a run with tasks.active=[A,B], loss.weighting=static, tasks.A.weight=w and
tasks.B.weight=1-w (w is the share of A), in DIR/static_w<w>/. Then one run per strategy with
loss.weighting=<strategy> and the configured task weights, in DIR/<strategy>/. Everything else comes
from --config and the key=value overrides (run_dir, tasks.active, loss.weighting are set here).
A run whose folder already holds metrics.json from the same config is reused unless --force.
Writes DIR/pareto.json and DIR/pareto.png (default DIR: runs/pareto_<A>_<B>) and prints a table.
Exit codes: 0 done, 1 a run failed (named), 2 bad arguments or config.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mmfuse.cli import run_tool
from mmfuse.evaluation.pareto import RunFailed, check_request, format_table, parse_weights, sweep

DEFAULT_WEIGHTS = "0.1,0.25,0.5,0.75,0.9"


def split_overrides(args: argparse.Namespace) -> None:
    """Move key=value items swallowed by ``--tasks`` / ``--strategies`` into the overrides.

    Those options take several values, so argparse gives them every word that follows, overrides
    included; task and weighting names never contain '='.
    """
    for name in ("tasks", "strategies"):
        values = getattr(args, name)
        args.overrides = [v for v in values if "=" in v] + args.overrides
        setattr(args, name, [v for v in values if "=" not in v])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", required=True, help="experiment YAML (repeatable, merged in order)")
    p.add_argument("--tasks", nargs="+", required=True, help="the two tasks A B")
    p.add_argument("--weights", default=DEFAULT_WEIGHTS, help=f"weights w of A, comma list (default {DEFAULT_WEIGHTS})")
    p.add_argument("--strategies", nargs="*", default=[], help="adaptive loss weightings to compare")
    p.add_argument("--output", default=None, help="output folder (default runs/pareto_<A>_<B>)")
    p.add_argument("--force", action="store_true", help="retrain runs that already finished")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    args = p.parse_args(argv)
    split_overrides(args)
    try:
        weights = parse_weights(args.weights)
        check_request(args.tasks, weights, args.strategies, args.overrides)
        output = Path(args.output or f"runs/pareto_{args.tasks[0]}_{args.tasks[1]}")
        result = sweep(args.config, args.overrides, args.tasks, weights, args.strategies, output, args.force)
    except ValueError as e:  # ConfigError and StaleRun are ValueErrors: the request, not a run, is wrong
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RunFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(format_table(result))
    print(f"results: {output / 'pareto.json'}\nplot:    {output / 'pareto.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
