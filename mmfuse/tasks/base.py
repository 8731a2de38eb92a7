"""The task contract: a task turns the ``tasks.<name>`` config block into a head, a loss, predictions
and a metric. Tasks hold no parameters themselves: their heads live in ``FusionModel.heads[<name>]``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

from torch import Tensor, nn
from torchmetrics import MeanMetric, Metric

from mmfuse.registry import Registry


@dataclass
class TaskContext:
    """What the data tells the heads (sizes are never typed twice in YAML).

    Attributes:
        dim: the fusion's output size.
        answers: the answer vocabulary (classifier unit ``i`` ↔ ``answers[i]``).
        answer_types, question_types: every type in the data.
        answer_words: the answer generator's word vocabulary (without special tokens).
    """

    dim: int
    answers: Sequence[str] = ()
    answer_types: Sequence[str] = ()
    question_types: Sequence[str] = ()
    answer_words: Sequence[str] = field(default_factory=list)


class TaskResult(NamedTuple):
    """One task's output on one batch.

    Attributes:
        loss: scalar loss over the batch's labelled rows (None when the task has nothing to learn
            from this batch, e.g. no labelled row).
        predictions: answer strings per question (answer tasks, when predicting), else None.
        correct: ``[N]`` 0/1 per scored item (accuracy tasks), else None.
    """

    loss: Tensor | None
    predictions: list[str] | None = None
    correct: Tensor | None = None


class Task(ABC):
    """Base class. Subclasses set ``name`` and ``answers`` (True: predictions are answer strings scored
    with the VQA metric) and implement :meth:`build_head` and :meth:`run`."""

    name: ClassVar[str] = ""
    answers: ClassVar[bool] = False
    predict_in_training: ClassVar[bool] = True  # False: predictions cost too much to score every training step

    def __init__(self, spec: Mapping[str, Any], ctx: TaskContext) -> None:
        self.spec, self.ctx = dict(spec), ctx

    @property
    def weight(self) -> float:
        return float(self.spec.get("weight", 1.0))

    @abstractmethod
    def build_head(self) -> nn.Module:
        """This task's head, sized from ``self.ctx`` and ``self.spec``."""

    @abstractmethod
    def run(self, head: nn.Module, out: Mapping[str, Any], batch: Mapping[str, Any], model: nn.Module,
            predict: bool) -> TaskResult:
        """Loss (and, with ``predict``, predictions) of this task on ``batch``.

        ``out`` is ``FusionModel.forward``'s dict (fusion output, encodings, classifier logits).
        """

    def make_metric(self) -> Metric:
        """A fresh metric; accuracy tasks average their ``correct`` values."""
        return MeanMetric()


TASKS: Registry[type[Task]] = Registry("task")


def register_task(name: str) -> Callable[[type[Task]], type[Task]]:
    """Class decorator: register a :class:`Task` under ``name`` (``tasks.active``; its options are the
    ``tasks.<name>`` block of ``configs/base.yaml``)."""
    return TASKS.register(name)


def list_tasks() -> list[str]:
    """Names of every registered task."""
    return TASKS.names()


def list_answer_tasks() -> list[str]:
    """The registered tasks whose predictions are answer strings (what ``eval.task`` may score)."""
    return [name for name in TASKS.names() if TASKS.get(name).answers]


def labelled_rows(batch: Mapping[str, Any]) -> list[int]:
    """Rows with at least one ground-truth answer (unlabelled test-server rows only get predictions)."""
    return [i for i, a in enumerate(batch["answers"]) if a]
