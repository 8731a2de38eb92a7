"""Value head for RL fine-tuning: a scalar estimate V(s_t) of the return from each decoder state."""

from __future__ import annotations

from torch import Tensor, nn


class ValueHead(nn.Module):
    """MLP from decoder states to values.

    Args:
        dim: decoder width (the answer generator's ``dim``).
        hidden: hidden width; 0 makes it a single linear layer.

    The last layer starts at zero, so every value starts at 0: the first advantages are then the
    (whitened) rewards themselves instead of noise from a random critic.

    Shapes:
        ``forward(hidden [B, T, D])`` -> values ``[B, T]`` (float32); any leading shape works.
    """

    def __init__(self, dim: int, hidden: int = 0) -> None:
        super().__init__()
        last = nn.Linear(hidden or dim, 1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), last) if hidden > 0 else last

    def forward(self, hidden: Tensor) -> Tensor:
        return self.net(hidden).squeeze(-1).float()
