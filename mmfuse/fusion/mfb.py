"""``mfb``: multimodal factorised bilinear pooling of the pooled vectors."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from mmfuse.encoders.base import EncoderOutput
from mmfuse.fusion.base import FusionOutput, check_inputs, register_fusion

# |z| below this is treated as 0 by the signed square root: sqrt's gradient is infinite at 0
_SQRT_FLOOR = 1e-12


@register_fusion("mfb")
class MFBFusion(nn.Module):
    """Multimodal factorised bilinear pooling, Yu et al. 2017, "Multi-modal Factorized Bilinear Pooling
    with Co-Attention Learning for Visual Question Answering".

    For two modalities ``t, v`` (and, the same way, the Hadamard product over every modality)::

        p = Dropout(Uᵀ t ∘ Vᵀ v)                 ([B, k·o]; U, V are Linear(in_dim, k·o))
        z_j = Σ_{i<k} p_{j·k + i}                (SumPool_k: consecutive groups of k → [B, o])
        z = sign(z) ⊙ sqrt(|z|)                  (power normalisation)
        z = z / ‖z‖₂                             (L2 normalisation)
        pooled = W_o z + b_o                     (only when o != dim; else pooled = z)

    Shapes:
        inputs[m].pooled: ``[B, in_dims[m]]`` (tokens and masks are not used).
        output.pooled: ``[B, dim]``; ``tokens``, ``mask`` and ``attention`` are None.

    Args:
        in_dims: feature size of each modality (at least two).
        dim: output size.
        factor: ``k``, the number of factors summed per output channel (paper: 5).
        out_dim: ``o``, the bilinear output size; None = ``dim`` (no output projection; paper: 1000).
        dropout: dropout on the ``k·o`` product (paper: 0.1).
    """

    def __init__(
        self, in_dims: dict[str, int], dim: int, *, factor: int = 5, out_dim: int | None = None, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if len(in_dims) < 2:
            raise ValueError(f"mfb fusion needs at least 2 modalities, got {sorted(in_dims)}")
        if factor < 1:
            raise ValueError(f"mfb factor must be an integer >= 1, got {factor!r}")
        if out_dim is not None and out_dim < 1:
            raise ValueError(f"mfb out_dim must be an integer >= 1 or None (= dim), got {out_dim!r}")
        self.in_dims = {m: int(in_dims[m]) for m in sorted(in_dims)}
        self.dim, self.factor = dim, factor
        self.out_dim = dim if out_dim is None else out_dim
        self.proj = nn.ModuleDict({m: nn.Linear(d, factor * self.out_dim) for m, d in self.in_dims.items()})
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(self.out_dim, dim) if self.out_dim != dim else nn.Identity()

    def forward(self, inputs: Mapping[str, EncoderOutput]) -> FusionOutput:
        xs = check_inputs(inputs, self.in_dims, "mfb")
        p = None
        for proj, x in zip(self.proj.values(), xs):
            h = proj(x.pooled)  # [B, k·o]
            p = h if p is None else p * h
        assert p is not None  # at least two modalities (constructor)
        z = self.dropout(p).view(-1, self.out_dim, self.factor).sum(dim=-1)  # [B, o]
        z = torch.sign(z) * z.abs().clamp_min(_SQRT_FLOOR).sqrt()  # sign(0) = 0: zero stays zero
        return FusionOutput(pooled=self.out(F.normalize(z, dim=-1)))
