"""``film``: one modality's pooled vector modulates the other modality's tokens (FiLM)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from mmfuse.encoders.base import EncoderOutput
from mmfuse.fusion.base import FusionOutput, check_inputs, pick_pair, register_fusion
from mmfuse.layers import masked_max, masked_mean

POOLS = ("mean", "max")


@register_fusion("film")
class FiLMFusion(nn.Module):
    """Feature-wise linear modulation, Perez et al. 2018, "FiLM: Visual Reasoning with a General
    Conditioning Layer": ``FiLM(x | γ, β) = γ ⊙ x + β`` with ``γ, β`` predicted from the condition.

    With ``c`` the condition's pooled vector and ``x_i`` the modulated modality's tokens::

        [Δγ; β] = W_c c + b_c        (Linear(in_dims[condition], 2*dim): first half Δγ, second half β)
        γ = 1 + Δγ                   (so a zero generator is the identity: γ = 1, β = 0)
        u_i = W_x x_i + b_x          (tokens projected to dim; padded tokens zeroed first, never read)
        y_i = γ ⊙ u_i + β            (residual=False, relu=False, the default: the FiLM layer alone)
        y_i = ReLU(γ ⊙ u_i + β)      (relu=True: the FiLM layer and the paper's ReLU after it)
        y_i = u_i + ReLU(γ ⊙ u_i + β)  (residual=True: the paper's ResBlock tail, without its convs and BN)
        pooled = mean_i y_i         (pool="mean", the default), or
        pooled = max_i y_i          (pool="max": per channel, over the real tokens)

    Shapes:
        inputs[condition].pooled: ``[B, in_dims[condition]]``.
        inputs[modulated]: tokens ``[B, N, in_dims[modulated]]``, mask ``[B, N]``.
        output.pooled ``[B, dim]`` (zeros for a row without real tokens); output.tokens ``[B, N, dim]``
        (the modulated tokens, zero at padded positions); output.mask ``[B, N]`` (the modulated mask);
        attention None.

    Args:
        condition: the modality whose pooled vector produces ``γ, β`` (default ``"text"``).
        modulated: the modality whose tokens are modulated; None = the single modality other than
            ``condition`` (an error if there are several). Other modalities in ``in_dims`` are ignored.
        residual: ``u + ReLU(FiLM(u))`` instead of ``FiLM(u)``.
        relu: ``ReLU(FiLM(u))`` (ignored with ``residual``, whose ReLU is already there). Note for
            ``pool="max"``: per channel, the max over tokens of any increasing function of ``γ u_i + β`` is
            that function of ``γ max_i u_i + β`` (of the min where ``γ < 0``), so the question chooses
            *channels*, never tokens; a token is singled out only by channels of ``u`` that already
            combine what the question asks about (e.g. a colour detector plus a coordinate).
        dropout: dropout on the modulated tokens.
        pool: ``"mean"`` or ``"max"`` over the real tokens. Max keeps the strongest token of each channel
            whole (a per-channel hard selection) where a mean divides it by N; its gradient reaches only that
            token (see ``relu`` for what the question can choose under a max).
    """

    def __init__(
        self,
        in_dims: dict[str, int],
        dim: int,
        *,
        condition: str = "text",
        modulated: str | None = None,
        residual: bool = False,
        dropout: float = 0.0,
        pool: str = "mean",
        relu: bool = False,
    ) -> None:
        super().__init__()
        condition, modulated = pick_pair("film", in_dims, condition, modulated, ("condition", "modulated"))
        if pool not in POOLS:
            raise ValueError(f"film fusion: pool must be one of {list(POOLS)}, got {pool!r}")
        self.condition, self.modulated, self.pool = condition, modulated, pool
        self.in_dims = {m: int(in_dims[m]) for m in sorted((condition, modulated))}
        self.dim, self.residual, self.relu = dim, residual, relu
        self.proj = nn.Linear(self.in_dims[modulated], dim)  # W_x
        self.film = nn.Linear(self.in_dims[condition], 2 * dim)  # W_c: [Δγ; β]
        self.dropout = nn.Dropout(dropout)

    def forward(self, inputs: Mapping[str, EncoderOutput]) -> FusionOutput:
        check_inputs(inputs, self.in_dims, "film")
        c, x = inputs[self.condition], inputs[self.modulated]
        mask = x.mask.bool()
        u = self.proj(x.tokens.masked_fill(~mask[..., None], 0.0))  # [B, N, dim]
        d_gamma, beta = self.film(c.pooled)[:, None].chunk(2, dim=-1)  # [B, 1, dim] each
        y = (1 + d_gamma) * u + beta
        if self.residual:
            y = u + torch.relu(y)
        elif self.relu:
            y = torch.relu(y)
        y = self.dropout(y).masked_fill(~mask[..., None], 0.0)
        pooled = masked_max(y, mask) if self.pool == "max" else masked_mean(y, mask)
        return FusionOutput(pooled=pooled, tokens=y, mask=mask)
