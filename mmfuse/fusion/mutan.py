"""``mutan``: Tucker fusion with a rank-constrained core (MUTAN) on the pooled vectors."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from mmfuse.encoders.base import EncoderOutput
from mmfuse.fusion.base import FusionOutput, check_inputs, register_fusion


@register_fusion("mutan")
class MutanFusion(nn.Module):
    """MUTAN, Ben-younes et al. 2017, "MUTAN: Multimodal Tucker Fusion for Visual Question Answering".

    A Tucker decomposition of the bilinear interaction whose core is constrained to rank ``R``. For two
    modalities ``t, v`` (and, the same way, the Hadamard product over every modality)::

        t̃ = Dropout(tanh(W_t t)),  ṽ = Dropout(tanh(W_v v))          ([B, proj_dim] each)
        z = Σ_{r=1..R} (W_{t,r} t̃) ∘ (W_{v,r} ṽ)                    ([B, mm_dim])
        pooled = W_o z + b_o                                          ([B, dim])

    The ``R`` maps ``W_{m,r}`` (with biases) are stored stacked as one ``Linear(proj_dim, R·mm_dim)`` per
    modality.

    Shapes:
        inputs[m].pooled: ``[B, in_dims[m]]`` (tokens and masks are not used).
        output.pooled: ``[B, dim]``; ``tokens``, ``mask`` and ``attention`` are None.

    Args:
        in_dims: feature size of each modality (at least two).
        dim: output size.
        rank: ``R``, the rank of the core tensor (paper: 10 for its best model; 5 here).
        proj_dim: ``d_t = d_v``, the size of the tanh projections (paper: 310).
        mm_dim: size of each rank-``r`` product ``z``; None = ``dim`` (paper: 510).
        dropout: dropout on ``t̃`` and ``ṽ``.
    """

    def __init__(
        self,
        in_dims: dict[str, int],
        dim: int,
        *,
        rank: int = 5,
        proj_dim: int = 256,
        mm_dim: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(in_dims) < 2:
            raise ValueError(f"mutan fusion needs at least 2 modalities, got {sorted(in_dims)}")
        for key, value in (("rank", rank), ("proj_dim", proj_dim), ("mm_dim", mm_dim)):
            if value is not None and value < 1:
                raise ValueError(f"mutan {key} must be an integer >= 1, got {value!r}")
        self.in_dims = {m: int(in_dims[m]) for m in sorted(in_dims)}
        self.dim, self.rank = dim, rank
        self.mm_dim = dim if mm_dim is None else mm_dim
        self.proj = nn.ModuleDict({m: nn.Linear(d, proj_dim) for m, d in self.in_dims.items()})  # W_t, W_v
        self.factors = nn.ModuleDict({m: nn.Linear(proj_dim, rank * self.mm_dim) for m in self.in_dims})  # W_{m,r}
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(self.mm_dim, dim)  # W_o

    def forward(self, inputs: Mapping[str, EncoderOutput]) -> FusionOutput:
        xs = check_inputs(inputs, self.in_dims, "mutan")
        z = None
        for m, x in zip(self.in_dims, xs):
            h = self.factors[m](self.dropout(torch.tanh(self.proj[m](x.pooled))))  # [B, R·mm_dim]
            z = h if z is None else z * h
        assert z is not None  # at least two modalities (constructor)
        return FusionOutput(pooled=self.out(z.view(-1, self.rank, self.mm_dim).sum(dim=1)))
