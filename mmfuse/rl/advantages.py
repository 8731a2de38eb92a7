"""Advantage estimators by name (``rl.advantage``): one rollout batch's rewards -> per-token advantages.

Layout: ``N = B * G`` rows, one sampled answer each; rows ``b*G .. b*G + G - 1`` answer question ``b``
(``rl.samples_per_question = G``), so ``x.view(B, G)`` is the group view of a per-answer ``x [N]``.
Column ``t`` is one token (one action); ``mask [N, T]`` marks the real ones. Rewards are per token:
``-β·kl_t`` while the KL leash is in the reward, plus the answer's score on its last valid token.

Estimators (``register_advantage``; each returns :class:`Advantages`):

* ``gae``: GAE on the value head (Schulman et al. 2016), the only one with a critic. VAPO refinements
  (Yuan et al. 2025): the value targets are returns with their own ``lam_critic`` (default 1.0), and
  ``lam_length_alpha`` makes λ_policy per answer, ``1 - 1/(α·l)``.
* ``grpo``: ``(R - mean_group) / (std_group + ε)`` on every token of the answer (Shao et al. 2024,
  DeepSeekMath); ``scale=False``: ``R - mean_group`` and a fixed-length loss sum (Dr. GRPO, Liu et al. 2025).
* ``rloo``: ``R_i - mean_{j≠i} R_j`` on every token (Ahmadian et al. 2024).
* ``reinforce_pp``: REINFORCE++ (Hu 2025): discounted per-token returns of the KL-shaped rewards,
  whitened over the whole batch's valid tokens.
* ``reinforce``: the reward-to-go minus its batch mean (the stage's first REINFORCE).

``R`` of a sequence-level estimator is the answer's total reward ``sum_t r_t`` (score − β·Σ kl while the
KL is in the reward; γ plays no part there). Only ``gae`` needs the value head; the others never build it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from mmfuse.registry import Registry
from mmfuse.rl.gae import compute_gae, masked_mean, masked_whiten

__all__ = [
    "ADVANTAGES", "DEFAULT_ADVANTAGE", "AdvantageFn", "AdvantageInput", "AdvantageOptions", "Advantages", "Estimator",
    "get_advantage", "grpo_advantages", "length_adaptive_lambda", "list_advantages", "on_tokens",
    "register_advantage", "resolve_advantage", "rloo_advantages", "sequence_returns",
]

DEFAULT_ADVANTAGE = "gae"


class AdvantageInput(NamedTuple):
    """What an estimator reads: ``rewards``, ``mask`` (bool), ``dones`` (bool) ``[N, T]``; ``group`` G;
    ``values [N, T]`` and ``last_value [N]`` of the critic (``None`` without one)."""

    rewards: Tensor
    mask: Tensor
    dones: Tensor
    group: int = 1
    values: Tensor | None = None
    last_value: Tensor | None = None


class AdvantageOptions(NamedTuple):
    """The ``rl.*`` settings estimators read (each uses its own subset; see the module docstring).
    ``whiten``: ``rl.whiten_advantages`` (``gae``, ``reinforce``); ``min_std``: ``rl.whiten_min_std``."""

    gamma: float = 1.0
    lam: float = 0.95
    lam_critic: float = 1.0
    lam_length_alpha: float | None = None
    scale: bool = True
    eps: float = 1e-6
    whiten: bool = True
    min_std: float = 0.0


class Advantages(NamedTuple):
    """``advantages [N, T]`` (0 at pads), ``returns [N, T]`` (the value head's targets; ``None`` without a
    critic) and ``agg``, how the policy loss sums the tokens (:func:`mmfuse.rl.ppo.aggregate`)."""

    advantages: Tensor
    returns: Tensor | None
    agg: str = "token"


AdvantageFn = Callable[[AdvantageInput, AdvantageOptions], Advantages]


class Estimator(NamedTuple):
    """A registered estimator: its function and whether it needs the value head (``critic``)."""

    fn: AdvantageFn
    critic: bool = False


ADVANTAGES: Registry[Estimator] = Registry("advantage estimator")


def register_advantage(name: str, critic: bool = False) -> Callable[[AdvantageFn], AdvantageFn]:
    """Decorator: register ``fn(inputs, options) -> Advantages`` as ``name``; ``critic=True`` builds the value
    head and trains it on the returned ``returns``."""

    def deco(fn: AdvantageFn) -> AdvantageFn:
        ADVANTAGES.register(name)(Estimator(fn, critic))
        return fn

    return deco


def list_advantages() -> list[str]:
    """Names of the registered estimators, sorted."""
    return ADVANTAGES.names()


def get_advantage(name: str = DEFAULT_ADVANTAGE) -> Estimator:
    """The estimator registered as ``name`` (KeyError listing the registered ones otherwise)."""
    return ADVANTAGES.get(name)


# --- pure functions ------------------------------------------------------------------------------------------


def _check_groups(scores: Tensor) -> None:
    if scores.dim() != 2 or scores.shape[1] < 1:
        raise ValueError(f"scores must be [B, G] (one row per question, G >= 1), got {tuple(scores.shape)}")


def grpo_advantages(scores: Tensor, scale: bool = True, eps: float = 1e-6) -> Tensor:
    """GRPO's group-relative advantage (Shao et al. 2024): ``(r - mean_g) / (std_g + eps)``.

    Args:
        scores: ``[B, G]`` the G answers' rewards for each of B questions.
        scale: divide by the group's population std (``ddof=0``: G = 1 gives ``0 / (0 + eps) = 0``, where
            TRL's sample std is undefined); ``False``: only the mean is subtracted (Dr. GRPO, Liu et al. 2025).
        eps: added to the std.

    Returns:
        ``[B, G]``; exactly 0 for a group whose rewards are all equal.
    """
    _check_groups(scores)
    d = scores - scores[:, :1]  # [B, G] relative to the first answer: an all-equal group is exactly 0
    centred = d - d.mean(1, keepdim=True)  # [B, G] r - mean_g
    if not scale:
        return centred
    std = centred.square().mean(1, keepdim=True).sqrt()  # [B, 1] population std (ddof = 0)
    return centred / (std + eps)  # [B, G]


def rloo_advantages(scores: Tensor) -> Tensor:
    """RLOO's leave-one-out baseline (Ahmadian et al. 2024): ``r_i - mean_{j≠i} r_j``.

    ``scores [B, G]`` -> ``[B, G]``; G = 1 has no other answer to compare with and gives 0, as does a
    group whose rewards are all equal (exactly).
    """
    _check_groups(scores)
    g = scores.shape[1]
    if g == 1:
        return torch.zeros_like(scores)
    d = scores - scores[:, :1]  # [B, G] the shift cancels in the difference; ties stay exactly 0
    others = (d.sum(1, keepdim=True) - d) / (g - 1)  # [B, G] mean of the other G - 1
    return d - others  # [B, G]


def length_adaptive_lambda(lengths: Tensor, alpha: float) -> Tensor:
    """VAPO's length-adaptive λ_policy (Yuan et al. 2025): ``1 - 1/(α·l)`` clamped to [0, 1].

    ``lengths [B]`` (answer tokens, EOS included) -> float ``[B]``: long answers get λ near 1 (low bias
    over long horizons), short ones λ near 0 (low variance); ``l = 0`` gives 0. VAPO's α = 0.05 suits
    answers of hundreds of tokens: for answers of a few tokens, α near 1 spreads λ over [0, 1).
    """
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    lengths = lengths.to(torch.float64)  # [B] float64: exact enough for 1/(α·l) near 1
    lam = 1.0 - 1.0 / (alpha * lengths)  # [B]; l = 0 -> -inf, clamped to 0
    return lam.clamp(0.0, 1.0).to(torch.get_default_dtype())  # [B]


def sequence_returns(rewards: Tensor, mask: Tensor) -> Tensor:
    """``[N]`` total reward of each answer: the sum of ``rewards [N, T]`` over its valid tokens."""
    return torch.where(mask.bool(), rewards, torch.zeros((), dtype=rewards.dtype, device=rewards.device)).sum(1)


def on_tokens(seq: Tensor, mask: Tensor) -> Tensor:
    """A per-answer advantage ``seq [N]`` put on every valid token: ``[N, T]``, 0 at pads."""
    return torch.where(mask.bool(), seq[:, None], torch.zeros((), dtype=seq.dtype, device=seq.device))


def _groups(x: Tensor, group: int) -> Tensor:
    """``x [N]`` -> ``[B, G]`` (rows ``b*G .. b*G + G - 1`` are question b's answers)."""
    if group < 1 or x.shape[0] % group:
        raise ValueError(f"{x.shape[0]} answers do not split into groups of rl.samples_per_question={group}")
    return x.view(-1, group)


def _reward_to_go(inp: AdvantageInput, gamma: float) -> Tensor:
    """``[N, T]`` discounted return from each token: ``sum_{k>=t} γ^{k-t} r_k`` (valid tokens; stops at a done)."""
    dtype = inp.rewards.dtype if inp.rewards.is_floating_point() else torch.float32
    zeros = torch.zeros_like(inp.rewards, dtype=dtype)  # [N, T] no critic: GAE with λ = 1 is the plain return
    _, ret = compute_gae(inp.rewards, zeros, inp.mask, inp.dones, None, gamma=gamma, lam=1.0)
    return ret


# --- the registered estimators ---------------------------------------------------------------------------------


@register_advantage("gae", critic=True)
def gae_advantage(inp: AdvantageInput, opt: AdvantageOptions) -> Advantages:
    """GAE on the value head: advantages with λ_policy (``lam``, or per answer from ``lam_length_alpha``),
    value targets with ``lam_critic`` (VAPO's decoupled λ)."""
    if inp.values is None:
        raise ValueError("rl.advantage=gae needs the value head's values")
    lengths = inp.mask.bool().sum(1)  # [N]
    lam: float | Tensor = (opt.lam if opt.lam_length_alpha is None
                           else length_adaptive_lambda(lengths, opt.lam_length_alpha))  # [] or [N]
    adv, ret = compute_gae(inp.rewards, inp.values, inp.mask, inp.dones, inp.last_value, gamma=opt.gamma, lam=lam)
    if isinstance(lam, Tensor) or lam != opt.lam_critic:
        _, ret = compute_gae(inp.rewards, inp.values, inp.mask, inp.dones, inp.last_value, gamma=opt.gamma,
                             lam=opt.lam_critic)  # [N, T] R = A^{λ_critic} + V, before any whitening
    if opt.whiten:
        adv = masked_whiten(adv, inp.mask, min_std=opt.min_std)
    return Advantages(adv, ret)


@register_advantage("grpo")
def grpo_advantage(inp: AdvantageInput, opt: AdvantageOptions) -> Advantages:
    """GRPO on every token of the answer; the loss averages each answer's tokens (``scale``) or sums them
    over a fixed length (Dr. GRPO)."""
    seq = grpo_advantages(_groups(sequence_returns(inp.rewards, inp.mask), inp.group), opt.scale, opt.eps)  # [B, G]
    return Advantages(on_tokens(seq.reshape(-1), inp.mask), None, "sequence" if opt.scale else "sum")


@register_advantage("rloo")
def rloo_advantage(inp: AdvantageInput, opt: AdvantageOptions) -> Advantages:
    """RLOO on every token of the answer."""
    seq = rloo_advantages(_groups(sequence_returns(inp.rewards, inp.mask), inp.group))  # [B, G]
    return Advantages(on_tokens(seq.reshape(-1), inp.mask), None)


@register_advantage("reinforce_pp")
def reinforce_pp_advantage(inp: AdvantageInput, opt: AdvantageOptions) -> Advantages:
    """REINFORCE++: discounted returns of the KL-shaped rewards, whitened over the batch (always; the
    ``min_std`` floor applies)."""
    ret = _reward_to_go(inp, opt.gamma)  # [N, T]
    return Advantages(masked_whiten(ret, inp.mask, min_std=opt.min_std), None)


@register_advantage("reinforce")
def reinforce_advantage(inp: AdvantageInput, opt: AdvantageOptions) -> Advantages:
    """The reward-to-go minus its mean over the batch's valid tokens (a constant baseline, no critic)."""
    ret = _reward_to_go(inp, opt.gamma)  # [N, T]
    zero = torch.zeros((), dtype=ret.dtype, device=ret.device)
    adv = torch.where(inp.mask.bool(), ret - masked_mean(ret, inp.mask), zero)  # [N, T]
    if opt.whiten:
        adv = masked_whiten(adv, inp.mask, min_std=opt.min_std)
    return Advantages(adv, None)


def resolve_advantage(advantage: str, algorithm: str = "ppo") -> str:
    """The estimator a config means: ``rl.algorithm=reinforce`` with the default ``rl.advantage=gae`` keeps its
    old meaning, the batch-mean baseline (``reinforce``), as configs written before ``rl.advantage`` expect."""
    return "reinforce" if algorithm == "reinforce" and advantage == DEFAULT_ADVANTAGE else advantage
