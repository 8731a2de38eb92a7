"""What every stage's LightningModule shares: the model and its tasks built from plain config, the metrics
per stage × task (× dataset), the evaluation steps, the test predictions and the checkpoint extras.

:class:`~mmfuse.systems.supervised.SupervisedSystem` and :class:`~mmfuse.systems.rl.RLSystem` are siblings
on this base: each adds only its own training (loss weighting and regularisers; rollouts and PPO)."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric, Metric

from mmfuse import random_state
from mmfuse.config import complete_config
from mmfuse.errors import Diverged
from mmfuse.model import FusionModel, build_model
from mmfuse.objectives.nonfinite import first_nonfinite_grad, first_nonfinite_term
from mmfuse.random_state import Stream
from mmfuse.tasks import TaskContext, TaskResult, build_heads, build_tasks, primary_task

STAGES = ("train", "val", "test")
TOTAL = "__total__"  # the weighted sum's slot among the per-task evaluation losses
__all__ = ["STAGES", "BaseSystem"]


class BaseSystem(L.LightningModule):
    """Builds its model from plain config, so ``load_from_checkpoint(path)`` needs nothing else.

    Args:
        cfg: the whole resolved config as a plain dict (``model``, ``tasks``, ``eval``, ``data`` are read
            here; subclasses read their own blocks).
        answers: the answer vocabulary (classifier unit ``i`` ↔ ``answers[i]``).
        text_vocab_size: tokenizer size (random-init text encoder).
        pad_token_id: tokenizer padding id.
        answer_types: every answer type in the data (metric states and the answer_type head need them).
        fusion: optional built fusion module (research code); not stored in hparams, so pass
            it again to ``load_from_checkpoint``.
        question_types: every question type in the data.
        answer_words: the answer generator's word vocabulary (``answer_generation``).

    Evaluation logs ``<stage>/loss`` (the task losses summed with their ``tasks.<t>.weight``; a subclass may
    combine them otherwise, see :meth:`total_loss`), ``<stage>/loss/<task>``, ``<stage>/acc`` (+ per answer /
    question type) of the primary task, ``<stage>/<task>/acc`` for every task and, with several datasets,
    ``<stage>/<dataset>/<task>/acc``. The test stage collects ``predictions`` (``question_id``, ``answer``)
    of ``prediction_task``.
    """

    def __init__(self, cfg: dict[str, Any], answers: Sequence[str], text_vocab_size: int | None = None,
                 pad_token_id: int = 0, answer_types: Sequence[str] = (), fusion: nn.Module | None = None,
                 question_types: Sequence[str] = (), answer_words: Sequence[str] = ()) -> None:
        super().__init__()
        # Lightning collects the subclasses' __init__ arguments too; objects are not config
        self.save_hyperparameters(ignore=["fusion", "reward"])
        cfg = complete_config(cfg)
        self.cfg = cfg
        self.nonfinite_policy = str(cfg["loss"].get("nonfinite", "stop"))
        self.nonfinite_skipped = 0  # batches whose update was dropped (loss.nonfinite=skip_batch)
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
        mixture = cfg["data"].get("mixture") or []
        self.datasets = [str(e["name"]) for e in mixture] or [str(cfg["data"]["source"])]
        self.dataset_tasks = {str(e["name"]): list(e.get("tasks") or self.active) for e in mixture}
        self.set_answer_types(answer_types, question_types)
        self.tokenizer_json: str | None = None  # restored from / written to checkpoints
        self.predictions: list[dict[str, Any]] = []
        self._random_to_restore: dict[str, Any] | None = None  # from a checkpoint, for the first resumed step

    def set_answer_types(self, answer_types: Sequence[str], question_types: Sequence[str] = ()) -> None:
        """(Re)create the metrics (per stage × task, and × dataset when there are several)."""
        for task in self.tasks.values():
            task.ctx.answer_types, task.ctx.question_types = list(answer_types), list(question_types)
        keys = [(s, t, d) for s in STAGES for t in self.active for d in self._dataset_slots()]
        # ModuleDict keys must not shadow nn.Module attributes ("train"), hence the suffixes.
        self.metrics = nn.ModuleDict({self._key(*k): self.tasks[k[1]].make_metric() for k in keys})
        self.eval_losses = nn.ModuleDict({f"{s}__{t}": MeanMetric(nan_strategy="disable") for s in ("val", "test")
                                          for t in [*self.active, TOTAL]})

    def _dataset_slots(self) -> list[str | None]:
        """None (all datasets together), then each dataset when there are several."""
        return [None, *(self.datasets if len(self.datasets) > 1 else [])]

    @staticmethod
    def _key(stage: str, task: str, dataset: str | None = None) -> str:
        return f"{stage}_{task}" + (f"__{dataset}" if dataset else "")

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        return self.model(batch)

    # -- the shared step ----------------------------------------------------------------------------
    def _step(self, batch: dict[str, Any], stage: str) -> Tensor | None:
        """Every task of the batch's dataset: losses logged, metrics updated; returns :meth:`total_loss`
        (None for a batch whose every image was unreadable: ``data.skip_bad_records`` dropped it whole)."""
        if not batch["question_id"]:
            return None
        if batch.get("padding") and stage != "train":
            self.model(batch)  # a repeat that keeps the processes in step (DDP syncs every forward): not scored
            return None
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
                self._log_loss(stage, name, result.loss, n)
            self._update_metrics(stage, name, dataset, result, batch)
        if not losses:
            return None
        total = self.total_loss(losses, stage, n)
        self._log_loss(stage, None, total, n)
        return total

    def _log_loss(self, stage: str, task: str | None, loss: Tensor, n: int) -> None:
        """``<stage>/loss`` (``task`` None) or ``<stage>/loss/<task>``: logged per step in training; in
        evaluation accumulated in a metric, so the processes of a distributed run sync the same keys in the
        same order at the epoch's end, whatever batches each got (Lightning's ``sync_dist`` reduces only the
        keys a process happened to log)."""
        if stage == "train":
            self.log("train/loss" + (f"/{task}" if task else ""), loss, on_step=task is None, on_epoch=True,
                     batch_size=n, prog_bar=task is None, add_dataloader_idx=False)
        else:
            cast(MeanMetric, self.eval_losses[f"{stage}__{task or TOTAL}"]).update(loss.detach(), weight=n)

    def total_loss(self, losses: Mapping[str, Tensor], stage: str, batch_size: int) -> Tensor:
        """The task losses combined: ``Σ_t weight_t · L_t`` with the tasks' static weights."""
        total = sum(self.tasks[t].weight * loss.reshape(()) for t, loss in losses.items())
        return total  # type: ignore[return-value]

    def _update_metrics(self, stage: str, name: str, dataset: str, result: TaskResult,
                        batch: dict[str, Any]) -> None:
        keys = [self._key(stage, name)] + ([self._key(stage, name, dataset)] if len(self.datasets) > 1 else [])
        if result.predictions is not None:
            rows = [i for i, a in enumerate(batch["answers"]) if a]  # unlabelled (test-server) data: predict only
            if rows:
                fields = [[x[i] for i in rows] for x in (result.predictions, batch["answers"], batch["answer_type"],
                                                         batch["question_type"])]
                for k in keys:
                    cast(Metric, self.metrics[k]).update(*fields)
            if stage == "test" and name == self.prediction_task:
                extra = {"dataset": dataset} if len(self.datasets) > 1 else {}
                self.predictions.extend({"question_id": q, "answer": a, **extra}
                                        for q, a in zip(batch["question_id"], result.predictions))
        elif result.correct is not None and result.correct.numel():
            for k in keys:
                cast(Metric, self.metrics[k]).update(result.correct)

    def _epoch_end(self, stage: str) -> None:
        dist = torch.distributed.is_available() and torch.distributed.is_initialized()
        if stage != "train":
            for task in [*self.active, TOTAL]:  # every process, same order: the metrics sync here
                loss = cast(MeanMetric, self.eval_losses[f"{stage}__{task}"])
                if seen_anywhere(loss, dist):
                    self.log(f"{stage}/loss" + ("" if task == TOTAL else f"/{task}"), loss.compute(), sync_dist=False)
                loss.reset()
        for name in self.active:
            for dataset in self._dataset_slots():
                metric = cast(Metric, self.metrics[self._key(stage, name, dataset)])
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

    # -- evaluation hooks ---------------------------------------------------------------------------
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

    # -- divergence --------------------------------------------------------------------------------
    def nonfinite(self, what: str) -> None:
        """A non-finite loss or gradient at this step (``what`` names it): ``loss.nonfinite=stop`` raises
        :class:`Diverged` before any weight changes; ``skip_batch`` counts it (the caller drops the update)."""
        if self.nonfinite_policy == "skip_batch":
            self.nonfinite_skipped += 1
            self.log("train/nonfinite_skipped", float(self.nonfinite_skipped), on_step=True, on_epoch=False,
                     batch_size=1)
            return
        last = self._last_checkpoint()
        raise Diverged(f"training diverged at step {self.global_step} (epoch {self.current_epoch}): {what} is not "
                       f"finite; stopped before the optimiser step, so no weight or checkpoint holds it. Last "
                       f"checkpoint: {last or 'none written yet'}. Lower optim.lr or a tasks.<t>.weight, add "
                       "optim.grad_clip, or set loss.nonfinite=skip_batch to drop such batches")

    def check_loss(self, total: Tensor, terms: Mapping[str, Tensor]) -> bool:
        """True if ``total`` is finite; otherwise :meth:`nonfinite` with the first non-finite of ``terms`` (task
        losses, then regularisers; if all are finite, the weighted sum overflowed) and False."""
        if bool(torch.isfinite(total.detach()).all()):
            return True
        first = first_nonfinite_term(terms)
        self.nonfinite(f"the loss ({first})" if first else
                       f"the weighted total loss = {total.detach().float().item()} (every term finite: the task "
                       f"weights overflow it)")
        return False

    def check_grads(self) -> bool:
        """True if every gradient is finite; otherwise :meth:`nonfinite` naming the first parameter, and
        False (the caller drops the update)."""
        bad = first_nonfinite_grad(self.named_parameters())
        if bad is None:
            return True
        self.nonfinite(f"the gradient of {bad}")
        return False

    def _last_checkpoint(self) -> str | None:
        if self._trainer is None:
            return None
        dirs = {Path(d) for c in self.trainer.checkpoint_callbacks if (d := getattr(c, "dirpath", None))}
        files = [f for d in dirs if d.is_dir() for f in d.glob("*.ckpt")]
        return str(max(files, key=lambda f: f.stat().st_mtime)) if files else None

    # -- checkpoint extras --------------------------------------------------------------------------
    def random_streams(self) -> dict[str, Stream]:
        """This system's own generators that training steps draw from (besides the global streams): saved
        in every checkpoint, restored before a resumed run's first step. Subclasses add theirs."""
        return {f"task.{n}": rng for n, t in self.tasks.items()
                if isinstance(rng := getattr(t, "rng", None), random.Random | torch.Generator)}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # parameters only: some buffers hold NaN by design (DWA's loss history before its first epochs)
        if (bad := first_nonfinite_term(dict(self.named_parameters()))) is not None:
            raise Diverged(f"refusing to save a checkpoint with non-finite weights ({bad})")
        if self.tokenizer_json is not None:
            checkpoint["mmfuse_tokenizer"] = self.tokenizer_json
        # the streams as the next training step will find them: between two steps nothing else draws from
        # them (batches draw from their own seeds, loaders from their own generators)
        checkpoint["mmfuse_random"] = random_state.capture(self.random_streams())

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.tokenizer_json = checkpoint.get("mmfuse_tokenizer")
        self._random_to_restore = checkpoint.get("mmfuse_random")

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # restored here, not on load: between the load and the first step Lightning's sanity check and
        # the loaders' start may draw numbers the uninterrupted run drew elsewhere or not at all
        if self._random_to_restore is not None:
            random_state.restore(self._random_to_restore, self.random_streams())
            self._random_to_restore = None


def seen_anywhere(metric: MeanMetric, dist: bool) -> bool:
    """Whether any process updated ``metric`` (a collective in a distributed run: call it on every process)."""
    if not dist:
        return bool(metric.update_called)
    weight = torch.as_tensor(metric.weight, dtype=torch.float64, device=metric.device).sum().reshape(1)
    torch.distributed.all_reduce(weight)
    return bool(weight.item() > 0)
