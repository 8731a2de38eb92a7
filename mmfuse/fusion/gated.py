"""``gated``: the gated multimodal unit (GMU) on the pooled vectors of every modality."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from mmfuse.encoders.base import EncoderOutput
from mmfuse.fusion.base import FusionOutput, check_inputs, register_fusion


@register_fusion("gated")
class GatedFusion(nn.Module):
    """Gated multimodal unit, Arevalo et al. 2017, "Gated Multimodal Units for Information Fusion".

    Two modalities ``a < b`` (sorted names; ``image`` and ``text`` give the paper's ``v`` and ``t``)::

        h_a = tanh(W_a a),  h_b = tanh(W_b b),  z = σ(W_z [a; b]),  h = z ⊙ h_a + (1 − z) ⊙ h_b

    exactly the paper's ``h = z ⊙ h_v + (1 − z) ⊙ h_t``. With ``M > 2`` modalities the sigmoid gate
    becomes a softmax over modalities per channel: ``z = softmax_m(W_z [x_1; …; x_M])`` reshaped to
    ``[M, dim]``, ``h = Σ_m z_m ⊙ h_m`` (for ``M = 2`` this is the same family, ``σ(u − w)``, but the paper's
    parametrisation is kept there). Then ``pooled = Dropout(LayerNorm(h))`` (LayerNorm only with ``norm``).

    Shapes:
        inputs[m].pooled: ``[B, in_dims[m]]`` (tokens and masks are not used).
        output.pooled: ``[B, dim]``; ``tokens``, ``mask`` and ``attention`` are None.

    Args:
        in_dims: feature size of each modality (at least two).
        dim: output size.
        norm: LayerNorm after the gated sum (off by default: ``h`` is already bounded by the tanh).
        dropout: dropout probability applied last.
    """

    def __init__(self, in_dims: dict[str, int], dim: int, *, norm: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        if len(in_dims) < 2:
            raise ValueError(f"gated fusion needs at least 2 modalities, got {sorted(in_dims)}")
        self.in_dims = {m: int(in_dims[m]) for m in sorted(in_dims)}
        self.dim = dim
        self.proj = nn.ModuleDict({m: nn.Linear(d, dim) for m, d in self.in_dims.items()})  # W_m
        n = len(self.in_dims)
        # one gate channel per output channel for the paper's pair, one per modality and channel beyond it
        self.gate = nn.Linear(sum(self.in_dims.values()), dim if n == 2 else n * dim)  # W_z
        self.norm = nn.LayerNorm(dim) if norm else nn.Identity()
        self.dropout = nn.Dropout(dropout)

    def forward(self, inputs: Mapping[str, EncoderOutput]) -> FusionOutput:
        xs = [x.pooled for x in check_inputs(inputs, self.in_dims, "gated")]
        hs = [torch.tanh(proj(x)) for proj, x in zip(self.proj.values(), xs)]  # M x [B, dim]
        logits = self.gate(torch.cat(xs, dim=-1))
        if len(hs) == 2:
            z = torch.sigmoid(logits)
            h = z * hs[0] + (1 - z) * hs[1]
        else:
            z = logits.view(-1, len(hs), self.dim).softmax(dim=1)  # [B, M, dim]
            h = (z * torch.stack(hs, dim=1)).sum(dim=1)
        return FusionOutput(pooled=self.dropout(self.norm(h)))
