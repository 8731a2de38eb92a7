"""Rollouts: sample answers from the generator, score them, and pack everything PPO needs as ``[B, T]``.

One row is one question's sampled answer; column t is its t-th token (EOS included: it is an
action). State s_t is the decoder state that predicts token t, so the value head reads the same
hidden states the policy does. The answer's sequence score goes on its last valid token (through
:func:`~mmfuse.rl.rewards.shape_token_rewards`, with the per-token KL penalty to the reference).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmfuse.fusion.base import FusionOutput
from mmfuse.heads.generator import AnswerGenerator, action_mask
from mmfuse.metrics.scoring import normalize_answer
from mmfuse.rl.rewards import RewardFn, shape_token_rewards

TRUNCATION = ("terminal", "bootstrap")
# rl.train: the parts of the model the RL stage may update (the rest stays frozen)
TRAINABLE_PARTS = ("generator", "fusion", "text", "image")
__all__ = ["TRAINABLE_PARTS", "TRUNCATION", "Rollout", "collect_rollout", "evaluate_actions", "select_rows",
           "sequence_kl"]


class Rollout(NamedTuple):
    """A batch of sampled answers; ``[B, T]`` unless said, 0 at masked slots.

    ``tokens`` (long, PAD after EOS), ``mask`` (bool action mask), ``logprobs`` (policy, at the
    sampling temperature), ``ref_logprobs`` (frozen reference), ``values`` (value head on the policy's
    states; 0 without a value head), ``kl`` (per-token estimate), ``rewards`` (−β·kl, plus the score
    on the last valid token), ``dones`` (bool: the answer ends after this action), ``last_value [B]``
    (V after the last token of rows that are not done; ``None`` when every row ends terminally),
    ``scores [B]`` (reward function on the text, after any missing-EOS penalty), ``truncated [B]``
    (bool: cut at ``max_new_tokens`` before its EOS) and ``texts`` (the decoded, normalised answers).
    """

    tokens: Tensor
    mask: Tensor
    logprobs: Tensor
    ref_logprobs: Tensor
    values: Tensor
    kl: Tensor
    rewards: Tensor
    dones: Tensor
    last_value: Tensor | None
    scores: Tensor
    truncated: Tensor
    texts: list[str]


def select_rows(fused: FusionOutput, rows: Tensor) -> FusionOutput:
    """The rows ``rows [b]`` of every tensor of ``fused``."""
    # cast: field by field, a tensor stays a tensor and None stays None (pooled is never None)
    return type(fused)(*cast(Iterator[Any], (None if x is None else x[rows] for x in fused)))


def evaluate_actions(generator: AnswerGenerator, value_head: nn.Module | None, fused: FusionOutput, tokens: Tensor,
                     temperature: float = 1.0) -> tuple[Tensor, Tensor | None, Tensor]:
    """Re-score ``tokens [B, T]`` in the caller's grad mode: ``(logprobs [B, T], values [B, T],
    logits [B, T, V])``, logits divided by ``temperature`` (the policy being optimised); values are
    ``None`` without a value head (critic-free advantage estimators)."""
    out = generator(fused, tokens)
    logits = out.logits / temperature  # [B, T, V]
    logprobs = F.log_softmax(logits, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # [B, T]
    mask = action_mask(tokens, generator.eos_id, generator.pad_id)
    values = None if value_head is None else value_head(out.hidden).masked_fill(~mask, 0.0)
    return logprobs.masked_fill(~mask, 0.0), values, logits


@torch.no_grad()
def collect_rollout(policy: AnswerGenerator, value_head: nn.Module | None, fused: FusionOutput,
                    reference: AnswerGenerator, ref_fused: FusionOutput, decode: Any, batch: Mapping[str, Any],
                    reward_fn: RewardFn, *,
                    kl_coef: float, kl_estimator: str = "k1", temperature: float = 1.0, top_k: int = 0,
                    max_new_tokens: int | None = None, truncation: str = "terminal",
                    missing_eos_penalty: float | None = None,
                    generator: torch.Generator | None = None) -> Rollout:
    """Sample one answer per row of ``fused`` and score it (G answers per question: ``fused`` and
    ``batch`` with each question's rows repeated, see :mod:`mmfuse.rl.groups`).

    Args:
        policy, value_head: the generator being trained and its value head (call in eval mode: the
            sampled tokens' log-probs must equal those PPO recomputes); ``value_head=None`` (critic-free
            estimators): values are 0 and ``truncation="bootstrap"`` is an error.
        fused, ref_fused: the fused question+image features seen by the policy and by the reference
            (the same object when the encoders and fusion are not trained).
        reference: the frozen generator of the supervised checkpoint.
        decode: ``tokens [B, T] -> list[str]`` (the answer tokenizer's ``decode_batch``).
        batch: the data batch (``batch["answers"]`` for the reward).
        reward_fn: ``(texts, batch) -> Tensor[B]`` (see :func:`~mmfuse.rl.rewards.get_reward`).
        kl_coef, kl_estimator: β and ``k1``/``k3`` of the per-token KL penalty.
        temperature, top_k, max_new_tokens: sampling (log-probs are reported at ``temperature``).
        truncation: what an answer cut at ``max_new_tokens`` before its EOS is. ``terminal``: the
            answer ends there and its text is scored. ``bootstrap``: the episode was cut by a time
            limit, not ended: it gets no score and GAE bootstraps from V of the state after its last
            token (meaningful when ``max_new_tokens`` is below the generator's ``max_length``).
        missing_eos_penalty: subtracted from the score of truncated rows (None: no penalty).
        generator: torch RNG for the sampling (reproducible rollouts).
    """
    if truncation not in TRUNCATION:
        raise ValueError(f"unknown truncation {truncation!r}; valid choices: {', '.join(TRUNCATION)}")
    if truncation == "bootstrap" and value_head is None:
        raise ValueError("truncation='bootstrap' needs a value head: without a critic a cut answer has no value")
    gen = policy.generate(fused, "sample", max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                          generator=generator)
    tokens, mask = gen.tokens, gen.mask  # [B, T]
    ref_logprobs = reference.score(ref_fused, tokens, temperature).logprobs  # [B, T]
    finished = ((tokens == policy.eos_id) & mask).any(1)  # [B]
    truncated = ~finished
    texts = [normalize_answer(t) for t in decode(tokens)]
    scores = reward_fn(texts, batch).to(device=tokens.device, dtype=torch.float32)  # [B]
    if scores.shape != (tokens.shape[0],):
        raise ValueError(f"reward function returned shape {tuple(scores.shape)}, expected ({tokens.shape[0]},)")
    if missing_eos_penalty is not None:
        scores = scores - float(missing_eos_penalty) * truncated.float()
    last_value = None
    if truncation == "bootstrap" and bool(truncated.any()):
        assert value_head is not None  # checked above
        states = policy.states(fused, tokens)  # [B, T + 1, D]
        all_values = value_head(states)  # [B, T + 1]
        values = all_values[:, :-1].masked_fill(~mask, 0.0)
        length = mask.sum(1)  # [B]; a truncated row has no PAD, so its last state is at index `length`
        last_value = all_values.gather(1, length.unsqueeze(1)).squeeze(1)  # [B]
        # a cut answer is not over: its score is unknown, the value of its continuation stands in
        penalty = -float(missing_eos_penalty or 0.0)
        score_in_reward = torch.where(truncated, torch.full_like(scores, penalty), scores)
    else:
        values = (torch.zeros_like(gen.logprobs) if value_head is None
                  else value_head(gen.hidden).masked_fill(~mask, 0.0))  # [B, T]
        score_in_reward = scores
    kl, rewards = shape_token_rewards(score_in_reward, gen.logprobs, ref_logprobs, mask, kl_coef, kl_estimator)
    dones = (tokens == policy.eos_id) & mask  # [B, T]; terminal rows without EOS: last_value None / unused
    return Rollout(tokens, mask, gen.logprobs, ref_logprobs, values, kl, rewards, dones, last_value, scores,
                   truncated, texts)


def sequence_kl(rollout: Rollout) -> Tensor:
    """``[B]`` summed per-token KL estimate of each answer."""
    return rollout.kl.sum(1)

