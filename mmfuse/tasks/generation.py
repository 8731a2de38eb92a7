"""``answer_generation``: a transformer decoder over the fused tokens writes the answer text, trained by
teacher forcing and scored with the VQA accuracy of the decoded string."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
from torch import nn
from torchmetrics import Metric

from mmfuse.data.answer_tokens import AnswerTokenizer
from mmfuse.heads.generator import AnswerGenerator
from mmfuse.metrics.scoring import majority_answer
from mmfuse.metrics.vqa_metric import VQAAccuracy
from mmfuse.tasks.base import TASKS, Task, TaskContext, TaskResult, labelled_rows


def most_common_answer(answers: Sequence[str]) -> str:
    """The most frequent normalised answer (ties: the one given first): the ``most_common`` target."""
    answer = majority_answer(answers)
    if answer is None:
        raise ValueError("most_common_answer needs at least one answer")
    return answer


# tasks.answer_generation.target: the teacher-forcing answer of an example
TARGETS = ("most_common", "random")


@TASKS.register("answer_generation")
class AnswerGenerationTask(Task):
    """Generative answering. ``tasks.answer_generation`` sets the decoder size, the teacher-forcing
    target (``most_common`` annotator answer, or one ``random`` annotator answer per example and step,
    the common generative recipe) and the decoding used for validation/test predictions."""

    name, answers = "answer_generation", True
    predict_in_training = False  # decoding is a loop over tokens: predictions only when scored (val/test)

    def __init__(self, spec: Mapping[str, Any], ctx: TaskContext) -> None:
        super().__init__(spec, ctx)
        self.tokenizer = AnswerTokenizer(list(ctx.answer_words))
        self.rng = random.Random(0)

    def build_head(self) -> nn.Module:
        s = self.spec
        return AnswerGenerator(self.ctx.dim, len(self.tokenizer), num_layers=s["layers"], num_heads=s["heads"],
                               dropout=s["dropout"], max_length=s["max_length"], pad_id=self.tokenizer.pad_id,
                               bos_id=self.tokenizer.bos_id, eos_id=self.tokenizer.eos_id)

    def target_answers(self, batch: Mapping[str, Any], rows: Sequence[int]) -> list[str]:
        if self.spec["target"] == "random":
            return [self.rng.choice(batch["answers"][i]) for i in rows]
        return [most_common_answer(batch["answers"][i]) for i in rows]

    def run(self, head: nn.Module, out: Mapping[str, Any], batch: Mapping[str, Any], model: nn.Module,
            predict: bool) -> TaskResult:
        fused = out["fusion"]
        rows = labelled_rows(batch)
        loss = None
        if rows:
            idx = torch.as_tensor(rows, device=fused.pooled.device)
            sub = type(fused)(*(None if x is None else x[idx] for x in fused))
            tokens = self.tokenizer.encode_batch(self.target_answers(batch, rows), self.spec["max_length"])
            loss = cast(AnswerGenerator, head).loss(sub, tokens.to(idx.device),  # build_head's AnswerGenerator
                                                    label_smoothing=self.spec["label_smoothing"])
        preds = self.decode(head, fused) if predict else None
        return TaskResult(loss, preds)

    def decode(self, head: nn.Module, fused: Any, generator: torch.Generator | None = None) -> list[str]:
        """Answer strings under the configured decoding (greedy, sampled or beam)."""
        s = self.spec
        with torch.no_grad():
            gen = cast(AnswerGenerator, head).generate(fused, strategy=s["decode"], temperature=s["temperature"],
                                                       top_k=s["top_k"], num_beams=s["num_beams"], generator=generator)
        return self.tokenizer.decode_batch(gen.tokens)

    def make_metric(self) -> Metric:
        return VQAAccuracy(list(self.ctx.answer_types), list(self.ctx.question_types))
