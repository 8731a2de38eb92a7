"""The supervised LightningModule: every active task on the shared encoders and fusion, one shared step
for train/val/test, weighted and regularised objectives, metrics per stage, task and dataset."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import lightning as L
import torch
from torch import Tensor, nn

from mmfuse.config import complete_config
from mmfuse.model import FusionModel, build_model
from mmfuse.objectives.multitask import build_weighting
from mmfuse.systems.optim import build_optimizer, warmup_cosine
from mmfuse.systems.regularization import Regularization
from mmfuse.systems.task_grads import TaskGradients
from mmfuse.tasks import TaskContext, build_heads, build_tasks, primary_task

STAGES = ("train", "val", "test")
__all__ = ["SupervisedSystem", "build_optimizer", "warmup_cosine"]


class SupervisedSystem(L.LightningModule):
    """Builds its model from plain config, so ``load_from_checkpoint(path)`` needs nothing else.

    Args:
        cfg: the whole resolved config as a plain dict (``model``, ``tasks``, ``loss``,
            ``regularization``, ``optim``, ``data.mixture`` are read).
        answers: the answer vocabulary (classifier unit ``i`` ↔ ``answers[i]``).
        text_vocab_size: tokenizer size (random-init text encoder).
        pad_token_id: tokenizer padding id.
        answer_types: every answer type in the data (metric states and the answer_type head need them).
        fusion: optional built fusion module (research code); not stored in hparams, so pass
            it again to ``load_from_checkpoint``.
        question_types: every question type in the data.
        answer_words: the answer generator's word vocabulary (``answer_generation``).

    Logged: ``<stage>/loss`` (weighted total), ``<stage>/loss/<task>``, ``<stage>/acc`` (+ per answer /
    question type) of the primary task, ``<stage>/<task>/acc`` for every task and, with several
    datasets, ``<stage>/<dataset>/<task>/acc``; in training also ``weight/<task>``, ``reg/<term>`` and
    ``conflict/cos/<a>~<b>`` (cosine between two tasks' gradients on the shared parameters).
    """

    def __init__(self, cfg: dict[str, Any], answers: Sequence[str], text_vocab_size: Optional[int] = None,
                 pad_token_id: int = 0, answer_types: Sequence[str] = (), fusion: Optional[nn.Module] = None,
                 question_types: Sequence[str] = (), answer_words: Sequence[str] = ()) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["fusion", "reward"])  # objects, not config
        cfg = complete_config(cfg)
        self.cfg = cfg
        self.answers = list(answers)
        self.active = list(cfg["tasks"]["active"])
        self.primary = primary_task(self.active)
        self.prediction_task = cfg["eval"].get("task") or self.primary
        ctx = TaskContext(int(cfg["model"]["fusion"]["dim"]), self.answers, list(answer_types),
                          list(question_types), list(answer_words))
        self.tasks = build_tasks(cfg["tasks"], ctx)
        self.model: FusionModel = build_model(cfg["model"], text_vocab_size=text_vocab_size, pad_token_id=pad_token_id,
                                              fusion=fusion, heads=lambda: build_heads(self.tasks),
                                              num_frames=int(cfg["data"]["video"]["num_frames"]))
        self.weighting = build_weighting(cfg["loss"]["weighting"], self.active,
                                         {t: task.weight for t, task in self.tasks.items()}, **cfg["loss"]["options"])
        self.regularization = Regularization(self.model, cfg["regularization"])
        self.task_grads = TaskGradients(self.model, self.weighting, int(cfg["loss"]["conflict_every_n_steps"]))
        mixture = cfg["data"].get("mixture") or []
        self.datasets = [str(e["name"]) for e in mixture] or [str(cfg["data"]["source"])]
        self.dataset_tasks = {str(e["name"]): list(e.get("tasks") or self.active) for e in mixture}
        self.set_answer_types(answer_types, question_types)
        self.tokenizer_json: Optional[str] = None  # restored from / written to checkpoints
        self.predictions: list[dict[str, Any]] = []
        self._epoch_losses: dict[str, list[Any]] = {}  # task -> [loss sum, steps] this epoch

    def set_answer_types(self, answer_types: Sequence[str], question_types: Sequence[str] = ()) -> None:
        """(Re)create the metrics (per stage × task, and × dataset when there are several)."""
        for task in self.tasks.values():
            task.ctx.answer_types, task.ctx.question_types = list(answer_types), list(question_types)
        keys = [(s, t, d) for s in STAGES for t in self.active for d in self._dataset_slots()]
        # ModuleDict keys must not shadow nn.Module attributes ("train"), hence the suffixes.
        self.metrics = nn.ModuleDict({self._key(*k): self.tasks[k[1]].make_metric() for k in keys})

    def _dataset_slots(self) -> list[Optional[str]]:
        """None (all datasets together), then each dataset when there are several."""
        return [None, *(self.datasets if len(self.datasets) > 1 else [])]

    @staticmethod
    def _key(stage: str, task: str, dataset: Optional[str] = None) -> str:
        return f"{stage}_{task}" + (f"__{dataset}" if dataset else "")

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        return self.model(batch)

    # -- shared step ------------------------------------------------------------------------------
    def _step(self, batch: dict[str, Any], stage: str) -> Optional[Tensor]:
        out = self.model(batch)
        dataset = batch.get("dataset", self.datasets[0])
        names = self.dataset_tasks.get(dataset, self.active)
        n = len(batch["question_id"])
        losses: dict[str, Tensor] = {}
        for name in names:
            predict = stage != "train" or self.tasks[name].predict_in_training
            result = self.tasks[name].run(self.model.heads[name], out, batch, self.model, predict)
            if result.loss is not None:
                losses[name] = result.loss
                self.log(f"{stage}/loss/{name}", result.loss, on_epoch=True, on_step=False, batch_size=n,
                         sync_dist=stage != "train", add_dataloader_idx=False)
            self._update_metrics(stage, name, dataset, result, batch)
        if not losses:
            return None
        total, weights = self.weighting(losses)
        if stage == "train":
            for name, w in weights.items():
                self.log(f"weight/{name}", float(w), on_epoch=True, on_step=False, batch_size=n)
                acc = self._epoch_losses.setdefault(name, [0.0, 0])  # a tensor sum: no device sync per step
                acc[0], acc[1] = acc[0] + losses[name].detach().float(), acc[1] + 1
            self.task_grads.step(losses, weights, self.global_step)
            for key, term in self.regularization(self.model).items():
                total = total + term
                self.log(key, term, on_step=True, on_epoch=True, batch_size=n)
        self.log(f"{stage}/loss", total, on_step=stage == "train", on_epoch=True, batch_size=n,
                 prog_bar=stage == "train", sync_dist=stage != "train", add_dataloader_idx=False)
        return total

    def _update_metrics(self, stage: str, name: str, dataset: str, result: Any, batch: dict[str, Any]) -> None:
        keys = [self._key(stage, name)] + ([self._key(stage, name, dataset)] if len(self.datasets) > 1 else [])
        if result.predictions is not None:
            rows = [i for i, a in enumerate(batch["answers"]) if a]  # unlabelled (test-server) data: predict only
            if rows:
                fields = [[x[i] for i in rows] for x in (result.predictions, batch["answers"], batch["answer_type"],
                                                         batch["question_type"])]
                for k in keys:
                    self.metrics[k].update(*fields)
            if stage == "test" and name == self.prediction_task:
                extra = {"dataset": dataset} if len(self.datasets) > 1 else {}
                self.predictions.extend({"question_id": q, "answer": a, **extra}
                                        for q, a in zip(batch["question_id"], result.predictions))
        elif result.correct is not None and result.correct.numel():
            for k in keys:
                self.metrics[k].update(result.correct)

    def _epoch_end(self, stage: str) -> None:
        dist = torch.distributed.is_available() and torch.distributed.is_initialized()
        for name in self.active:
            for dataset in self._dataset_slots():
                metric = self.metrics[self._key(stage, name, dataset)]
                if not metric.update_called and not dist:
                    continue
                value = metric.compute()
                values = value if isinstance(value, dict) else {"acc": value}
                prefix = f"{stage}/{dataset}/{name}" if dataset else f"{stage}/{name}"
                self.log(f"{prefix}/acc", values["acc"], sync_dist=False)
                if dataset is None and name == self.primary:
                    for key, v in values.items():
                        self.log(f"{stage}/{key}", v, prog_bar=key == "acc", sync_dist=False)
                metric.reset()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Optional[Tensor]:
        return self._step(batch, "train")

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

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_start(self) -> None:
        self.predictions = []

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # each rank saw a share of the questions: every rank gets them all (padding duplicates dropped)
            parts: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(parts, self.predictions)
            self.predictions = list({(p.get("dataset"), p["question_id"]): p for part in parts for p in part}.values())

    # -- checkpoint extras -----------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.tokenizer_json is not None:
            checkpoint["mmfuse_tokenizer"] = self.tokenizer_json

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.tokenizer_json = checkpoint.get("mmfuse_tokenizer")

    # -- optimisation ----------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        return build_optimizer(self.model, self.cfg["optim"], int(self.trainer.estimated_stepping_batches),
                               extra=self.weighting.parameters())
