"""The supervised LightningModule: one shared step for train/val/test, one metric per stage."""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import lightning as L
import torch
from torch import Tensor, nn

from mmfuse.metrics.vqa import VQAAccuracy
from mmfuse.model import FusionModel, build_model
from mmfuse.objectives import VQA_LOSSES

STAGES = ("train", "val", "test")


def warmup_cosine(step: int, total: int, warmup: int, min_ratio: float = 0.0) -> float:
    """Learning-rate multiplier: linear warm-up to 1 over ``warmup`` steps, then cosine to ``min_ratio``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class SupervisedSystem(L.LightningModule):
    """Builds its model from plain config, so ``load_from_checkpoint(path)`` needs nothing else.

    Args:
        cfg: the whole resolved config as a plain dict (``model``, ``optim`` are read).
        answers: the answer vocabulary (classifier unit ``i`` ↔ ``answers[i]``).
        text_vocab_size: tokenizer size (random-init text encoder).
        pad_token_id: tokenizer padding id.
        answer_types: every answer type in the data (metric states need them up front).
        question_types: every question type in the data (likewise).
        fusion: optional built fusion module (research code); not stored in hparams, so pass
            it again to ``load_from_checkpoint``.
    """

    def __init__(self, cfg: dict[str, Any], answers: Sequence[str], text_vocab_size: Optional[int] = None,
                 pad_token_id: int = 0, answer_types: Sequence[str] = (), fusion: Optional[nn.Module] = None,
                 question_types: Sequence[str] = ()) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["fusion"])
        self.cfg = cfg
        self.answers = list(answers)
        self.model: FusionModel = build_model(cfg["model"], len(self.answers), text_vocab_size, pad_token_id, fusion)
        self.loss_fn = VQA_LOSSES[cfg["model"]["head"]["loss"]]
        self.set_answer_types(answer_types, question_types)
        self.tokenizer_json: Optional[str] = None  # restored from / written to checkpoints
        self.predictions: list[dict[str, Any]] = []

    def set_answer_types(self, answer_types: Sequence[str], question_types: Sequence[str] = ()) -> None:
        """(Re)create the per-stage metrics for these answer and question types."""
        # ModuleDict keys must not shadow nn.Module attributes ("train"), hence the suffix.
        self.metrics = nn.ModuleDict({f"{s}_vqa": VQAAccuracy(list(answer_types), list(question_types)) for s in STAGES})

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        return self.model(batch)

    # -- shared step ------------------------------------------------------------------------------
    def _step(self, batch: dict[str, Any], stage: str) -> Tensor:
        out = self.model(batch)
        logits = out["vqa"]  # [B,V]
        loss = self.loss_fn(logits, batch["targets"]["vqa"])
        n = logits.shape[0]
        preds = [self.answers[i] for i in logits.argmax(-1).tolist()]
        labelled = [i for i, a in enumerate(batch["answers"]) if a]  # unlabelled (test-server) data: predict only
        if labelled:
            self.metrics[f"{stage}_vqa"].update(*([x[i] for i in labelled] for x in (
                preds, batch["answers"], batch["answer_type"], batch["question_type"])))
        self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True, batch_size=n,
                 prog_bar=stage == "train", sync_dist=stage != "train")
        if stage == "test":
            self.predictions.extend({"question_id": q, "answer": a} for q, a in zip(batch["question_id"], preds))
        return loss

    def _epoch_end(self, stage: str) -> None:
        metric = self.metrics[f"{stage}_vqa"]
        if int(metric.count) == 0 and not torch.distributed.is_initialized():
            return
        for key, value in metric.compute().items():
            self.log(f"{stage}/{key}", value, prog_bar=key == "acc", sync_dist=False)
        metric.reset()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def on_train_epoch_end(self) -> None:
        self._epoch_end("train")
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
            self.predictions = list({p["question_id"]: p for part in parts for p in part}.values())

    # -- checkpoint extras -----------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.tokenizer_json is not None:
            checkpoint["mmfuse_tokenizer"] = self.tokenizer_json

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.tokenizer_json = checkpoint.get("mmfuse_tokenizer")

    # -- optimisation ----------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        return build_optimizer(self.model, self.cfg["optim"], int(self.trainer.estimated_stepping_batches))


def build_optimizer(model: FusionModel, o: dict[str, Any], total_steps: int) -> dict[str, Any]:
    """AdamW (``encoder_lr`` for pretrained encoders, no decay on biases/norms/scalars) and a
    per-step warm-up + cosine schedule, in Lightning's ``configure_optimizers`` format."""
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        enc = name.split(".")[1] if name.startswith("encoders.") else None
        lr = o["encoder_lr"] if enc and getattr(model.encoders[enc], "is_pretrained", False) else o["lr"]
        wd = 0.0 if p.ndim <= 1 else o["weight_decay"]
        groups.setdefault((lr, wd), []).append(p)
    params = [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]
    opt = torch.optim.AdamW(params, betas=tuple(o["betas"]))
    total = max(1, total_steps)
    warmup = int(o["warmup_ratio"] * total)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, total, warmup, o["min_lr_ratio"]))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
