"""The encoder contract: every encoder returns an :class:`EncoderOutput` and exposes ``out_dim``."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class EncoderOutput(NamedTuple):
    """What an encoder hands to a fusion.

    Attributes:
        tokens: ``[B, N, D]`` token features (text tokens or image patches).
        mask: ``[B, N]`` bool, True where a token is real, False where it is padding.
        pooled: ``[B, D]`` one vector per example (CLS token or masked mean).
    """

    tokens: Tensor
    mask: Tensor
    pooled: Tensor

    def index_select(self, index: Tensor) -> EncoderOutput:
        """Rows gathered by ``index [B']``: used to map per-image features to per-question rows."""
        return EncoderOutput(self.tokens[index], self.mask[index], self.pooled[index])
