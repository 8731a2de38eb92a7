"""Small Lightning callbacks."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch


class SpeedMonitor(L.Callback):
    """Training throughput: questions per second over training batches only (validation,
    checkpointing and logging between epochs excluded), logged as ``train/samples_per_s``; and when the
    first training step began (``first_step_at``, a ``time.perf_counter()`` reading)."""

    def __init__(self) -> None:
        self.samples = 0
        self.seconds = 0.0
        self._t0 = 0.0
        self.first_step_at: float | None = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._t0 = time.perf_counter()
        if self.first_step_at is None:
            self.first_step_at = self._t0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.seconds += time.perf_counter() - self._t0
        self.samples += len(batch["question_id"])

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.seconds > 0:
            pl_module.log("train/samples_per_s", self.samples / self.seconds)

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0


class DroppedQuestions(L.Callback):
    """Counts the questions that batches dropped on the lazy image path (``data.skip_bad_records``: an image
    corrupt past its header fails when decoded in a worker; the batch lists its questions in ``"dropped"``).
    ``counts()``: split -> distinct question ids dropped, summed over every process. ``test_split``: the
    split the test loop runs (``evaluate`` may test on ``val``)."""

    def __init__(self, test_split: str = "test") -> None:
        self.seen: dict[str, set[Any]] = {}
        self.test_split = test_split

    def _add(self, stage: str, batch: Any) -> None:
        if isinstance(batch, dict) and batch.get("dropped"):
            self.seen.setdefault(stage, set()).update(
                (batch.get("dataset"), q) for q in batch["dropped"])

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._add("train", batch)

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                                  batch_idx: int, dataloader_idx: int = 0) -> None:
        self._add("val", batch)

    def on_test_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                            batch_idx: int, dataloader_idx: int = 0) -> None:
        self._add(self.test_split, batch)

    def counts(self) -> dict[str, int]:
        seen = self.seen
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            parts: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(parts, seen)
            seen = {}
            for part in parts:
                for stage, ids in part.items():
                    seen.setdefault(stage, set()).update(ids)
        return {stage: len(ids) for stage, ids in sorted(seen.items())}


class BatchAudit(L.Callback):
    """``trainer.audit_batches``: every process writes the question ids of each training epoch's batches to
    ``<out>/rank<r>_epoch<e>.json``: ``{"batches": n, "question_ids": [...], "padding_ids": [...],
    "padding_batches": k}``
    (padding: the batches a streamed loader repeats so the processes take as many steps). How the data was
    split across processes, checkable after the run."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.ids: list[Any] = []
        self.padding_ids: list[Any] = []
        self.padding = self.batches = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.ids, self.padding_ids, self.padding, self.batches = [], [], 0, 0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self.batches += 1
        if batch.get("padding"):
            self.padding_ids.extend(batch["question_id"])
            self.padding += 1
        else:
            self.ids.extend(batch["question_id"])

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / f"rank{trainer.global_rank}_epoch{trainer.current_epoch}.json"
        path.write_text(json.dumps({"batches": self.batches, "question_ids": self.ids, "padding_ids": self.padding_ids,
                                    "padding_batches": self.padding}))
