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
