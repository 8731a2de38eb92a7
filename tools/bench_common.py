"""Helpers shared by the benchmark scripts of tools/ (imported as a sibling module)."""

from __future__ import annotations

import argparse
import shlex
import subprocess
from pathlib import Path
from typing import Iterable

REPO = Path(__file__).resolve().parent.parent


def split_only(parser: argparse.ArgumentParser, args: argparse.Namespace, rows: Iterable[str]) -> None:
    """``--only a b key=value``: argparse hands the key=value words after ``--only`` to it; move them to
    ``args.overrides`` and refuse unknown row names."""
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
