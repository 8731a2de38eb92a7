"""A checkpoint whose pickle carries code is refused by every entry point that reads one, and the code never
runs; mmfuse's own checkpoints are plain data (``weights_only=True``), and ``--trust-checkpoint`` opts in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import mmfuse
from mmfuse.checkpoints import read_checkpoint
from tests.conftest import REPO, TINY, jsonl_overrides, make_jsonl_dataset


class Payload:
    """Unpickling this runs ``touch <marker>``: the attack a shared checkpoint can carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny answer-generation run (so it can also start an RL stage) and a poisoned copy of its checkpoint."""
    tmp = tmp_path_factory.mktemp("safety")
    data = make_jsonl_dataset(tmp / "data", n_images=6)
    cfg = mmfuse.load_config(TINY, jsonl_overrides(data, tmp / "run") + [
        "tasks.active=[answer_generation]", "trainer.logger=none", "trainer.max_epochs=1"])
    good = Path(mmfuse.train(cfg)["best_checkpoint"])
    ckpt = torch.load(good, map_location="cpu", weights_only=True)  # mmfuse's own checkpoint: plain data
    marker = tmp / "payload_ran"
    ckpt["hyper_parameters"]["extra"] = Payload(marker)
    bad = tmp / "shared.ckpt"
    torch.save(ckpt, bad)
    return {"data": data, "good": good, "bad": bad, "marker": marker, "tmp": tmp}


def tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def refused(proc: subprocess.CompletedProcess[str], bad: Path, marker: Path) -> None:
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert str(bad) in line and "may run code" in line and "--trust-checkpoint" in line, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not marker.exists(), "the checkpoint's payload ran"


def test_evaluate_refuses_a_checkpoint_that_runs_code(run: dict) -> None:
    refused(tool("tools/evaluate.py", "--checkpoint", str(run["bad"])), run["bad"], run["marker"])


def test_resume_refuses_a_checkpoint_that_runs_code(run: dict) -> None:
    proc = tool("tools/train.py", "--config", str(TINY), *jsonl_overrides(run["data"], run["tmp"] / "resumed"),
                "tasks.active=[answer_generation]", "--resume", str(run["bad"]))
    refused(proc, run["bad"], run["marker"])
    assert not (run["tmp"] / "resumed").exists()  # refused before the run directory was made


def test_rl_init_from_refuses_a_checkpoint_that_runs_code(run: dict) -> None:
    proc = tool("tools/train.py", "--config", str(TINY), *jsonl_overrides(run["data"], run["tmp"] / "rl"),
                "stage=rl", f"rl.init_from={run['bad']}", "checkpoint.monitor=val/sampled/acc")
    refused(proc, run["bad"], run["marker"])


def test_interpolate_refuses_a_checkpoint_that_runs_code(run: dict) -> None:
    proc = tool("tools/interpolate.py", str(run["bad"]), str(run["good"]), "--alphas", "0,1")
    refused(proc, run["bad"], run["marker"])


def test_python_api_refuses_and_trust_opts_in(run: dict) -> None:
    with pytest.raises(mmfuse.UnsafeCheckpoint, match="may run code"):
        mmfuse.load_system(str(run["bad"]))
    with pytest.raises(mmfuse.UnsafeCheckpoint):
        read_checkpoint(run["bad"])
    assert not run["marker"].exists()
    system = mmfuse.load_system(str(run["good"]))  # mmfuse's own checkpoints need no trust
    assert system.tokenizer_json is not None
    read_checkpoint(run["bad"], trust=True)  # the explicit opt-in unpickles everything: the payload runs
    assert run["marker"].exists()
    run["marker"].unlink()


def test_missing_checkpoint_is_one_line(run: dict) -> None:
    proc = tool("tools/evaluate.py", "--checkpoint", str(run["tmp"] / "nope.ckpt"))
    assert proc.returncode == 2 and "nope.ckpt" in proc.stderr and "Traceback" not in proc.stderr
