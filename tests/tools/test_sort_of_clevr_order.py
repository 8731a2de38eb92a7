"""The colour_order task end to end: tools/make_sort_of_clevr.py --colour-order --noisy writes it, stage 1
(configs/experiments/sort_of_clevr_order_generator.yaml) teaches the answer generator, stage 2
(sort_of_clevr_order_rl.yaml) fine-tunes it by RL with the position_accuracy reward."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import torch

import mmfuse
from mmfuse.rl.rewards import position_accuracy_reward
from mmfuse.runner import build_datamodule, resumed_vocabularies
from tests.conftest import REPO, TINY, run_tool

TOOL = "tools/make_sort_of_clevr.py"
STAGE1 = REPO / "configs" / "experiments" / "sort_of_clevr_order_generator.yaml"
STAGE2 = REPO / "configs" / "experiments" / "sort_of_clevr_order_rl.yaml"
SIX = {"red", "green", "blue", "orange", "gray", "yellow"}


def test_cli_flags_and_their_errors(tmp_path: Path) -> None:
    out = tmp_path / "soc"
    stdout = run_tool(TOOL, "--output", str(out), "--train", "2", "--val", "1", "--test", "1", "--colour-order",
                      "--noisy", "0.5", "--annotators", "4")
    assert f"train: 2 colour_order questions in {out / 'order_train.jsonl'} (4 answers each, 4 corrupted)" in stdout
    rows = [json.loads(x) for x in (out / "order_val.jsonl").read_text().splitlines()]  # ids after 4 x 20, 2 train
    assert len(rows) == 1 and rows[0]["question_id"] == 82 and len(rows[0]["answers"]) == 4
    assert "--colour-order" in run_tool(TOOL, "--help") and "adjacent pair" in run_tool(TOOL, "--help")
    proc = subprocess.run([sys.executable, TOOL, "--output", str(tmp_path / "x"), "--noisy", "0.3"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith(
        "data error: Sort-of-CLEVR noise=0.3 corrupts the colour_order answers; pass colour_order=True")


def test_generator_then_rl_with_position_accuracy(tmp_path: Path) -> None:
    data = tmp_path / "soc"
    run_tool(TOOL, "--output", str(data), "--train", "24", "--val", "4", "--test", "4", "--colour-order",
             "--noisy", "0.3")
    common = [f"data.root={data}", "trainer.num_threads=1", "data.batch_size=12"]
    cfg = mmfuse.load_config([STAGE1, TINY], [*common, f"run_dir={tmp_path / 'gen'}", "trainer.logger=none"])
    assert (cfg.data.train, cfg.tasks.active, cfg.tasks.answer_generation.target) == \
        ("order_train.jsonl", ["answer_generation"], "random")
    assert cfg.tasks.answer_generation.max_length >= 7  # six colour words + EOS
    gen = mmfuse.train(cfg)
    assert gen["num_questions"] == {"train": 24, "val": 4, "test": 4}
    acc = gen["test_accuracy"]
    assert acc["perAnswerTypeCount"] == {"sequence": 4} and set(acc["perQuestionType"]) == {"colour_order"}
    assert json.loads((tmp_path / "gen" / "metrics.json").read_text())["num_questions"]["train"] == 24
    words = mmfuse.load_system(gen["best_checkpoint"]).tasks["answer_generation"].tokenizer.words
    assert set(words) == SIX  # the generator's vocabulary: the colour words, whole

    cfg = mmfuse.load_config([STAGE2, TINY], [*common, f"run_dir={tmp_path / 'rl'}", "trainer.logger=csv",
                                              f"rl.init_from={gen['best_checkpoint']}", "rl.ppo_epochs=1"])
    assert (cfg.stage, cfg.rl.reward) == ("rl", "position_accuracy")
    result = mmfuse.train(cfg)
    assert json.loads((tmp_path / "rl" / "metrics.json").read_text())["rl"]["init_from"] == gen["best_checkpoint"]
    rows = [r for r in csv.DictReader((tmp_path / "rl" / "logs" / "metrics.csv").open()) if r.get("rl/score")]
    assert len(rows) == 2 and all(0.0 <= float(r["rl/score"]) <= 1.0 for r in rows)  # 24 questions / 12

    # the stage's reward is position_accuracy: a rollout's scores are exactly its texts' partial credit
    system = mmfuse.load_system(result["best_checkpoint"])
    assert system.reward_fn is position_accuracy_reward
    dm = build_datamodule(cfg, None, **resumed_vocabularies(gen["best_checkpoint"]))
    dm.img_size = system.model.image_size
    batch = next(iter(dm.loader("val")))
    system.eval()
    roll, _ = system.rollout(batch)
    assert len(roll.texts) == 4
    torch.testing.assert_close(roll.scores, position_accuracy_reward(roll.texts, batch))
