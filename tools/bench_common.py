"""Helpers shared by the benchmark scripts of tools/ (imported as a sibling module)."""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def seeds_arg(value: str) -> int | str:
    """``--seeds`` words: an integer, or a ``key=value`` override that argparse's ``nargs="+"`` swallowed
    (``--seeds 0 1 2 model.fusion.name=concat``); :func:`split_seeds` moves those to the overrides."""
    if "=" in value:
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid seed {value!r}: expected an integer") from None


def add_seeds_arg(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    """``--seeds N [N ...]`` (default ``[0]``), tolerant of overrides written right after it."""
    parser.add_argument("--seeds", type=seeds_arg, nargs="+", default=[0], help=help)


def split_seeds(args: argparse.Namespace) -> None:
    """Move the ``key=value`` words :func:`seeds_arg` let through from ``args.seeds`` to ``args.overrides``."""
    args.overrides += [s for s in args.seeds if isinstance(s, str)]
    args.seeds = [s for s in args.seeds if isinstance(s, int)]


def split_only(parser: argparse.ArgumentParser, args: argparse.Namespace, rows: Iterable[str]) -> None:
    """``--only a b key=value``: argparse hands the key=value words after ``--only`` to it; move them to
    ``args.overrides`` and refuse unknown row names. Also splits ``--seeds`` the same way (:func:`split_seeds`)."""
    if isinstance(getattr(args, "seeds", None), list):
        split_seeds(args)
    if not args.only:
        return
    args.overrides += [o for o in args.only if "=" in o]
    args.only = [o for o in args.only if "=" not in o]
    rows = list(rows)
    unknown = sorted(set(args.only) - set(rows))
    if unknown:
        parser.error(f"unknown row(s) {unknown}; rows: {', '.join(rows)}")


def run_logged(cmd: list[str], what: str) -> str:
    """Print ``cmd`` as a user would type it, run it in the repository, exit with its output on failure.
    Returns the printed command."""
    shown = shlex.join(["python", *cmd[1:]])
    print("$", shown, flush=True)
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return shown


def sweep(out: Path, ids: Sequence[str], seeds: Sequence[Any], only: Sequence[str] | None,
          run: Callable[[str, Any], dict], table: Callable[[list[dict]], str], signature: Any = None,
          rerun: bool = False) -> list[dict]:
    """Run ``run(row, seed)`` for every row id (all, or those in ``only``) and seed. The runs are kept in
    ``<out>/table.json`` and the table in ``<out>/table.md``, both rewritten after every run, so a sweep that
    stops (killed, machine gone) resumes where it stopped: a (row, seed) already in ``table.json`` with the same
    ``signature`` (the overrides every row shares) is read back, not re-run; ``rerun=True`` runs it again and
    replaces it. Each run dict has ``id`` and ``seed``."""
    out.mkdir(parents=True, exist_ok=True)
    done_path = out / "table.json"
    rows = json.loads(done_path.read_text()) if done_path.is_file() else []
    order = list(ids)
    sig = json.loads(json.dumps(signature))  # as it reads back from table.json (tuples become lists)
    for row in order:
        if only and row not in only:
            continue
        for seed in seeds:
            done = [r for r in rows if (r.get("id"), r.get("seed")) == (row, seed)]
            if done and not rerun and done[0].get("signature") == sig:
                print(f"row {row!r} seed {seed}: done, read back from {done_path} (--rerun runs it again)",
                      flush=True)
                continue
            result = {**run(row, seed), "signature": sig}
            rows = [r for r in rows if (r.get("id"), r.get("seed")) != (row, seed)] + [result]
            rows.sort(key=lambda r: (order.index(r["id"]) if r.get("id") in order else len(order),
                                     r.get("seed") or 0))
            done_path.write_text(json.dumps(rows, indent=2))
            (out / "table.md").write_text(table(rows))
        print(table(rows), flush=True)
    return rows


def add_sweep_args(parser: argparse.ArgumentParser) -> None:
    """``--rerun``: the flag every sweep tool shares."""
    parser.add_argument("--rerun", action="store_true",
                        help="run the selected rows again even when table.json already has them")
