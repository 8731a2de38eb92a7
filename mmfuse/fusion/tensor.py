"""``tensor``: Tensor Fusion Network, the full outer product of the (1-extended) pooled vectors."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from mmfuse.encoders.base import EncoderOutput
from mmfuse.fusion.base import FusionOutput, check_inputs, register_fusion


def with_one(z: Tensor) -> Tensor:
    """``[z; 1]``: append a constant 1 to the last dimension (``[B, d]`` → ``[B, d+1]``), so the outer
    product keeps every unimodal and lower-order term next to the full interaction."""
    return torch.cat([z, z.new_ones(*z.shape[:-1], 1)], dim=-1)


@register_fusion("tensor")
class TensorFusion(nn.Module):
    """Tensor Fusion Network, Zadeh et al. 2017, "Tensor Fusion Network for Multimodal Sentiment Analysis".

    Over the modalities in sorted order ``m_1 … m_M``::

        z_m = Dropout(W_m x_m + b_m)                         ([B, proj_dim]; the modality embedding)
        Z = [z_{m_1}; 1] ⊗ [z_{m_2}; 1] ⊗ … ⊗ [z_{m_M}; 1]   ([B, (proj_dim+1)^M], flattened row-major)
        pooled = W Z + b                                     ([B, dim])

    The paper's modality subnetworks are the encoders here (plus the one projection) and its post-fusion
    network is the task head. The product is ``(proj_dim+1)^M`` wide, so keep ``proj_dim`` small; ``lmf``
    is the low-rank version that never builds it.

    Shapes:
        inputs[m].pooled: ``[B, in_dims[m]]`` (tokens and masks are not used).
        output.pooled: ``[B, dim]``; ``tokens``, ``mask`` and ``attention`` are None.

    Args:
        in_dims: feature size of each modality (at least two).
        dim: output size.
        proj_dim: size of each modality embedding ``z_m`` before the constant 1 is appended.
        dropout: dropout on each ``z_m``.
    """

    def __init__(self, in_dims: dict[str, int], dim: int, *, proj_dim: int = 16, dropout: float = 0.0) -> None:
        super().__init__()
        if len(in_dims) < 2:
            raise ValueError(f"tensor fusion needs at least 2 modalities, got {sorted(in_dims)}")
        if proj_dim < 1:
            raise ValueError(f"tensor proj_dim must be an integer >= 1, got {proj_dim!r}")
        self.in_dims = {m: int(in_dims[m]) for m in sorted(in_dims)}
        self.dim, self.proj_dim = dim, proj_dim
        self.proj = nn.ModuleDict({m: nn.Linear(d, proj_dim) for m, d in self.in_dims.items()})
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear((proj_dim + 1) ** len(self.in_dims), dim)

    def forward(self, inputs: Mapping[str, EncoderOutput]) -> FusionOutput:
        xs = check_inputs(inputs, self.in_dims, "tensor")
        product = None
        for proj, x in zip(self.proj.values(), xs):
            z = with_one(self.dropout(proj(x.pooled)))  # [B, proj_dim+1]
            # row-major flatten: index (i_1, …, i_M) → ((i_1·(p+1) + i_2)·(p+1) + …)
            product = z if product is None else (product[:, :, None] * z[:, None, :]).flatten(1)
        assert product is not None  # at least two modalities (constructor)
        return FusionOutput(pooled=self.out(product))
