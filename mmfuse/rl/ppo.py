"""PPO losses and diagnostics for token-level policies (Schulman et al. 2017, "Proximal Policy
Optimization Algorithms"), plus the KL-penalty controllers of Ziegler et al. 2019 ("Fine-Tuning
Language Models from Human Preferences").

Tensors are ``[B, T]`` (row = one sampled answer, column = one token); ``mask`` is 1 at real actions.
By default every mean is a masked mean over the valid tokens of the WHOLE batch (not a mean of per-row
means), so long answers weigh more, as each token is one action; :func:`aggregate` also gives GRPO's
per-answer mean and Dr. GRPO's fixed-length sum. Pad slots may hold garbage (NaN, inf): inputs are
sanitised with ``torch.where`` before any arithmetic so it never reaches losses or grads.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from mmfuse.layers import masked_mean

# rl.algorithm: the update. ppo: rl.ppo_epochs x rl.minibatches clipped steps per rollout batch; reinforce: one
# plain policy-gradient step (the ratio is 1, the clip never acts), and with rl.advantage=gae (the default) it
# keeps its old meaning, the batch-mean baseline of rl.advantage=reinforce
ALGORITHMS = ("ppo", "reinforce")
# how a per-token loss becomes one number (see aggregate)
AGGREGATIONS = ("token", "sequence", "sum")

__all__ = [
    "AGGREGATIONS", "ALGORITHMS", "AdaptiveKLController", "FixedKLController", "aggregate", "entropy",
    "exact_token_kl", "explained_variance", "k3_kl", "policy_loss", "value_loss",
]


def _clean(x: Tensor, valid: Tensor) -> Tensor:
    """``x`` with pad slots replaced by 0, so exp()/squares of garbage can't produce NaN (fwd or bwd)."""
    return torch.where(valid, x, torch.zeros((), dtype=x.dtype, device=x.device))


def aggregate(x: Tensor, mask: Tensor, agg: str = "token", norm_len: int | None = None) -> Tensor:
    """One number from a per-token loss ``x [B, T]`` over the valid tokens (``mask [B, T]``).

    ``"token"``: ``sum_{b,t} x / n_valid``, every token of the batch weighs the same (PPO, DAPO).
    ``"sequence"``: ``mean_b (sum_t x_bt / l_b)``, each answer's token mean, then the mean over the
    answers with a token (GRPO, Shao et al. 2024: ``1/G sum_i 1/|o_i| sum_t``).
    ``"sum"``: ``sum_{b,t} x / (B * norm_len)``, a fixed normaliser instead of the answer's length
    (Dr. GRPO, Liu et al. 2025: the ``1/|o_i|`` factor makes short right answers and long wrong
    ones weigh more); ``norm_len`` is the longest answer allowed (default: ``T``).
    """
    if agg not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {agg!r}; valid choices: {', '.join(AGGREGATIONS)}")
    valid = mask.bool()  # [B, T]
    x = _clean(x, valid)  # [B, T]
    if agg == "token":
        return masked_mean(x, valid)  # []
    if agg == "sum":
        rows, length = x.shape[0], norm_len or x.shape[1]
        return x.sum() / max(rows * length, 1)  # []
    lengths = valid.sum(1)  # [B]
    per_row = x.sum(1) / lengths.clamp_min(1).to(x.dtype)  # [B] token mean of each answer
    return masked_mean(per_row, lengths > 0)  # [] answers without a token do not count


def k3_kl(logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor) -> Tensor:
    """``[B, T]`` per-token k3 estimate of KL(π ‖ π_ref): ``exp(ref - logp) - 1 - (ref - logp)`` (>= 0,
    unbiased; Schulman 2020), 0 at pads. Differentiable in ``logprobs``: the KL leash as a loss term
    (GRPO, ``rl.kl.in_loss``)."""
    valid = mask.bool()  # [B, T]
    log_ratio = _clean(ref_logprobs.to(logprobs.dtype) - logprobs, valid)  # [B, T] log π_ref/π, 0 at pads
    return _clean(torch.expm1(log_ratio) - log_ratio, valid)  # [B, T]


def policy_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip: float = 0.2,
    agg: str = "token",
    norm_len: int | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Clipped surrogate objective (PPO-clip), as a loss to minimise.

    ``loss = agg_valid(max(-A * r, -A * clip(r, 1 - clip, 1 + clip)))`` with ``r = exp(logp - old)``;
    the max of the negated terms is the pessimistic (min) bound of the paper's L^CLIP. ``agg`` and
    ``norm_len``: see :func:`aggregate` (default: the mean over the batch's valid tokens).

    Returns:
        ``(loss, stats)``; stats (detached, 0-dim):
        ``clipfrac``: fraction of valid tokens with ``|r - 1| > clip``;
        ``approx_kl``: ``mean(0.5 * (logp - old)^2)``, the "k2" estimator of KL[old || new]
        (biased but low-variance, always >= 0; as in CleanRL/OpenAI baselines' diagnostics);
        ``approx_kl_k3``: ``mean((r - 1) - log r)``, the unbiased, non-negative "k3" estimator.
    """
    valid = mask.bool()  # [B, T]
    log_ratio = _clean(logprobs - old_logprobs, valid)  # [B, T]; 0 at pads -> ratio 1
    ratio = torch.exp(log_ratio)  # [B, T]
    adv = _clean(advantages, valid)  # [B, T]
    pg_unclipped = -adv * ratio  # [B, T]
    pg_clipped = -adv * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)  # [B, T]
    loss = aggregate(torch.maximum(pg_unclipped, pg_clipped), valid, agg, norm_len)  # []
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean(((ratio - 1.0).abs() > clip).to(ratio.dtype), valid),
            "approx_kl": masked_mean(0.5 * log_ratio.square(), valid),
            "approx_kl_k3": masked_mean((ratio - 1.0) - log_ratio, valid),
        }
    return loss, stats


def value_loss(
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    mask: Tensor,
    clip: float | None = 0.2,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Value-function loss with PPO2-style clipping (OpenAI baselines ``ppo2``).

    ``v_clipped = old + clamp(values - old, -clip, clip)``;
    ``loss = 0.5 * mean_valid(max((values - R)^2, (v_clipped - R)^2))`` -- the max keeps the value
    head from profiting by moving far from the values it was rolled out with.
    ``clip=None``: plain ``0.5 * mean_valid((values - R)^2)``.

    Returns:
        ``(loss, stats)``; ``stats["vf_clipfrac"]`` (detached) is the fraction of valid tokens with
        ``|values - old| > clip`` (the value update was clipped); 0 when ``clip`` is None.
    """
    valid = mask.bool()  # [B, T]
    v = _clean(values, valid)  # [B, T]
    ret = _clean(returns, valid)  # [B, T]
    err_unclipped = (v - ret).square()  # [B, T]
    if clip is None:
        loss = 0.5 * masked_mean(err_unclipped, valid)
        return loss, {"vf_clipfrac": torch.zeros((), dtype=v.dtype, device=v.device)}
    old = _clean(old_values, valid)  # [B, T]
    v_clipped = old + torch.clamp(v - old, -clip, clip)  # [B, T]
    err_clipped = (v_clipped - ret).square()  # [B, T]
    loss = 0.5 * masked_mean(torch.maximum(err_unclipped, err_clipped), valid)
    with torch.no_grad():
        stats = {"vf_clipfrac": masked_mean(((v - old).abs() > clip).to(v.dtype), valid)}
    return loss, stats


def entropy(logits: Tensor, mask: Tensor) -> Tensor:
    """Mean over valid tokens of the entropy of ``softmax(logits)``; ``logits [B, T, V]`` -> ``[]``.

    Tokens with ``-inf`` logits (banned vocabulary) contribute 0, not NaN (``0 * log 0 := 0``).
    """
    valid = mask.bool()  # [B, T]
    logits = torch.where(valid.unsqueeze(-1), logits, torch.zeros((), dtype=logits.dtype, device=logits.device))
    logp = torch.log_softmax(logits.float(), dim=-1)  # [B, T, V]; float32: bf16 entropy is too coarse
    p = logp.exp()  # [B, T, V]
    plogp = torch.where(p > 0, p * logp, torch.zeros((), dtype=p.dtype, device=p.device))  # [B, T, V]
    token_entropy = -plogp.sum(dim=-1)  # [B, T]
    return masked_mean(token_entropy, valid)


def explained_variance(values: Tensor, returns: Tensor, mask: Tensor) -> Tensor:
    """``1 - Var[returns - values] / Var[returns]`` over valid entries, as a detached 0-dim tensor.

    1 = perfect value predictions, 0 = no better than predicting the mean, < 0 = worse. Population
    variances (the ratio does not depend on the choice). Returns 0.0 (not NaN, unlike CleanRL) when
    ``Var[returns] == 0`` or there are no valid entries, so logged means stay finite.
    """
    with torch.no_grad():
        valid = mask.bool()
        v = _clean(values, valid).double()  # double: var of near-constant returns cancels badly
        ret = _clean(returns, valid).double()

        def var(x: Tensor) -> Tensor:
            return masked_mean((x - masked_mean(x, valid)).square(), valid)

        var_ret = var(ret)
        if var_ret.item() == 0.0:
            return torch.zeros((), dtype=values.dtype, device=values.device)
        return (1.0 - var(ret - v) / var_ret).to(values.dtype)


# --- KL penalty controllers ------------------------------------------------------------------------


def _as_float(x: Any) -> float:
    return float(x.item()) if isinstance(x, Tensor) else float(x)


class FixedKLController:
    """Constant KL coefficient; ``update`` is a no-op (same interface as the adaptive one)."""

    def __init__(self, kl_coef: float) -> None:
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        """No-op: the coefficient never changes."""

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = float(state["value"])


class AdaptiveKLController:
    """Proportional controller steering the observed KL towards ``target`` (Ziegler et al. 2019, 2.2).

    ``update(kl, n)``: ``err = clip(kl / target - 1, -0.2, 0.2)``; ``value *= 1 + err * n / horizon``.
    The clip bounds the step so one noisy KL estimate can't move beta much; ``n_steps / horizon``
    makes the adaptation rate independent of how often ``update`` is called.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: float) -> None:
        if target <= 0 or horizon <= 0:
            raise ValueError(f"target and horizon must be > 0, got target={target}, horizon={horizon}")
        self.value = float(init_kl_coef)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        kl = _as_float(current_kl)
        if not math.isfinite(kl):
            raise ValueError(f"current_kl must be finite, got {kl}")
        err = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + err * n_steps / self.horizon

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = float(state["value"])
        self.target = float(state.get("target", self.target))
        self.horizon = float(state.get("horizon", self.horizon))


def exact_token_kl(logits: Tensor, ref_logits: Tensor, mask: Tensor) -> Tensor:
    """``[B, T]`` KL(π(·|s_t) ‖ π_ref(·|s_t)) over the whole vocabulary at each valid state, 0 elsewhere."""
    logp = torch.log_softmax(logits.float(), -1)  # [B, T, V]
    ref = torch.log_softmax(ref_logits.float(), -1)
    kl = (logp.exp() * (logp - ref)).sum(-1)  # [B, T]; banned ids have p = 0 exactly
    return kl.masked_fill(~mask.bool(), 0.0)
