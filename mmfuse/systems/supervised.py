"""The supervised LightningModule: every active task on the shared encoders and fusion, one shared step
for train/val/test, weighted and regularised objectives, metrics per stage, task and dataset."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from torch import Tensor, nn

from mmfuse.objectives.multitask import build_weighting
from mmfuse.random_state import Stream
from mmfuse.systems.base import BaseSystem
from mmfuse.systems.optim import build_optimizer, warmup_cosine
from mmfuse.systems.regularization import Regularization
from mmfuse.systems.task_grads import TaskGradients

__all__ = ["SupervisedSystem", "build_optimizer", "warmup_cosine"]


class SupervisedSystem(BaseSystem):
    """The supervised stage on :class:`~mmfuse.systems.base.BaseSystem`: the task losses combined by the
    ``loss.weighting`` strategy, the ``regularization`` terms added, per-task gradient surgery
    (``gradnorm``, ``pcgrad``) and the conflict signal, AdamW with warm-up + cosine.

    Args: those of :class:`~mmfuse.systems.base.BaseSystem`; ``cfg`` also supplies ``loss``,
    ``regularization`` and ``optim``.

    Logged besides the base's: ``<stage>/loss`` is the weighting's total (plus the regularisers in training);
    in training also ``weight/<task>``, ``reg/<term>`` and ``conflict/cos/<a>~<b>`` (cosine between two tasks'
    gradients on the shared parameters).
    """

    def __init__(self, cfg: dict[str, Any], answers: Sequence[str], text_vocab_size: int | None = None,
                 pad_token_id: int = 0, answer_types: Sequence[str] = (), fusion: nn.Module | None = None,
                 question_types: Sequence[str] = (), answer_words: Sequence[str] = ()) -> None:
        super().__init__(cfg, answers, text_vocab_size, pad_token_id, answer_types, fusion, question_types,
                         answer_words)
        cfg = self.cfg
        self.weighting = build_weighting(cfg["loss"]["weighting"], self.active,
                                         {t: task.weight for t, task in self.tasks.items()}, **cfg["loss"]["options"])
        self.regularization = Regularization(self.model, cfg["regularization"])
        self.task_grads = TaskGradients(self.model, self.weighting, int(cfg["loss"]["conflict_every_n_steps"]))
        self._epoch_losses: dict[str, list[Any]] = {}  # task -> [loss sum, steps] this epoch

    def total_loss(self, losses: Mapping[str, Tensor], stage: str, batch_size: int) -> Tensor:
        """The weighting's total; in training also its weights logged, the per-task gradients taken and the
        regularisation terms added."""
        total, weights = self.weighting(losses)
        self.step_terms: dict[str, Tensor] = {f"tasks.{t} loss": v for t, v in losses.items()}
        if stage == "train":
            n = batch_size
            for name, w in weights.items():
                self.log(f"weight/{name}", float(w), on_epoch=True, on_step=False, batch_size=n)
                acc = self._epoch_losses.setdefault(name, [0.0, 0])  # a tensor sum: no device sync per step
                acc[0], acc[1] = acc[0] + losses[name].detach().float(), acc[1] + 1
            self.task_grads.step(losses, weights, self.global_step)
            for key, term in self.regularization(self.model).items():
                self.step_terms[key] = term
                total = total + term
                self.log(key, term, on_step=True, on_epoch=True, batch_size=n)
        return total

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor | None:
        loss = self._step(batch, "train")
        if loss is not None and not self.check_loss(loss, self.step_terms):
            return None  # skip_batch: Lightning takes no backward or optimiser step for this batch
        return loss

    def random_streams(self) -> dict[str, Stream]:
        streams = super().random_streams()
        if isinstance(gen := getattr(self.weighting, "generator", None), torch.Generator):  # PCGrad's task order
            streams["weighting"] = gen
        return streams

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if getattr(self.trainer.precision_plugin, "scaler", None) is not None:
            return  # fp16's GradScaler skips inf gradients itself (they are expected while it calibrates)
        if not self.check_grads():
            optimizer.zero_grad(set_to_none=True)  # skip_batch: AdamW leaves parameters without gradient alone

    def on_after_backward(self) -> None:
        scaler = getattr(self.trainer.precision_plugin, "scaler", None) if self._trainer is not None else None
        self.task_grads.apply(float(scaler.get_scale()) if scaler is not None else 1.0)

    def on_train_epoch_end(self) -> None:
        self._epoch_end("train")
        means = {}
        for name, (total, count) in self._epoch_losses.items():
            t = torch.stack([torch.as_tensor(total, dtype=torch.float32, device=self.device).reshape(()),
                             torch.tensor(float(count), device=self.device)])
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.all_reduce(t)  # every process must agree on DWA's weights
            means[name] = float(t[0] / t[1].clamp(min=1))
        self._epoch_losses = {}
        self.weighting.epoch_end(means)
        for key, cos in self.task_grads.epoch_cosines().items():
            self.log(f"conflict/cos/{key}", cos)
        weights = getattr(self.model.fusion, "modality_weights", None)
        if callable(weights):  # weighted_sum: learned modality weights, every epoch
            for name, w in weights().items():
                self.log(f"fusion/weight/{name}", float(w))

    # -- optimisation ----------------------------------------------------------------------------
    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        return build_optimizer(self.model, self.cfg["optim"], int(self.trainer.estimated_stepping_batches),
                               extra=self.weighting.parameters())
