"""Generalised Advantage Estimation (GAE) and masked whitening over ``[B, T]`` token tensors.

Layout: row ``b`` is one sampled answer, column ``t`` one token (= one action).

* ``mask[b, t] = 1`` marks a real action. Masked slots are *skipped*: each valid token is linked
  to the next valid token of its row, as if the masked ones were not there. Their rewards and
  values are never read (NaN/inf there cannot leak) and their outputs are exactly 0.
* ``dones[b, t] = 1`` ends the episode right after action ``t``: no bootstrap and no advantage
  carry across it. A done on a masked slot is ignored.
* ``last_value[b]`` is V of the state after the last valid action of row ``b`` (used only when
  that action is not done); ``None`` means every row ends in a terminal state.

Definitions (``t+1`` = next valid token of the row)::

    delta_t = r_t + gamma * V_{t+1} * (1 - done_t) - V_t
    A_t     = delta_t + gamma * lam * (1 - done_t) * A_{t+1}
    R_t     = A_t + V_t                                      (before any whitening)

``lam`` may be one number or one per row (``[B]``: VAPO's length-adaptive λ_policy, see
:func:`mmfuse.rl.advantages.length_adaptive_lambda`).

Two exact implementations: a backward loop over T (default for short answers) and a
loop-free matrix form (compact valid tokens left, ``A = M @ delta`` with ``M[j, k]`` the product
of the discount factors between j and k) for long sequences.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mmfuse.layers import masked_mean

__all__ = ["compute_gae", "masked_whiten", "masked_mean", "masked_var"]

# The loop costs T small kernel launches; the matrix form costs O(B*T^2) memory. Short answers
# -> loop, long ones -> matrix unless the [B, T, T] tensor would be too large.
_LOOP_MAX_T = 64
_MATRIX_MAX_ELEMS = 1 << 26


def _as_bool(x: Tensor | None, like: Tensor) -> Tensor:
    """Mask/dones given as bool, int or float -> bool [B, T] on ``like``'s device (None -> all True)."""
    if x is None:
        return torch.ones_like(like, dtype=torch.bool)
    x = x.to(like.device)
    return x if x.dtype == torch.bool else x != 0  # float 0/1 or int 0/1 -> bool


def _prepare(
    rewards: Tensor, values: Tensor, mask: Tensor | None, dones: Tensor | None, last_value: Tensor | None
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Bring every input to ``values``' dtype/device; returns (r, v, valid, done, v_boot)."""
    if values.dim() != 2 or rewards.shape != values.shape:
        raise ValueError(f"rewards {tuple(rewards.shape)} and values {tuple(values.shape)} must both be [B, T]")
    B = values.shape[0]
    r = rewards.to(dtype=values.dtype, device=values.device)  # [B, T]
    valid = _as_bool(mask, values)  # [B, T] bool
    # a done on a masked slot is ignored: only valid actions can terminate
    done = valid & (_as_bool(dones, values) if dones is not None else torch.zeros_like(valid))  # [B, T]
    if last_value is None:
        v_boot = values.new_zeros(B)  # [B] terminal end: V_next = 0
    else:
        v_boot = last_value.to(dtype=values.dtype, device=values.device).reshape(B)  # [B]
    if valid.shape != values.shape or done.shape != values.shape:
        raise ValueError("mask/dones must have the same [B, T] shape as values")
    return r, values, valid, done, v_boot


def _gae_loop(r: Tensor, v: Tensor, valid: Tensor, done: Tensor, v_boot: Tensor, gamma: float,
              lam: float | Tensor) -> Tensor:
    """Backward recursion over T, vectorised over B. Masked slots just pass the carry through."""
    B, T = v.shape
    adv = torch.zeros_like(v)  # [B, T]
    next_v = v_boot.clone()  # [B] V of the next valid state (bootstrap at the row end)
    next_a = v.new_zeros(B)  # [B] A of the next valid action (0 after the last one)
    for t in range(T - 1, -1, -1):
        ok = valid[:, t]  # [B]
        keep = (~done[:, t]).to(v.dtype)  # [B] 1 - done_t: cuts bootstrap and carry
        delta = r[:, t] + gamma * next_v * keep - v[:, t]  # [B] TD error (garbage where masked)
        a = delta + gamma * lam * keep * next_a  # [B] (lam: a number or [B])
        adv[:, t] = torch.where(ok, a, torch.zeros_like(a))  # [B] where, not *: 0*NaN = NaN
        # carry only advances on valid tokens, so masked slots are invisible to the recursion
        next_v = torch.where(ok, v[:, t], next_v)  # [B]
        next_a = torch.where(ok, a, next_a)  # [B]
    return adv


def _gae_matrix(r: Tensor, v: Tensor, valid: Tensor, done: Tensor, v_boot: Tensor, gamma: float,
                lam: float | Tensor) -> Tensor:
    """Loop-free GAE: compact valid tokens left, then ``A = M @ delta`` with a [B, T, T] matrix."""
    B, T = v.shape
    zero = v.new_zeros(())
    # stable sort on "is masked" moves valid tokens to the front, keeping their order
    order = torch.sort((~valid).to(torch.int8), dim=1, stable=True).indices  # [B, T] compact -> original
    cv = torch.gather(valid, 1, order)  # [B, T] True for j < n_b
    cr = torch.where(cv, torch.gather(r, 1, order), zero)  # [B, T] garbage replaced by 0 (never NaN)
    cval = torch.where(cv, torch.gather(v, 1, order), zero)  # [B, T]
    cdone = torch.gather(done, 1, order) & cv  # [B, T]
    # V of the next valid state: the value one to the right if it is valid, else the bootstrap
    nxt_ok = torch.cat([cv[:, 1:], torch.zeros_like(cv[:, :1])], dim=1)  # [B, T]
    nxt_v = torch.cat([cval[:, 1:], cval.new_zeros(B, 1)], dim=1)  # [B, T]
    v_next = torch.where(nxt_ok, nxt_v, v_boot[:, None].expand(B, T))  # [B, T]
    v_next = torch.where(cdone, zero, v_next)  # [B, T] no bootstrap across a done
    delta = torch.where(cv, cr + gamma * v_next - cval, zero)  # [B, T] 0 past the row's end
    carry = gamma * lam[:, None] if isinstance(lam, Tensor) else v.new_full((), gamma * lam)  # [B, 1] or []
    c = torch.where(cv & ~cdone, carry, zero)  # [B, T] per-step carry factor
    # M[b, j, k] = prod_{i=j}^{k-1} c[b, i] for k >= j (1 on the diagonal), else 0.
    # Built with a cumprod over rows of [B, T, T] (ones left of the diagonal): no logs, no division,
    # so exact zeros (dones, lam = 0) stay exact and nothing can become NaN.
    idx = torch.arange(T, device=v.device)  # [T]
    upper = idx[None, :] >= idx[:, None]  # [T(j), T(i)] i >= j
    P = torch.where(upper, c[:, None, :], v.new_ones(()))  # [B, T(j), T(i)] c_i for i >= j, else 1
    Q = torch.cumprod(P, dim=-1)  # [B, T(j), T(i)] prod_{i'=j}^{i} c_i'
    M = torch.cat([Q.new_ones(B, T, 1), Q[..., :-1]], dim=-1)  # [B, T(j), T(k)] prod_{i=j}^{k-1} c_i
    M = torch.where(upper, M, zero)  # [B, T, T] no contribution from the past
    cadv = (M @ delta[..., None]).squeeze(-1)  # [B, T] A_j = sum_k M[j, k] delta_k
    adv = torch.zeros_like(v).scatter(1, order, cadv)  # [B, T] back to original positions
    return torch.where(valid, adv, zero)  # [B, T]


def compute_gae(
    rewards: Tensor,
    values: Tensor,
    mask: Tensor | None = None,
    dones: Tensor | None = None,
    last_value: Tensor | None = None,
    *,
    gamma: float = 1.0,
    lam: float | Tensor = 0.95,
    method: str = "auto",
) -> tuple[Tensor, Tensor]:
    """GAE advantages and returns for ``[B, T]`` token rewards/values (see the module docstring).

    Args:
        rewards: [B, T] per-token rewards (masked slots are never read).
        values: [B, T] critic values V_t; sets the output dtype/device.
        mask: [B, T] bool/0-1, 1 = real action. ``None`` = all valid.
        dones: [B, T] bool/0-1, 1 = episode ends right after action t. ``None`` = no dones.
        last_value: [B] V after each row's last valid action; ``None`` = terminal row ends.
        gamma, lam: discount and GAE lambda; ``lam`` may be a ``[B]`` tensor, one λ per row.
        method: ``"loop"`` (backward loop over T), ``"matrix"`` (loop-free, O(B*T^2) memory)
            or ``"auto"`` (loop for T <= 64 or when the matrix would be too large).

    Returns:
        ``(advantages, returns)``, both [B, T], 0 at masked slots; ``returns = advantages + values``.
    """
    r, v, valid, done, v_boot = _prepare(rewards, values, mask, dones, last_value)
    B, T = v.shape
    lam_: float | Tensor
    if isinstance(lam, Tensor) and lam.dim() > 0:
        if lam.shape != (B,):
            raise ValueError(f"lam has shape {tuple(lam.shape)}; expected a number or one λ per row, ({B},)")
        lam_ = lam.to(dtype=v.dtype, device=v.device)  # [B]
    else:
        lam_ = float(lam)
    if method == "auto":
        method = "loop" if T <= _LOOP_MAX_T or B * T * T > _MATRIX_MAX_ELEMS else "matrix"
    if method == "loop":
        adv = _gae_loop(r, v, valid, done, v_boot, float(gamma), lam_)  # [B, T]
    elif method == "matrix":
        adv = _gae_matrix(r, v, valid, done, v_boot, float(gamma), lam_)  # [B, T]
    else:
        raise ValueError(f"unknown method {method!r}; expected 'auto', 'loop' or 'matrix'")
    zero = v.new_zeros(())
    returns = torch.where(valid, adv + v, zero)  # [B, T] where: masked V may be NaN
    return adv, returns


def _valid_count(x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """(bool mask broadcast to x, number of valid entries as a 0-dim tensor of x's dtype)."""
    m = torch.ones_like(x, dtype=torch.bool) if mask is None else _as_bool(mask, x).expand_as(x)
    return m, m.sum().to(x.dtype)


def masked_var(x: Tensor, mask: Tensor | None, unbiased: bool = False) -> Tensor:
    """Variance of ``x`` over valid entries; ``unbiased`` applies Bessel's n/(n-1). 0 when n < 2."""
    m, n = _valid_count(x, mask)
    mean = masked_mean(x, m)  # []
    sq = torch.where(m, (x - mean) ** 2, x.new_zeros(())).sum()  # [] sum of squared deviations
    denom = (n - 1) if unbiased else n  # []
    var = sq / denom.clamp_min(1)  # []
    return torch.where(n >= 2, var, x.new_zeros(()))  # [] a single value has no spread


def masked_whiten(
    x: Tensor, mask: Tensor | None, shift_mean: bool = True, unbiased: bool = False, eps: float = 1e-8,
    min_std: float = 0.0,
) -> Tensor:
    """``(x - mean) / max(sqrt(var + eps), min_std)`` with statistics over valid entries of the whole batch.

    ``shift_mean=False`` adds the mean back (only the scale changes). With fewer than two valid
    entries the variance is meaningless, so only centring is applied (and nothing at all when
    ``shift_mean=False``). Masked outputs are 0.

    ``min_std`` bounds the gain at ``1 / min_std``: when the advantages hardly vary (every sampled
    answer right, or all wrong), their spread is KL noise and critic error, and ``1 / sqrt(var + 1e-8)``
    would blow it up to unit variance, a full-size update with no signal in it (issue 18: spreads of
    0.002-0.07 were scaled up 14-600 times on the tiny task). A floor rather than a skip below a
    threshold: the output stays continuous in the spread, shrinking to 0 with it. 0 = the anchors'
    plain whitening (TRL, OpenRLHF, verl add only an ``eps`` of 1e-8 or so).
    """
    m, n = _valid_count(x, mask)
    mean = masked_mean(x, m)  # []
    var = masked_var(x, m, unbiased=unbiased)  # []
    std = torch.sqrt(var + eps).clamp_min(min_std)  # [] the floor caps the gain at 1 / min_std
    scale = torch.where(n >= 2, std.reciprocal(), x.new_ones(()))  # [] 1 -> centre only
    out = (x - mean) * scale  # [B, T]
    if not shift_mean:
        out = out + mean  # [B, T] keep the original location
    return torch.where(m, out, x.new_zeros(()))  # [B, T]
