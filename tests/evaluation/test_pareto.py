"""Pareto front of two tasks: the front itself, the sweep CLI end to end, and its argument checks."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmfuse.evaluation.pareto import pareto_front, plan_runs
from tests.conftest import REPO, TINY, jsonl_overrides


def load_tool():
    """tools/ is not a package: load the CLI module from its file (no subprocess start-up)."""
    spec = importlib.util.spec_from_file_location("pareto_tool", REPO / "tools" / "pareto.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.mark.parametrize("points, front", [
    ([(0.5, 0.5)], [0]),
    ([(0.1, 0.9), (0.5, 0.5), (0.4, 0.4), (0.9, 0.1)], [0, 1, 3]),  # (0.4, 0.4) dominated by (0.5, 0.5)
    ([(0.5, 0.2), (0.5, 0.6)], [1]),                                  # same x, higher y wins
    ([(0.3, 0.7), (0.3, 0.7), (0.2, 0.2)], [0, 1]),                   # equal copies: both kept
    ([(0.1, 0.9), (0.2, 0.8), (0.3, 0.7)], [0, 1, 2]),                # anti-diagonal line: all on the front
    ([(0.1, 0.1), (0.2, 0.2), (0.3, 0.3)], [2]),                      # increasing line: only the top
    ([(0.9, 0.1), (0.1, 0.9), (0.5, 0.5)], [1, 2, 0]),                # sorted by the first coordinate
    ([], []),
])
def test_pareto_front(points: list[tuple[float, float]], front: list[int]) -> None:
    assert pareto_front(points) == front


def test_pareto_front_rejects_nan() -> None:
    with pytest.raises(ValueError, match="point 1"):
        pareto_front([(0.1, 0.2), (float("nan"), 0.3)])


def test_plan_runs_weight_convention() -> None:
    runs = plan_runs("vqa", "itm", [0.1, 0.9], ["dwa"])
    assert [r.name for r in runs] == ["static_w0.1", "static_w0.9", "dwa"]
    assert runs[1].overrides == ("loss.weighting=static", "tasks.vqa.weight=0.9", "tasks.itm.weight=0.1")
    assert runs[2].overrides == ("loss.weighting=dwa",)


def run_cli(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "tools/pareto.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def test_cli_sweep_end_to_end_and_resume(jsonl_data: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pareto"
    data = [o for o in jsonl_overrides(jsonl_data, tmp_path / "unused") if not o.startswith("run_dir=")]
    args = ["--config", str(TINY), "--tasks", "vqa", "answer_type", "--weights", "0.2,0.8",
            "--strategies", "uncertainty", "--output", str(out), *data, "trainer.logger=none"]
    first = run_cli(args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    result = json.loads((out / "pareto.json").read_text())
    rows = result["rows"]
    assert [r["name"] for r in rows] == ["static_w0.2", "static_w0.8", "uncertainty"]
    assert [r["weighting"] for r in rows] == ["static", "static", "uncertainty"]
    assert rows[0]["weights"] == {"vqa": 0.2, "answer_type": 0.8}
    for r in rows:
        assert set(r["metrics"]) == {"vqa", "answer_type"}
        assert all(0.0 <= v <= 1.0 for v in r["metrics"].values())
        assert r["wall_seconds"] > 0 and (Path(r["run_dir"]) / "metrics.json").is_file() and not r["reused"]
    assert result["front"] and set(result["front"]) <= {0, 1}  # the static sweep's front
    assert (out / "pareto.png").stat().st_size > 1000
    assert "static_w0.2" in first.stdout and "uncertainty" in first.stdout

    # the second invocation runs in-process: the subprocess start-up above already proved the CLI
    start = time.perf_counter()
    tool = load_tool()
    assert tool.main(args) == 0
    reuse_s = time.perf_counter() - start
    again = json.loads((out / "pareto.json").read_text())
    assert all(r["reused"] for r in again["rows"])
    strip = [{k: v for k, v in r.items() if k != "reused"} for r in again["rows"]]
    assert strip == [{k: v for k, v in r.items() if k != "reused"} for r in rows]  # same numbers
    assert reuse_s < 20, f"reusing 3 finished runs took {reuse_s:.1f}s: were they retrained?"

    # a finished run trained with another config is not silently mixed in
    assert tool.main([*args, "optim.lr=0.01"]) == 2
    err = capsys.readouterr().err
    assert "static_w0.2" in err and "different config" in err and "--force" in err


@pytest.mark.parametrize("argv, message", [
    (["--tasks", "vqa"], "exactly two distinct tasks"),
    (["--tasks", "vqa", "vqa"], "exactly two distinct tasks"),
    (["--tasks", "vqa", "nope"], "unknown task 'nope'"),
    (["--tasks", "vqa", "itm", "--weights", "0.5,1.5"], "weight 1.5 is not strictly between 0 and 1"),
    (["--tasks", "vqa", "itm", "--weights", "0.5,x"], "'x' is not a number"),
    (["--tasks", "vqa", "itm", "--strategies", "magic"], "unknown loss weighting 'magic'"),
    (["--tasks", "vqa", "itm", "run_dir=/tmp/x"], "set by the sweep itself"),
    (["--tasks", "vqa", "itm", "no_such.key=1"], "no_such"),
])
def test_cli_bad_arguments_exit_2(argv: list[str], message: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    code = load_tool().main(["--config", str(TINY), "--output", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert not (tmp_path / "o").exists()  # nothing trained
