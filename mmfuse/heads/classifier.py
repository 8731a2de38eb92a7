"""Answer classification head over the answer vocabulary."""

from __future__ import annotations

from torch import Tensor, nn

from mmfuse.fusion.base import FusionOutput


class ClassifierHead(nn.Module):
    """MLP over the fused pooled vector.

    Args:
        dim: fused feature size (the fusion's ``dim``).
        num_answers: vocabulary size (from the data, never typed in YAML).
        hidden: hidden width; 0 makes the head a single linear layer.
        dropout: dropout before the last layer.

    Shapes:
        ``forward(FusionOutput(pooled [B, dim]))`` → logits ``[B, num_answers]``.
    """

    def __init__(self, dim: int, num_answers: int, hidden: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        if hidden > 0:
            self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(),
                                     nn.Dropout(dropout), nn.Linear(hidden, num_answers))
        else:
            self.net = nn.Sequential(nn.LayerNorm(dim), nn.Dropout(dropout), nn.Linear(dim, num_answers))
        self.num_answers = num_answers

    def forward(self, fused: FusionOutput) -> Tensor:
        return self.net(fused.pooled)
