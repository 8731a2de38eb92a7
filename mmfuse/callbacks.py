"""Small Lightning callbacks."""

from __future__ import annotations

import time
from typing import Any

import lightning as L


class SpeedMonitor(L.Callback):
    """Training throughput: questions per second over training batches only (validation,
    checkpointing and logging between epochs excluded), logged as ``train/samples_per_s``."""

    def __init__(self) -> None:
        self.samples = 0
        self.seconds = 0.0
        self._t0 = 0.0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._t0 = time.perf_counter()

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
