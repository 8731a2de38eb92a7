"""tools/benchmark_rl.py: every estimator at an equal budget of sampled answers (the G=4 rows take a quarter of the
questions a batch, every row the same rollout batches), the table (colour_order's reward columns), the paired
interval between the best two rows, the score-vs-answers plot, resuming, and the colour_order data step."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

import mmfuse
from tests.conftest import jsonl_overrides, make_jsonl_dataset, run_tool

TOOLS = Path(__file__).resolve().parents[2] / "tools"
TINY = str(Path(__file__).parents[1] / "configs" / "tiny.yaml")


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(TOOLS))  # as when run as `python tools/benchmark_rl.py`
    spec = importlib.util.spec_from_file_location("benchmark_rl", TOOLS / "benchmark_rl.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_equal_budget_rows_table_pairing_plot_and_resume(tmp_path: Path) -> None:
    data = make_jsonl_dataset(tmp_path / "data")  # 12 train images x 4 questions; 3 test images: 12 questions
    sup = mmfuse.load_config(TINY, jsonl_overrides(data, tmp_path / "sup") + [
        "tasks.active=[answer_generation]", "trainer.logger=none"])
    init = mmfuse.train(sup)["best_checkpoint"]
    shared = [o for o in jsonl_overrides(data, tmp_path) if not o.startswith("run_dir=")]
    args = ["tools/benchmark_rl.py", "--init", init, "--output", str(tmp_path / "out"), "--only", "gae", "grpo",
            *shared, "data.batch_size=16", "rl.ppo_epochs=1", "rl.minibatches=2", "trainer.limit_val_batches=1"]
    out = run_tool(*args)
    # 16 questions a batch, 4 whole images: the G=1 row's epoch is 12 / 4 = 3 batches, every row's budget
    assert "budget: 3 rollout batches a row, 16 sampled answers a batch" in out
    saved = json.loads((tmp_path / "out" / "table.json").read_text())
    runs = {r["id"]: r for r in saved if r["id"] != "paired_interval"}
    budget = {k: {f: runs[k][f] for f in ("G", "questions_per_batch", "batches", "sampled_answers")} for k in runs}
    assert budget == {"gae": {"G": 1, "questions_per_batch": 16, "batches": 3, "sampled_answers": 48},
                      "grpo": {"G": 4, "questions_per_batch": 4, "batches": 3, "sampled_answers": 48}}
    assert "rl.samples_per_question=4 data.batch_size=4 trainer.limit_train_batches=3" in runs["grpo"]["command"]
    for row in runs.values():  # capped at 3 rollout batches (grpo's epoch has 12); the test's sampled answers saved
        logs = (Path(row["run_dir"]) / "logs" / "metrics.csv").read_text().splitlines()
        logged = [r for r in csv.DictReader(logs) if r.get("rl/score")]
        assert len(logged) == 3
        # every step timed: the estimator's share of it, as the table's median
        shares = [100 * float(r["rl/advantage_ms"]) / float(r["rl/step_ms"]) for r in logged]
        assert all(0 < x < 100 for x in shares) and row["advantage_share"] == pytest.approx(sorted(shares)[1])
        answers = json.loads((Path(row["run_dir"]) / "eval_test" / "sampled_answers.json").read_text())
        assert len(answers) == 12 and sum(a["score"] for a in answers) / 12 == pytest.approx(row["sampled"] / 100)
    pair = saved[-1]
    assert pair["id"] == "paired_interval" and pair["seeds"] == [0] and pair["questions"] == 12
    assert {pair["best"], pair["second"]} == {"gae", "grpo"} and pair["ci"][0] <= pair["diff"] <= pair["ci"][1]
    table = (tmp_path / "out" / "table.md").read_text()
    assert "| PPO+GAE λ=0.95, critic (G=1) |" in table and "| GRPO (G=4) |" in table
    assert "Best two rows by mean sampled accuracy" in table and "over 12 questions" in table
    assert (tmp_path / "out" / "score_vs_answers.png").read_bytes()[:4] == b"\x89PNG"
    again = run_tool(*args)  # read back, not re-run
    assert "$ python tools/train.py" not in again and again.count("done, read back") == 2
    assert json.loads((tmp_path / "out" / "table.json").read_text()) == saved


def row(bench: Any, id_: str, seed: int, sampled: float, greedy_reward: float | None = None,
        sampled_reward: float | None = None, run_dir: str = "") -> dict:
    return {"id": id_, "name": bench.ROWS[id_][0], "seed": seed, "greedy": 90.0, "sampled": sampled, "kl": 0.1,
            "fit_seconds": 60, "rollouts_per_s": None if id_ == "start" else 100.0, "greedy_reward": greedy_reward,
            "sampled_reward": sampled_reward, "run_dir": run_dir,
            "advantage_share": None if id_ == "start" else 0.5}


def test_colour_order_table_has_the_reward_columns(bench: Any) -> None:
    rows = [row(bench, "start", 0, 70.0, 0.9, 0.7), row(bench, "rloo", 0, 80.0, 0.92, 0.85)]
    lines = bench.table(rows, "colour_order").splitlines()
    assert "| greedy reward | sampled reward | reward gap closed |" in lines[0]
    assert lines[1].count("---") == 12 and lines[2].count("|") == lines[0].count("|")
    # accuracy gap (80 - 70) / (90 - 70) = 50%; reward gap (0.85 - 0.7) / (0.9 - 0.7) = 75%
    assert lines[3] == "| RLOO (G=4) | 90.00 | 80.00 | 50% | +0.00 | 0.920 | 0.850 | 75% | 0.100 | 1.0 | 100 | 0.50% |"
    assert "reward" not in bench.table(rows)  # easy_vqa: the README's columns


def test_paired_interval_of_the_best_two_rows(bench: Any, tmp_path: Path) -> None:
    def run(id_: str, seed: int, sampled: float, scores: list[float | None]) -> dict:
        path = tmp_path / id_ / f"seed{seed}"
        (path / "eval_test").mkdir(parents=True)
        (path / "eval_test" / "sampled_answers.json").write_text(json.dumps(
            [{"question_id": q, "answer": "x", "score": s, "reward": s} for q, s in enumerate(scores)]))
        return row(bench, id_, seed, sampled, run_dir=str(path))

    # grpo and rloo are the best two; question 2 is unlabelled in one run: only questions 0 and 1 pair.
    # Averaged over seeds: grpo (1, 0.5), rloo (0.5, 0): grpo - rloo = 0.5 on both, every resample alike
    rows = [run("grpo", 0, 90, [1, 1, 1]), run("grpo", 1, 92, [1, 0, None]), run("rloo", 0, 85, [0, 0, 1]),
            run("rloo", 1, 85, [1, 0, 1]), run("gae", 0, 50, [0, 0, 0]), row(bench, "start", 0, 99.0)]
    pair = bench.paired(rows, resamples=50)
    assert {k: pair[k] for k in ("best", "second", "seeds", "questions", "diff", "ci", "p")} == {
        "best": "grpo", "second": "rloo", "seeds": [0, 1], "questions": 2, "diff": 50.0, "ci": [50.0, 50.0], "p": 0.0}
    assert bench.paired_line(pair).startswith("Best two rows by mean sampled accuracy: GRPO (G=4) vs RLOO (G=4): "
                                              "+50.00 points [+50.00, +50.00]")
    (tmp_path / "rloo" / "seed1" / "eval_test" / "sampled_answers.json").unlink()  # a run from before the file
    assert "no eval_test/sampled_answers.json" in bench.paired(rows, resamples=50)["note"]
    assert bench.paired(rows[:2]) is None  # one trained row: nothing to pair


def test_budget_refuses_a_batch_it_cannot_split(bench: Any) -> None:
    cfg = "configs/experiments/easy_vqa_rl.yaml"
    with pytest.raises(SystemExit, match="data.batch_size=18: .* expected a multiple of 4"):
        bench.Budget(cfg, "x.ckpt", ["data.batch_size=18"], None).get()
    with pytest.raises(SystemExit, match="trainer.limit_train_batches=0.5: .* give an integer"):
        bench.Budget(cfg, "x.ckpt", ["trainer.limit_train_batches=0.5"], None).get()
    assert bench.Budget(cfg, "x.ckpt", ["trainer.limit_train_batches=7"], None).get() == (256, 7)
    assert bench.Budget(cfg, "x.ckpt", ["trainer.limit_train_batches=7"], 5).get() == (256, 5)  # --batches wins


def test_colour_order_data_is_written_once_keeping_the_other_files(bench: Any, tmp_path: Path, capsys) -> None:
    from mmfuse.data.sort_of_clevr_files import write_sort_of_clevr

    root = tmp_path / "soc"
    write_sort_of_clevr(root, {"train": 3, "val": 2, "test": 2}, seed=5)  # the twenty-question files only
    before = hashlib.sha256((root / "train.jsonl").read_bytes()).hexdigest()
    config = bench.TASKS["colour_order"][0]
    bench.ensure_order_data(config, [f"data.root={root}"])
    orders = [json.loads(x) for x in (root / "order_train.jsonl").read_text().splitlines()]
    assert len(orders) == 3 and all(len(o["answers"]) == 10 for o in orders)  # --noisy: 10 annotators each
    assert hashlib.sha256((root / "train.jsonl").read_bytes()).hexdigest() == before  # same seed and sizes
    summary = json.loads((root / "summary.json").read_text())
    assert summary["seed"] == 5 and summary["colour_order"]["noise"] == 0.3
    capsys.readouterr()
    bench.ensure_order_data(config, [f"data.root={root}"])
    assert "make_sort_of_clevr" not in capsys.readouterr().out  # there already: nothing written


def test_colour_order_rl_budget_and_data_come_from_its_config(bench: Any, tmp_path: Path, monkeypatch) -> None:
    rl = bench.TASKS["colour_order"][1]
    # the RL config's own integer limit is the budget (39 rollout batches an epoch); an override or --batches wins
    assert bench.Budget(rl, "x.ckpt", [], None).get() == (256, 39)
    assert bench.Budget(rl, "x.ckpt", ["trainer.limit_train_batches=7"], None).get() == (256, 7)
    calls: list[list[str]] = []
    monkeypatch.setattr(bench, "run_logged", lambda cmd, what: calls.append(cmd))
    bench.ensure_order_data(rl, [f"data.root={tmp_path / 'new'}"], train=bench.ORDER_RL_TRAIN)
    cmd = calls[-1]
    assert cmd[cmd.index("--train") + 1] == "60000" and "--seed" not in cmd and "--overwrite" not in cmd
    assert cmd[cmd.index("--output") + 1] == str(tmp_path / "new") and "--colour-order" in cmd
