"""Per-token RL rewards for answer generation: KL shaping and a registry of sequence reward functions.

Tensors are ``[B, T]``: a row is one sampled answer, a column one generated token; ``mask`` is 1 (or
True) where the slot is a real action and 0 at padding. Only valid slots ever carry a value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

from mmfuse.metrics.scoring import batch_vqa_accuracy, majority_answer, normalize_answer
from mmfuse.registry import Registry

__all__ = [
    "DEFAULT_REWARD", "KL_ESTIMATORS", "REWARDS", "RewardFn", "exact_match_reward", "get_reward",
    "list_rewards", "position_accuracy", "position_accuracy_reward", "register_reward", "shape_token_rewards",
    "vqa_accuracy_reward",
]

KL_ESTIMATORS = ("k1", "k3")

# (predictions, batch) -> float32 [B]; batch["answers"] is a list (len B) of lists of GT strings.
RewardFn = Callable[[Sequence[str], Mapping], Tensor]


def _check_bt(name: str, x: Tensor, shape: torch.Size) -> None:
    if x.shape != shape:
        raise ValueError(f"{name} has shape {tuple(x.shape)}, expected {tuple(shape)} like mask")


def shape_token_rewards(
    score: Tensor,
    logprobs: Tensor,
    ref_logprobs: Tensor,
    mask: Tensor,
    kl_coef: float,
    estimator: str = "k1",
) -> tuple[Tensor, Tensor]:
    """KL-penalised per-token rewards (Ziegler et al. 2019): ``r_t = -kl_coef * kl_t``, plus the
    sequence score on the last valid token of each row.

    Args:
        score: ``[B]`` sequence-level reward (e.g. VQA accuracy of the decoded answer).
        logprobs: ``[B, T]`` log pi(a_t | s_t) of the sampled tokens under the policy.
        ref_logprobs: ``[B, T]`` the same under the frozen reference model.
        mask: ``[B, T]`` 1 = real action, 0 = padding (interior holes allowed).
        kl_coef: KL penalty coefficient (beta).
        estimator: ``"k1"``: ``logp - ref`` (unbiased, can be negative per token);
            ``"k3"``: ``exp(ref - logp) - 1 - (ref - logp)`` (unbiased, always >= 0, lower variance;
            Schulman, "Approximating KL divergence", 2020).

    Returns:
        ``(kl, rewards)``, both ``[B, T]`` and exactly 0 at masked slots. The score of row b is added
        at the highest t with ``mask[b, t] == 1`` (never a pad slot); a row with no valid token gets
        no score. Gradients flow through to the inputs; callers normally run this under
        ``torch.no_grad()`` since PPO treats rewards as constants.

    Raises:
        ValueError: unknown ``estimator`` or mismatched shapes.
    """
    if estimator not in KL_ESTIMATORS:
        raise ValueError(f"unknown KL estimator {estimator!r}; valid estimators: {', '.join(KL_ESTIMATORS)}")
    if mask.dim() != 2:
        raise ValueError(f"mask must be [B, T], got shape {tuple(mask.shape)}")
    _check_bt("logprobs", logprobs, mask.shape)
    _check_bt("ref_logprobs", ref_logprobs, mask.shape)
    if score.shape != mask.shape[:1]:
        raise ValueError(f"score has shape {tuple(score.shape)}, expected ({mask.shape[0]},)")
    valid = mask.bool()  # [B, T]
    zero = torch.zeros((), dtype=logprobs.dtype, device=logprobs.device)
    # Sanitise BEFORE any arithmetic: pad slots may hold NaN/-inf; exp() of them would poison the
    # forward (k3) and the backward (0 * NaN = NaN) even if a later where() drops them.
    logp = torch.where(valid, logprobs, zero)  # [B, T]
    ref = torch.where(valid, ref_logprobs.to(logprobs.dtype), zero)  # [B, T]
    log_ratio = logp - ref  # [B, T] log pi/pi_ref
    if estimator == "k1":
        kl = log_ratio
    else:  # k3 with r = pi_ref/pi: (r - 1) - log r >= 0
        kl = torch.expm1(-log_ratio) + log_ratio
    kl = torch.where(valid, kl, zero)  # [B, T]
    rewards = -kl_coef * kl  # [B, T]; 0 at pad slots since kl is

    # Last valid index per row: max over t of (t if valid else -1); -1 means "no valid token".
    B, T = valid.shape
    pos = torch.arange(T, device=valid.device).expand(B, T)  # [B, T]
    last = torch.where(valid, pos, torch.full_like(pos, -1)).amax(dim=1)  # [B]
    has_valid = last >= 0  # [B]
    bonus = torch.where(has_valid, score.to(rewards.dtype), zero)  # [B]; empty rows get nothing
    # scatter into a zero tensor (out of place, autograd-safe); clamp keeps -1 rows in range, and
    # their bonus is 0, so slot 0 of an all-pad row stays 0.
    at_last = torch.zeros_like(rewards).scatter(1, last.clamp(min=0).unsqueeze(1), bonus.unsqueeze(1))
    return kl, rewards + at_last


# --- sequence-level reward functions -------------------------------------------------------------

REWARDS: Registry[RewardFn] = Registry("reward function")
DEFAULT_REWARD = "vqa_accuracy"


def register_reward(name: str) -> Callable[[RewardFn], RewardFn]:
    """Decorator: register ``fn(predictions: list[str], batch: Mapping) -> Tensor[B]`` as ``name``."""
    return REWARDS.register(name)


def list_rewards() -> list[str]:
    """Names of the registered reward functions, sorted."""
    return REWARDS.names()


def get_reward(name_or_callable: str | RewardFn | None = DEFAULT_REWARD) -> RewardFn:
    """A registered reward function by name (``None`` -> the default, ``"vqa_accuracy"``), or any
    callable ``(predictions, batch) -> Tensor[B]`` returned as is.

    Raises:
        KeyError: unknown name (the message lists the registered ones).
        TypeError: neither a string nor a callable.
    """
    if name_or_callable is None:
        name_or_callable = DEFAULT_REWARD
    if isinstance(name_or_callable, str):
        return REWARDS.get(name_or_callable)
    if callable(name_or_callable):
        return name_or_callable
    raise TypeError(f"reward must be a registered name or a callable, got {type(name_or_callable).__name__}")


def _answers(predictions: Sequence[str], batch: Mapping) -> list[Sequence[str]]:
    answers = batch["answers"]
    if len(answers) != len(predictions):
        raise ValueError(f"{len(predictions)} predictions but {len(answers)} rows of batch['answers']")
    return list(answers)


@register_reward("vqa_accuracy")
def vqa_accuracy_reward(predictions: Sequence[str], batch: Mapping) -> Tensor:
    """Official VQA accuracy per row, exactly the evaluation metric (``batch_vqa_accuracy``:
    prediction normalised, leave-one-out over annotators), so the RL objective is the reported
    number. Rows with no GT answers score 0. Returns float32 ``[B]``."""
    answers = _answers(predictions, batch)
    scores = [batch_vqa_accuracy([p], [g])[0] if len(g) > 0 else 0.0 for p, g in zip(predictions, answers)]
    return torch.tensor(scores, dtype=torch.float32)


@register_reward("exact_match")
def exact_match_reward(predictions: Sequence[str], batch: Mapping) -> Tensor:
    """1.0 if ``normalize_answer(pred)`` equals the normalised majority GT answer (the one given by
    most annotators; ties: the first given), else 0.0. A sparser, stricter signal than VQA accuracy:
    minority answers earn nothing. Rows with no GT answers score 0. Returns float32 ``[B]``."""
    answers = _answers(predictions, batch)
    scores = [
        float(len(g) > 0 and normalize_answer(p) == majority_answer(g)) for p, g in zip(predictions, answers)
    ]
    return torch.tensor(scores, dtype=torch.float32)


def position_accuracy(prediction: str, gold: str) -> float:
    """Share of word positions right: ``#{i : p_i == g_i} / max(len(p), len(g))`` over the words of the
    normalised ``prediction`` and ``gold`` (:func:`normalize_answer`, as every reward). Words past the
    shorter sequence count as wrong, and the denominator is the longer length, so a prediction gains
    nothing by padding extra words after a right prefix (over the gold length it would). Both empty: 1.0
    (equal strings, as ``exact_match``). A one-word answer scores exactly its exact match.
    ``"red blue gray"`` against ``"red gray blue"``: 1/3."""
    p, g = normalize_answer(prediction).split(), normalize_answer(gold).split()
    longest = max(len(p), len(g))
    return 1.0 if longest == 0 else sum(a == b for a, b in zip(p, g)) / longest


@register_reward("position_accuracy")
def position_accuracy_reward(predictions: Sequence[str], batch: Mapping) -> Tensor:
    """Partial credit for sequence answers (Sort-of-CLEVR ``colour_order``): :func:`position_accuracy`
    of the prediction against the normalised majority GT answer (as ``exact_match``: the annotators'
    noise never counts as gold). Rows with no GT answers score 0. Returns float32 ``[B]``."""
    answers = _answers(predictions, batch)
    scores = [position_accuracy(p, gold) if (gold := majority_answer(g)) is not None else 0.0
              for p, g in zip(predictions, answers)]
    return torch.tensor(scores, dtype=torch.float32)
