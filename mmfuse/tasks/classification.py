"""Classification tasks on the fused pooled vector: ``vqa`` (answers), ``answer_type``, ``itm``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric

from mmfuse.errors import ConfigError
from mmfuse.fusion.base import FusionOutput
from mmfuse.heads import ClassifierHead
from mmfuse.metrics.vqa_metric import VQAAccuracy
from mmfuse.objectives import VQA_LOSSES
from mmfuse.tasks.base import TASKS, Task, TaskContext, TaskResult, labelled_rows


@TASKS.register("vqa")
class VQATask(Task):
    """Answer classification over the answer vocabulary with soft VQA targets
    (``batch["targets"]["vqa"] [B,V]``); predictions are the arg-max answers."""

    name, answers = "vqa", True

    def build_head(self) -> nn.Module:
        return ClassifierHead(self.ctx.dim, len(self.ctx.answers), hidden=self.spec["hidden"],
                              dropout=self.spec["dropout"])

    def run(self, head: nn.Module, out: Mapping[str, Any], batch: Mapping[str, Any], model: nn.Module,
            predict: bool) -> TaskResult:
        logits = out["vqa"]  # [B,V]
        rows = labelled_rows(batch)
        loss = None
        if rows:
            idx = torch.as_tensor(rows, device=logits.device)
            loss = VQA_LOSSES[self.spec["loss"]](logits[idx], batch["targets"]["vqa"][idx])
        preds = [self.ctx.answers[i] for i in logits.argmax(-1).tolist()] if predict else None
        return TaskResult(loss, preds)

    def make_metric(self) -> Metric:
        return VQAAccuracy(list(self.ctx.answer_types), list(self.ctx.question_types))


@TASKS.register("answer_type")
class AnswerTypeTask(Task):
    """Classify the answer type (``yes/no``, ``number``, ...); rows without a type are ignored."""

    name = "answer_type"

    def __init__(self, spec: Mapping[str, Any], ctx: TaskContext) -> None:
        super().__init__(spec, ctx)
        self.classes = list(ctx.answer_types)  # fixed at build: output unit i ↔ classes[i]

    def build_head(self) -> nn.Module:
        return ClassifierHead(self.ctx.dim, max(1, len(self.classes)), hidden=self.spec["hidden"],
                              dropout=self.spec["dropout"])

    def targets(self, batch: Mapping[str, Any], device: torch.device) -> Tensor:
        index = {t: i for i, t in enumerate(self.classes)}
        return torch.as_tensor([index.get(t, -100) for t in batch["answer_type"]], device=device)  # [B]

    def run(self, head: nn.Module, out: Mapping[str, Any], batch: Mapping[str, Any], model: nn.Module,
            predict: bool) -> TaskResult:
        logits = out["answer_type"]  # [B,K]
        target = self.targets(batch, logits.device)
        valid = target >= 0
        if not bool(valid.any()):
            return TaskResult(None)
        loss = F.cross_entropy(logits[valid], target[valid])
        correct = (logits[valid].argmax(-1) == target[valid]).float()
        return TaskResult(loss, correct=correct)


def negative_index(index: Tensor, num_images: int) -> Tensor:
    """For each question, another image row of the batch: ``(i + 1 + b mod (U−1)) mod U``.

    Deterministic (reproducible validation) yet varied (the shift changes along the batch and the
    batches are reshuffled every epoch); never the question's own row when ``U ≥ 2``.
    """
    b = torch.arange(index.shape[0], device=index.device)
    return (index + 1 + b % max(1, num_images - 1)) % num_images


class _Fuses(Protocol):
    """What ITM needs of the model (``FusionModel.fuse``): fuse question rows with other image rows."""

    def fuse(self, text: Any, image: Any, index: Tensor | None) -> FusionOutput: ...


@TASKS.register("itm")
class ITMTask(Task):
    """Image–text matching: a binary head on the fused vector says whether the question was asked
    about this image. Positives are the batch's true pairs; each question is also fused with another
    image of the batch (:func:`negative_index`) as a negative. Batches with a single image have no
    negatives and are skipped. Accuracy counts positives and negatives alike."""

    name = "itm"

    def build_head(self) -> nn.Module:
        return ClassifierHead(self.ctx.dim, 1, hidden=self.spec["hidden"], dropout=self.spec["dropout"])

    def run(self, head: nn.Module, out: Mapping[str, Any], batch: Mapping[str, Any], model: nn.Module,
            predict: bool) -> TaskResult:
        if "text" not in out or "image" not in out:  # load_config refuses this; a hand-built model may not
            raise ConfigError("the itm task needs both modalities, but this model has only "
                              f"{'text' if 'text' in out else 'image'} (model.modalities); drop itm from tasks.active")
        index = out["image_index"]
        num_images = out["image"].tokens.shape[0]
        if index is None:
            index = torch.arange(num_images, device=out["image"].tokens.device)
        if num_images < 2:
            return TaskResult(None)
        negative = cast(_Fuses, model).fuse(out["text"], out["image"], negative_index(index, num_images))
        logits = torch.cat([out["itm"][:, 0], head(negative)[:, 0]])  # [2B]: positives, then negatives
        labels = torch.cat([torch.ones_like(index), torch.zeros_like(index)]).to(logits.dtype)
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        return TaskResult(loss, correct=((logits > 0).to(labels.dtype) == labels).float())
