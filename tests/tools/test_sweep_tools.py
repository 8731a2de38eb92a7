"""Every sweep tool of tools/ runs end to end as a user types it, on tiny models and a handful of steps, so a
tool that stops working fails CI (the benchmark numbers themselves are the README's, not the tests')."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.conftest import make_video_dataset, run_tool

TOOLS = Path(__file__).resolve().parents[2] / "tools"

# The experiment configs' models, shrunk; a few batches of each split.
TINY_RUN = [
    "model.text.config.hidden_size=32", "model.text.config.intermediate_size=64",
    "model.text.config.num_attention_heads=2", "model.image.embed_dim=32", "model.image.depth=1",
    "model.image.num_heads=2", "model.fusion.dim=32", "data.limit_questions=64", "trainer.max_epochs=1",
    "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "trainer.logger=none",
]


def test_benchmark_multitask(tmp_path: Path) -> None:
    out = run_tool("tools/benchmark_multitask.py", "--epochs", "1", "--output", str(tmp_path),
                   "--only", "vqa only", "static", *TINY_RUN)
    rows = json.loads((tmp_path / "table.json").read_text())
    assert [(r["name"], r["seed"]) for r in rows] == [("vqa only", 0), ("static", 0)] and "| static | 0 |" in out
    assert rows[1]["test"]["itm"] is not None and rows[0]["test"]["itm"] is None
    assert (tmp_path / "static" / "seed0" / "metrics.json").is_file()
    # called again: the finished runs are read back, not retrained
    again = run_tool("tools/benchmark_multitask.py", "--epochs", "1", "--output", str(tmp_path),
                     "--only", "vqa only", "static", *TINY_RUN)
    assert "$ python tools/train.py" not in again and again.count("done, read back") == 2
    assert json.loads((tmp_path / "table.json").read_text()) == rows


@pytest.fixture
def bench_common(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(TOOLS))  # as when a tool imports its sibling
    spec = importlib.util.spec_from_file_location("bench_common", TOOLS / "bench_common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sweep_resumes_and_reruns_only_what_changed(tmp_path: Path, bench_common, capsys) -> None:
    calls: list[tuple[str, int]] = []

    def run(row: str, seed: int) -> dict:
        calls.append((row, seed))
        return {"id": row, "seed": seed, "score": len(calls)}

    def table(rows: list[dict]) -> str:
        return "\n".join(f"{r['id']} {r['seed']} {r['score']}" for r in rows)

    rows = bench_common.sweep(tmp_path, ["a", "b"], [0, 1], None, run, table, signature=["x=1"])
    assert calls == [("a", 0), ("a", 1), ("b", 0), ("b", 1)] and len(rows) == 4
    # a sweep stopped after one run: only the missing runs are run when it is called again
    kept = [r for r in rows if (r["id"], r["seed"]) != ("b", 1)]
    (tmp_path / "table.json").write_text(json.dumps(kept))
    calls.clear()
    rows = bench_common.sweep(tmp_path, ["a", "b"], [0, 1], None, run, table, signature=["x=1"])
    assert calls == [("b", 1)] and [(r["id"], r["seed"]) for r in rows] == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    # other shared overrides, or --rerun: the selected runs are run again and replaced
    calls.clear()
    bench_common.sweep(tmp_path, ["a", "b"], [0], ["a"], run, table, signature=["x=2"])
    bench_common.sweep(tmp_path, ["a", "b"], [1], ["b"], run, table, signature=["x=1"], rerun=True)
    assert calls == [("a", 0), ("b", 1)]
    saved = {(r["id"], r["seed"]): r for r in json.loads((tmp_path / "table.json").read_text())}
    assert saved[("a", 0)]["signature"] == ["x=2"] and saved[("b", 1)]["score"] == 2
    assert saved[("a", 1)]["score"] == 2  # the second run of the first call, untouched since


def test_benchmark_video(tmp_path: Path) -> None:
    data = make_video_dataset(tmp_path / "video")["train"].parent
    run_tool("tools/benchmark_video.py", "--data", str(data), "--output", str(tmp_path / "out"), "--seeds", "0",
             "--only", "mean", *TINY_RUN)
    rows = json.loads((tmp_path / "out" / "table.json").read_text())
    assert [(r["id"], r["seed"]) for r in rows] == [("mean", 0)] and 0 <= rows[0]["overall"] <= 100
    assert "| mean |" in (tmp_path / "out" / "table.md").read_text()


def test_every_benchmark_video_row_is_a_valid_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from mmfuse.config import load_config

    monkeypatch.syspath_prepend(str(TOOLS))
    spec = importlib.util.spec_from_file_location("benchmark_video", TOOLS / "benchmark_video.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = TOOLS.parent / "configs" / "experiments" / "video_qa.yaml"
    for row, (_, overrides) in module.ROWS.items():
        cfg = load_config(config, overrides)  # a typo in a row's key or value is a ConfigError here
        assert cfg.model.video.pooling in {o.split("=", 1)[1] for o in overrides if "pooling=" in o} | {"mean"}, row


def test_benchmark_rl_trains_stage_one_then_a_row(tmp_path: Path) -> None:
    run_tool("tools/benchmark_rl.py", "--output", str(tmp_path), "--seeds", "0", "--only", "ppo", *TINY_RUN)
    rows = json.loads((tmp_path / "table.json").read_text())
    assert [(r["id"], r["seed"]) for r in rows] == [("ppo", 0)]
    assert (tmp_path / "stage1" / "metrics.json").is_file()


def test_benchmark_scorer(tmp_path: Path) -> None:
    out = run_tool("tools/benchmark_scorer.py", "--questions", "300", "--rounds", "1",
                   "--json", str(tmp_path / "s.json"))
    result = json.loads((tmp_path / "s.json").read_text())
    assert result["questions"] == 300 and "identical" in out.lower()


def test_overrides_written_after_seeds_are_overrides(bench_common) -> None:
    """``--seeds 0 1 2 key=value`` (as the README writes its sweeps): argparse's nargs="+" takes the override
    too; it must land in the overrides, and a word that is neither an integer nor an override is an error."""
    import argparse

    p = argparse.ArgumentParser()
    bench_common.add_seeds_arg(p)
    p.add_argument("--only", nargs="*")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(["--seeds", "0", "2", "model.fusion.name=concat", "--only", "a", "x=1"])
    bench_common.split_only(p, args, ["a", "b"])
    assert args.seeds == [0, 2] and args.overrides == ["model.fusion.name=concat", "x=1"] and args.only == ["a"]
    with pytest.raises(SystemExit):
        p.parse_args(["--seeds", "0", "one"])
