"""Tasks: the ``tasks:`` config block turned into heads, losses, predictions and metrics.

Registered tasks: ``vqa`` (answer classification), ``answer_generation`` (decoder writing the answer),
``itm`` (image–text matching), ``answer_type`` (answer-type classification). Any subset of
``tasks.active`` trains jointly on the shared encoders and fusion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from mmfuse.tasks.base import (
    TASKS,
    Task,
    TaskContext,
    TaskResult,
    labelled_rows,
    list_answer_tasks,
    list_tasks,
    register_task,
)
from mmfuse.tasks.classification import AnswerTypeTask, ITMTask, VQATask, negative_index
from mmfuse.tasks.generation import AnswerGenerationTask, most_common_answer

__all__ = ["TASKS", "Task", "TaskContext", "TaskResult", "AnswerGenerationTask", "AnswerTypeTask", "ITMTask",
           "VQATask", "build_heads", "build_tasks", "labelled_rows", "list_answer_tasks", "list_tasks",
           "most_common_answer", "negative_index", "primary_task", "register_task"]


def build_tasks(tasks_cfg: Mapping[str, Any], ctx: TaskContext) -> dict[str, Task]:
    """The active tasks, in ``tasks.active`` order, each built from its config block."""
    return {name: TASKS.get(name)(tasks_cfg[name], ctx) for name in tasks_cfg["active"]}


def build_heads(tasks: Mapping[str, Task]) -> dict[str, nn.Module]:
    """One head per task, keyed by task name (``FusionModel.heads``)."""
    return {name: task.build_head() for name, task in tasks.items()}


def primary_task(active: Sequence[str]) -> str:
    """The task whose metric is ``<stage>/acc`` and whose answers are written as predictions:
    ``vqa`` if active, else ``answer_generation``, else the first active task."""
    for name in ("vqa", "answer_generation"):
        if name in active:
            return name
    return active[0]
