"""``weighted_sum``: project every modality to ``dim`` and take a weighted sum of the pooled features."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from mmfuse.encoders.base import EncoderOutput
from mmfuse.fusion.base import FusionOutput, check_inputs, register_fusion


@register_fusion("weighted_sum")
class WeightedSumFusion(nn.Module):
    """``pooled = Dropout(sum_m w_m * Linear_m(pooled_m))`` over the modalities in sorted order.

    The weights ``w_m`` are either

    * fixed: given by ``weights`` (a dict by modality, or a list in sorted modality order; used as
      given, not normalised), or, with ``learn_weights=False`` and no ``weights``, all ``1/M``.
      No weight parameter exists then.
    * learned (default): ``w = softmax(logits)`` with ``logits`` an ``[M]`` parameter initialised
      to zeros, i.e. equal weights summing to 1.

    ``weights`` takes precedence: when it is given the weights are fixed whatever ``learn_weights``.
    :meth:`modality_weights` returns the current weights (for logging).

    Shapes:
        inputs[m].pooled: ``[B, in_dims[m]]`` (tokens and masks are not used).
        output.pooled: ``[B, dim]``; ``tokens``, ``mask`` and ``attention`` are None.
    """

    logits: nn.Parameter | None  # [M] when the weights are learned
    fixed_weights: Tensor  # buffer [M], registered only when the weights are fixed

    def __init__(
        self,
        in_dims: dict[str, int],
        dim: int,
        *,
        weights: Mapping[str, float] | Sequence[float] | None = None,
        learn_weights: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not in_dims:
            raise ValueError("weighted_sum fusion needs at least one modality")
        self.in_dims = {m: int(in_dims[m]) for m in sorted(in_dims)}
        self.modalities = list(self.in_dims)
        self.dim = dim
        self.proj = nn.ModuleDict({m: nn.Linear(d, dim) for m, d in self.in_dims.items()})
        self.dropout = nn.Dropout(dropout)
        n = len(self.modalities)
        if weights is not None:
            fixed = self._parse_weights(weights)
        elif not learn_weights:
            fixed = [1.0 / n] * n
        else:
            fixed = None
        if fixed is None:
            self.logits = nn.Parameter(torch.zeros(n))
        else:
            self.logits = None
            self.register_buffer("fixed_weights", torch.tensor(fixed, dtype=torch.float32))

    def _parse_weights(self, weights: Mapping[str, float] | Sequence[float]) -> list[float]:
        if isinstance(weights, Mapping):
            if set(weights) != set(self.modalities):
                raise ValueError(
                    f"weighted_sum weights are for modalities {sorted(weights)}, expected {self.modalities}"
                )
            values = [float(weights[m]) for m in self.modalities]
        else:
            values = [float(w) for w in weights]
            if len(values) != len(self.modalities):
                raise ValueError(
                    f"weighted_sum got {len(values)} weights for {len(self.modalities)} modalities "
                    f"{self.modalities} (a list is in sorted modality order)"
                )
        if not all(math.isfinite(w) for w in values):
            raise ValueError(f"weighted_sum weights must be finite, got {values}")
        return values

    @property
    def learned(self) -> bool:
        """Whether the weights are learned parameters."""
        return self.logits is not None

    def weight_tensor(self) -> Tensor:
        """The weights ``[M]`` in sorted modality order (differentiable when learned)."""
        return torch.softmax(self.logits, dim=0) if self.logits is not None else self.fixed_weights

    def modality_weights(self) -> dict[str, float]:
        """Current weight of each modality, e.g. ``{"image": 0.4, "text": 0.6}``."""
        w = self.weight_tensor().detach().float().cpu().tolist()
        return dict(zip(self.modalities, w))

    def forward(self, inputs: Mapping[str, EncoderOutput]) -> FusionOutput:
        xs = check_inputs(inputs, self.in_dims, "weighted_sum")
        w = self.weight_tensor()
        pooled = None
        for i, (m, x) in enumerate(zip(self.modalities, xs)):
            h = self.proj[m](x.pooled)
            h = w[i].to(h.dtype) * h
            pooled = h if pooled is None else pooled + h
        return FusionOutput(pooled=self.dropout(pooled))
