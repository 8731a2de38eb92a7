"""The RL stage's evaluation beyond the greedy metric (:class:`~mmfuse.systems.rl.RLSystem`): one sampled
answer per question (its VQA accuracy, its KL to the reference), the configured reward of the greedy and of
the sampled answers, and the test split's sampled answers per question on disk."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric

from mmfuse.metrics.scoring import batch_vqa_accuracy
from mmfuse.metrics.vqa_metric import VQAAccuracy
from mmfuse.model import fuse_batch
from mmfuse.rl import ppo
from mmfuse.systems.base import seen_anywhere
from mmfuse.systems.rl_setup import GENERATION
from mmfuse.tasks.base import TaskResult
from mmfuse.tasks.generation import AnswerGenerationTask
from mmfuse.utils import write_json

__all__ = ["SAMPLED_ANSWERS", "eval_metrics", "greedy_reward", "log_sampled", "sampled_eval", "save_sampled"]

SAMPLED_ANSWERS = "sampled_answers.json"  # in <run>/eval_<split>/, beside per_question.jsonl (the greedy answers)
STAGES = ("val", "test")


def eval_metrics(system: Any, answer_types: Sequence[str], question_types: Sequence[str]) -> None:
    """(Re)create ``system``'s evaluation metrics per stage: ``sampled`` (VQA accuracy of one sampled answer),
    ``sampled_kl`` (its KL to the reference) and ``eval_reward`` (``<stage>__greedy``, ``<stage>__sampled``:
    mean ``rl.reward`` of those answers). MeanMetric states are not saved: checkpoint keys are unchanged."""
    system.sampled = nn.ModuleDict({s: VQAAccuracy(list(answer_types), list(question_types)) for s in STAGES})
    system.sampled_kl = nn.ModuleDict({s: MeanMetric(nan_strategy="disable") for s in STAGES})
    system.eval_reward = nn.ModuleDict({f"{s}__{kind}": MeanMetric(nan_strategy="disable") for s in STAGES
                                        for kind in ("greedy", "sampled")})
    system.sampled_rows = []  # the test stage's sampled answers, one dict per question


def _labelled(batch: dict[str, Any]) -> list[int]:
    """Rows with GT answers (unlabelled test-server questions are predicted, never scored)."""
    return [i for i, a in enumerate(batch["answers"]) if a]


def _reward(system: Any, texts: Sequence[str], batch: dict[str, Any]) -> Tensor:
    """``rl.reward`` of ``texts`` ``[B]`` (float32 on the CPU)."""
    return torch.as_tensor(system.reward_fn(list(texts), batch), dtype=torch.float32).detach().cpu().reshape(-1)


def greedy_reward(system: Any, stage: str, name: str, result: TaskResult, batch: dict[str, Any]) -> None:
    """Accumulate ``<stage>/greedy/reward``: the reward of the generator's greedy answers of this batch (the
    predictions the base evaluation step already decoded, so nothing is generated twice)."""
    if name != GENERATION or stage not in STAGES or result.predictions is None:
        return
    rows = _labelled(batch)
    if rows:
        reward = _reward(system, result.predictions, batch)[rows]  # [n] labelled rows
        cast(MeanMetric, system.eval_reward[f"{stage}__greedy"]).update(reward.mean(), weight=len(rows))


def sampled_eval(system: Any, batch: dict[str, Any], stage: str) -> None:
    """One answer per question sampled at ``rl.temperature`` (from ``system.eval_rng``): its VQA accuracy, its
    exact KL to the reference summed along the answer, its reward; in the test stage also kept per question
    (``system.sampled_rows``: ``question_id``, ``answer``, ``score`` (VQA accuracy), ``reward``)."""
    if not system.rl["eval_sampled"] or batch.get("padding") or not batch["question_id"]:
        return
    r = system.rl
    with torch.no_grad():
        fused = fuse_batch(system.model, batch)
        ref_fused = fuse_batch(system.reference, batch) if system.trunk_trained else fused
        gen = system.generator.generate(fused, "sample", max_new_tokens=r["max_new_tokens"],
                                        temperature=r["temperature"], top_k=r["top_k"], generator=system.eval_rng)
        ref = system.reference.heads[GENERATION](ref_fused, gen.tokens).logits / r["temperature"]
        pol = system.generator(fused, gen.tokens).logits / r["temperature"]
        kl = ppo.exact_token_kl(pol, ref, gen.mask).sum(1)  # [B]
    texts = cast(AnswerGenerationTask, system.tasks[GENERATION]).tokenizer.decode_batch(gen.tokens)
    rows = _labelled(batch)
    reward = _reward(system, texts, batch) if rows else torch.zeros(len(texts))  # [B]; only labelled rows count
    if rows:
        cast(VQAAccuracy, system.sampled[stage]).update([texts[i] for i in rows], *([x[i] for i in rows] for x in (
            batch["answers"], batch["answer_type"], batch["question_type"])))
        cast(MeanMetric, system.eval_reward[f"{stage}__sampled"]).update(reward[rows].mean(), weight=len(rows))
    cast(MeanMetric, system.sampled_kl[stage]).update(kl.mean(), weight=len(texts))
    if stage == "test":
        scores = dict(zip(rows, batch_vqa_accuracy([texts[i] for i in rows], [batch["answers"][i] for i in rows])))
        extra = {"dataset": batch.get("dataset", system.datasets[0])} if len(system.datasets) > 1 else {}
        system.sampled_rows.extend(
            {"question_id": q, "answer": t, "score": scores.get(i), "reward": float(w) if i in scores else None,
             **extra} for i, (q, t, w) in enumerate(zip(batch["question_id"], texts, reward.tolist())))


def log_sampled(system: Any, stage: str) -> None:
    """``<stage>/sampled/acc``, ``<stage>/kl``, ``<stage>/greedy/reward`` and ``<stage>/sampled/reward``; in a
    distributed run every process computes (syncs) each, in this order."""
    dist = torch.distributed.is_available() and torch.distributed.is_initialized()
    metric, kl = cast(VQAAccuracy, system.sampled[stage]), cast(MeanMetric, system.sampled_kl[stage])
    if metric.update_called or dist:
        system.log(f"{stage}/sampled/acc", metric.compute()["acc"], sync_dist=False)
    if seen_anywhere(kl, dist):
        system.log(f"{stage}/kl", kl.compute(), sync_dist=False)
    metric.reset()
    kl.reset()
    for kind in ("greedy", "sampled"):
        reward = cast(MeanMetric, system.eval_reward[f"{stage}__{kind}"])
        if seen_anywhere(reward, dist):
            system.log(f"{stage}/{kind}/reward", reward.compute(), sync_dist=False)
        reward.reset()


def save_sampled(system: Any) -> Path | None:
    """Write the test stage's sampled answers (gathered from every process) to ``<trainer.default_root_dir>/
    eval_<test split>/sampled_answers.json`` on the first process: a list of ``question_id``, ``answer``,
    ``score``, ``reward`` (None for unlabelled questions). A system writes a path once: the robustness passes of
    ``evaluate`` re-run the test loop on corrupted batches, and those answers are not the model's own."""
    rows = list(system.sampled_rows)
    system.sampled_rows = []
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        parts: list[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(parts, rows)  # padding repeats are never sampled: no duplicates
        rows = [row for part in parts for row in part]
    trainer = getattr(system, "_trainer", None)  # None outside a Trainer
    if not rows or trainer is None or not trainer.is_global_zero:
        return None
    split = getattr(getattr(trainer, "datamodule", None), "test_split", "test")
    path = Path(trainer.default_root_dir) / f"eval_{split}" / SAMPLED_ANSWERS
    written: set[Path] = system.__dict__.setdefault("_sampled_written", set())
    if path in written:
        return None
    written.add(path)
    write_json(path, rows)
    return path
