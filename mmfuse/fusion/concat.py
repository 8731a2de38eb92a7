"""``concat``: late fusion by concatenating the pooled features of every modality."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from mmfuse.encoders.base import EncoderOutput
from mmfuse.fusion.base import FusionOutput, check_inputs, register_fusion


@register_fusion("concat")
class ConcatFusion(nn.Module):
    """Concatenate pooled features (sorted modality order) and project them to ``dim``.

    ``pooled = Dropout(LayerNorm(GELU(Linear(cat_m pooled_m))))``

    Shapes:
        inputs[m].pooled: ``[B, in_dims[m]]`` (tokens and masks are not used).
        output.pooled: ``[B, dim]``; ``tokens``, ``mask`` and ``attention`` are None.

    Args:
        in_dims: feature size of each modality.
        dim: output size.
        dropout: dropout probability applied last.
        norm: whether to apply a LayerNorm after the activation.
    """

    def __init__(self, in_dims: dict[str, int], dim: int, *, dropout: float = 0.0, norm: bool = True) -> None:
        super().__init__()
        if not in_dims:
            raise ValueError("concat fusion needs at least one modality")
        self.in_dims = {m: int(in_dims[m]) for m in sorted(in_dims)}
        self.dim = dim
        self.proj = nn.Linear(sum(self.in_dims.values()), dim)
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(dim) if norm else nn.Identity()
        self.dropout = nn.Dropout(dropout)

    def forward(self, inputs: Mapping[str, EncoderOutput]) -> FusionOutput:
        feats = [x.pooled for x in check_inputs(inputs, self.in_dims, "concat")]
        x = self.proj(torch.cat(feats, dim=-1))
        return FusionOutput(pooled=self.dropout(self.norm(self.act(x))))
