"""Empty splits stop when they are loaded, before training, naming the file (or the carving and the
val_fraction that emptied it); a run that fails before its first checkpoint leaves no run directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import mmfuse
from mmfuse.data.sources import DataError
from tests.conftest import REPO, TINY, jsonl_overrides


@pytest.mark.parametrize("split", ["test", "val", "train"])
def test_an_empty_split_file_is_named_before_training(jsonl_data: dict, tmp_path: Path, split: str) -> None:
    jsonl_data[split].write_text("")
    run = tmp_path / "run"
    cfg = mmfuse.load_config(TINY, jsonl_overrides(jsonl_data, run) + ["trainer.logger=none"])
    with pytest.raises(DataError, match=rf"the {split} split \({jsonl_data[split]}\) has no questions"):
        mmfuse.train(cfg)
    assert not run.exists()  # failed before its first checkpoint: nothing left behind


def test_a_carving_that_empties_validation_names_val_fraction(jsonl_data: dict, tmp_path: Path) -> None:
    over = [o for o in jsonl_overrides(jsonl_data, tmp_path / "run") if not o.startswith("data.val=")]
    cfg = mmfuse.load_config(TINY, over + ["data.val_fraction=0.0", "trainer.logger=none"])
    with pytest.raises(DataError) as err:
        mmfuse.train(cfg)
    msg = str(err.value)
    assert "carving a validation split" in msg and "val_fraction=0.0" in msg and "left the val split empty" in msg
    assert str(jsonl_data["train"]) in msg and "give data.val" in msg


def test_the_cli_says_it_in_one_line(jsonl_data: dict, tmp_path: Path) -> None:
    jsonl_data["test"].write_text("")
    proc = subprocess.run([sys.executable, "tools/train.py", "--config", str(TINY),
                           *jsonl_overrides(jsonl_data, tmp_path / "run")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("data error: ") and str(jsonl_data["test"]) in last and "has no questions" in last


def test_questions_over_the_length_limit_are_cut_counted_and_warned(jsonl_data: dict, tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    import json

    from mmfuse.runner import build_datamodule

    lines = jsonl_data["train"].read_text().splitlines()
    long_q = json.loads(lines[0])
    long_q["question"] = "what " + "very " * 30 + "big shape is this?"
    lines[0] = json.dumps(long_q)
    jsonl_data["train"].write_text("\n".join(lines) + "\n")
    cfg = mmfuse.load_config(TINY, jsonl_overrides(jsonl_data, tmp_path / "run") + ["data.max_question_length=8"])
    dm = build_datamodule(cfg)
    dm.prepare()
    dm.img_size = (32, 32)
    with caplog.at_level("WARNING"):
        dm.setup("fit")
    assert dm.truncated == {"train": 1}
    assert sum("longer than data.max_question_length=8" in r.message for r in caplog.records) == 1
    questions = dm.train_dataloader().dataset.questions
    row = [r.question for r in questions.records].index(long_q["question"])
    ids = questions.input_ids[row].tolist()
    assert len(ids) == 8 and ids[-1] == dm.tokenizer.sep_token_id and ids[0] == dm.tokenizer.cls_token_id
    full = dm.tokenizer(long_q["question"])["input_ids"]
    assert ids[:7] == full[:7]  # the question's first tokens, then [SEP]: the tokenizer's own truncation
