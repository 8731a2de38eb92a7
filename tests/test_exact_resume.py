"""Exact resume after a crash: a run killed with SIGKILL mid-epoch (while writing a checkpoint) and resumed
from its last.ckpt ends with the uninterrupted run's weights and test numbers; the pieces that make it so."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmfuse.checkpoints import AtomicCheckpointIO
from mmfuse.data.batching import GroupedBatchSampler
from mmfuse.data.resumable import ResumableBatchSampler, SeededBatch, batch_seed
from tests.conftest import REPO, TINY, jsonl_overrides, make_jsonl_dataset, run_tool

# Runs mmfuse.train(config) in this process, SIGKILLed while it writes the checkpoint of global step KILL:
# after the temporary file is written, before the rename that would make it last.ckpt.
DRIVER = """
import os, signal, sys
import mmfuse
from mmfuse.checkpoints import AtomicCheckpointIO
kill_step, overrides = int(sys.argv[1]), sys.argv[2:]
save = AtomicCheckpointIO.save_checkpoint
def dying(self, checkpoint, path, storage_options=None):
    if checkpoint["global_step"] == kill_step:
        os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
    save(self, checkpoint, path, storage_options)
AtomicCheckpointIO.save_checkpoint = dying
mmfuse.train(mmfuse.load_config([overrides[0]], overrides[1:]))
"""
RANDOM = ["model.fusion.hparams.dropout=0.2", "data.augment=[hflip]", "checkpoint.every_n_steps=1",
          "trainer.logger=none", "trainer.max_epochs=2"]  # dropout and augmentation: random state that must resume


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


def killed_then_resumed(tmp_path: Path, overrides: list[str], kill_step: int, resumed_step: int) -> Path:
    """Run ``overrides`` (config first) killed at ``kill_step``, check what the kill left, resume it to the end."""
    run = tmp_path / "killed"
    (tmp_path / "driver.py").write_text(DRIVER)
    proc = subprocess.run([sys.executable, str(tmp_path / "driver.py"), str(kill_step), *overrides,
                           f"run_dir={run}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    last = run / "checkpoints" / "last.ckpt"
    # the write that was killed never replaced last.ckpt: it is the previous step's, whole
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == resumed_step
    assert not (run / "metrics.json").exists()
    assert list((run / "checkpoints").glob(".last.ckpt.tmp-*"))  # the killed write's temporary file
    run_tool("tools/train.py", "--config", overrides[0], *overrides[1:], f"run_dir={run}", "--resume", str(last))
    assert not list((run / "checkpoints").glob(".*.tmp-*"))  # cleared by the next write
    return run


def same_run(a: Path, b: Path, keys: tuple[str, ...]) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa), [k for k in wa if not torch.equal(wa[k], wb[k])][:5]
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (a, b))
    for key in keys:
        assert ma["test"][key] == mb["test"][key], key
    assert (a / "eval_test" / "predictions.json").read_text() == (b / "eval_test" / "predictions.json").read_text()


def test_a_supervised_run_killed_mid_epoch_resumes_exactly(tmp_path: Path) -> None:
    data = make_jsonl_dataset(tmp_path / "data", n_images=12)
    # keep augment=[hflip]; one DataLoader worker decodes the batches (the RL test below: the main process)
    overrides = [str(TINY), *jsonl_overrides(data, tmp_path / "unused")[:-2], *RANDOM, "data.num_workers=1"]
    whole = tmp_path / "whole"
    run_tool("tools/train.py", "--config", *overrides, f"run_dir={whole}")
    # 3 batches an epoch: step 5 is the middle of the second epoch; the kill leaves step 4's last.ckpt, from
    # after the second epoch's first batch
    resumed = killed_then_resumed(tmp_path, overrides, kill_step=5, resumed_step=4)
    same_run(whole, resumed, ("test/acc", "test/loss"))


def test_an_rl_run_killed_mid_epoch_resumes_exactly(tmp_path: Path) -> None:
    data = make_jsonl_dataset(tmp_path / "data", n_images=12)
    run_tool("tools/train.py", "--config", str(TINY), *jsonl_overrides(data, tmp_path / "sup"),
             "tasks.active=[answer_generation]", "trainer.logger=none", "optim.lr=3e-3")
    start = next((tmp_path / "sup" / "checkpoints").glob("best-*.ckpt"))
    overrides = [str(TINY), *jsonl_overrides(data, tmp_path / "unused")[:-2], *RANDOM, "stage=rl",
                 f"rl.init_from={start}", "checkpoint.monitor=val/sampled/acc", "rl.train=[generator,fusion]",
                 "rl.ppo_epochs=1", "rl.minibatches=2"]
    whole = tmp_path / "whole"
    run_tool("tools/train.py", "--config", *overrides, f"run_dir={whole}")
    # RL counts optimiser steps: 2 a rollout batch (1 PPO epoch x 2 minibatches), 3 batches an epoch
    resumed = killed_then_resumed(tmp_path, overrides, kill_step=5 * 2, resumed_step=4 * 2)
    same_run(whole, resumed, ("test/acc", "test/sampled/acc", "test/kl"))


# -- the pieces ------------------------------------------------------------------------------------------
def test_the_resumed_epoch_gives_the_batches_not_yet_seen_with_their_seeds() -> None:
    inner = GroupedBatchSampler([[0, 1], [2, 3], [4], [5, 6], [7]], batch_size=4, shuffle=True, seed=3)
    full = ResumableBatchSampler(inner, seed=3)
    epochs = [list(full) for _ in range(3)]  # epochs 0, 1, 2 in turn
    assert epochs[0] != epochs[1]
    assert all(isinstance(b, SeededBatch) for b in epochs[1])
    assert [b.seed for b in epochs[1]] == [batch_seed(3, 1, i) for i in range(len(epochs[1]))]
    resumed = ResumableBatchSampler(GroupedBatchSampler(inner.groups, 4, shuffle=True, seed=3), seed=3)
    resumed.resume(1, 2)
    rest = list(resumed)
    assert rest == epochs[1][2:] and [b.seed for b in rest] == [b.seed for b in epochs[1][2:]]
    assert list(resumed) == epochs[2]  # and the next epoch is whole


def test_batch_seeds_differ_across_epochs_and_positions() -> None:
    seeds = {batch_seed(0, e, p) for e in range(50) for p in range(50)}
    assert len(seeds) == 2500 and all(0 <= s < 2**63 for s in seeds)
    assert batch_seed(1, 0, 0) != batch_seed(0, 0, 0)


def test_a_failed_write_leaves_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.ones(3)}, path)

    def half_then_fail(obj: object, f: object) -> None:
        f.write(b"PK\x03\x04 half a checkpoint")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["global_step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temporary file left
