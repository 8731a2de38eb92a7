"""``lmf``: low-rank multimodal fusion, the Tensor Fusion Network with a rank-``r`` weight."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from mmfuse.encoders.base import EncoderOutput
from mmfuse.fusion.base import FusionOutput, check_inputs, register_fusion
from mmfuse.fusion.tensor import with_one


@register_fusion("lmf")
class LowRankFusion(nn.Module):
    """Low-rank multimodal fusion, Liu et al. 2018, "Efficient Low-rank Multimodal Fusion with
    Modality-Specific Factors".

    Over the modalities in sorted order, with ``z_m = Dropout(W_m x_m + b_m)`` as in ``tensor``::

        pooled = Σ_{i=1..r} ∘_m (W_m^{(i)ᵀ} [z_m; 1]) + b        (W_m^{(i)}: [proj_dim+1, dim])

    This is ``tensor``'s output ``W Z + b`` for the weight ``W = Σ_i ⊗_m W_m^{(i)}`` (every ``dim`` slice
    a rank-``r`` tensor), computed without building the ``(proj_dim+1)^M`` product. The paper's extra
    per-rank weights are left out: they scale the factors and add nothing.

    Shapes:
        inputs[m].pooled: ``[B, in_dims[m]]`` (tokens and masks are not used).
        output.pooled: ``[B, dim]``; ``tokens``, ``mask`` and ``attention`` are None.

    Args:
        in_dims: feature size of each modality (at least two).
        dim: output size.
        rank: ``r``, the number of modality-specific factors per modality.
        proj_dim: size of each modality embedding ``z_m`` before the constant 1 is appended.
        dropout: dropout on each ``z_m``.
    """

    def __init__(
        self, in_dims: dict[str, int], dim: int, *, rank: int = 4, proj_dim: int = 16, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if len(in_dims) < 2:
            raise ValueError(f"lmf fusion needs at least 2 modalities, got {sorted(in_dims)}")
        for key, value in (("rank", rank), ("proj_dim", proj_dim)):
            if value < 1:
                raise ValueError(f"lmf {key} must be an integer >= 1, got {value!r}")
        self.in_dims = {m: int(in_dims[m]) for m in sorted(in_dims)}
        self.dim, self.rank, self.proj_dim = dim, rank, proj_dim
        self.proj = nn.ModuleDict({m: nn.Linear(d, proj_dim) for m, d in self.in_dims.items()})
        self.dropout = nn.Dropout(dropout)
        self.factors = nn.ParameterDict({m: nn.Parameter(torch.empty(rank, proj_dim + 1, dim)) for m in self.in_dims})
        self.bias = nn.Parameter(torch.zeros(dim))
        for factor in self.factors.values():
            for i in range(rank):  # per factor, as the paper's code does (xavier on each [proj_dim+1, dim])
                nn.init.xavier_normal_(factor.data[i])

    def forward(self, inputs: Mapping[str, EncoderOutput]) -> FusionOutput:
        xs = check_inputs(inputs, self.in_dims, "lmf")
        h = None
        for m, x in zip(self.in_dims, xs):
            z = with_one(self.dropout(self.proj[m](x.pooled)))  # [B, proj_dim+1]
            f = torch.einsum("bi,rio->bro", z, self.factors[m].to(z.dtype))  # [B, r, dim]
            h = f if h is None else h * f
        assert h is not None  # at least two modalities (constructor)
        return FusionOutput(pooled=h.sum(dim=1) + self.bias.to(h.dtype))
