"""Temporal poolings: per-frame features ``[B, T, D]`` → per-frame tokens ``[B, T, D]`` and one clip vector ``[B, D]``.

Chosen by name (``model.video.pooling``) from a registry, like the fusions::

    @register_temporal_pooling("my_pool")
    class MyPool(nn.Module):
        def __init__(self, dim: int, num_frames: int, *, my_option: int = 3) -> None: ...
        def forward(self, frames: Tensor, mask: Tensor) -> TemporalOutput: ...

Contract: ``frames [B, T, D]`` with ``T <= num_frames`` and ``mask [B, T]`` bool (True = a real frame).
Masked frames never change any output (their features are zeroed before use) and their output tokens
are 0; a row without any real frame gives finite outputs (no NaN).

Built in:

* ``mean``: the masked mean over frames. Order-blind by construction (a reversed clip gives the same
  output): the control for what time adds.
* ``attention``: learned queries attend over the frames (multi-head attention pooling). Order-blind
  unless ``time_embeddings=True`` adds a learned embedding per frame position.
* ``temporal_transformer``: learned time embeddings, a [CLS] token and a small pre-norm transformer
  over time (ViViT's factorised encoder, Arnab et al. 2021). Sees order.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from mmfuse.layers import MaskedAttention, masked_mean
from mmfuse.registry import Registry, check_options, constructor_options

__all__ = [
    "TEMPORAL_POOLINGS", "AttentionPooling", "MeanPooling", "TemporalOutput", "TemporalTransformerPooling",
    "build_temporal_pooling", "list_temporal_poolings", "register_temporal_pooling", "temporal_pooling_hparams",
]

TEMPORAL_POOLINGS: Registry[type[nn.Module]] = Registry("temporal pooling")


class TemporalOutput(NamedTuple):
    """``tokens [B, T, D]`` (one per frame, 0 at masked frames) and ``pooled [B, D]`` (the clip)."""

    tokens: Tensor
    pooled: Tensor


def register_temporal_pooling(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: register a temporal pooling under ``name`` (``model.video.pooling``)."""
    return TEMPORAL_POOLINGS.register(name)


def list_temporal_poolings() -> list[str]:
    """Names of every registered temporal pooling, sorted."""
    return TEMPORAL_POOLINGS.names()


def temporal_pooling_hparams(name: str) -> dict[str, Any]:
    """The options of pooling ``name`` and their defaults (from its signature)."""
    return constructor_options(TEMPORAL_POOLINGS.get(name), exclude=("dim", "num_frames"))


def build_temporal_pooling(name: str, dim: int, num_frames: int, **hparams: Any) -> nn.Module:
    """Build the pooling registered as ``name``; an unknown option is an error naming the valid ones."""
    check_options("temporal pooling", name, hparams, temporal_pooling_hparams(name))
    return TEMPORAL_POOLINGS.get(name)(dim=int(dim), num_frames=int(num_frames), **hparams)


def _check(frames: Tensor, mask: Tensor, num_frames: int, who: str) -> Tensor:
    """Validate shapes; returns the frames with masked ones zeroed (garbage there never enters)."""
    if frames.dim() != 3 or mask.shape != frames.shape[:2]:
        raise ValueError(f"{who}: expected frames [B, T, D] and mask [B, T], got {tuple(frames.shape)} "
                         f"and {tuple(mask.shape)}")
    if frames.shape[1] > num_frames:
        raise ValueError(f"{who}: got {frames.shape[1]} frames but was built for at most num_frames={num_frames} "
                         "(data.video.num_frames of the checkpoint)")
    return frames.masked_fill(~mask[..., None], 0.0)


def _time_table(num_frames: int, dim: int) -> nn.Parameter:
    """Learned per-position embeddings ``[num_frames, dim]`` (ViT-style init: N(0, 0.02))."""
    return nn.Parameter(torch.randn(num_frames, dim) * 0.02)


@register_temporal_pooling("mean")
class MeanPooling(nn.Module):
    """Masked mean over frames; tokens are the frame features unchanged. No parameters, no order."""

    def __init__(self, dim: int, num_frames: int) -> None:
        super().__init__()
        self.dim, self.num_frames = dim, num_frames

    def forward(self, frames: Tensor, mask: Tensor) -> TemporalOutput:
        x = _check(frames, mask, self.num_frames, "mean pooling")  # [B, T, D]
        return TemporalOutput(x, masked_mean(x, mask, dim=1))


@register_temporal_pooling("attention")
class AttentionPooling(nn.Module):
    """``num_queries`` learned queries attend over the frames (``num_heads``-head attention); their
    outputs are averaged, then layer-normed, into the clip vector.

    Args:
        num_heads: attention heads (``dim`` must be divisible by it).
        num_queries: learned queries (more queries can pick several moments of the clip).
        time_embeddings: add a learned embedding per frame position before attending, so the pooling
            (and the fusion, which sees the tokens) can tell frames apart by time.
    """

    def __init__(self, dim: int, num_frames: int, *, num_heads: int = 4, num_queries: int = 1,
                 time_embeddings: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention pooling: dim={dim} is not divisible by num_heads={num_heads}")
        self.dim, self.num_frames = dim, num_frames
        self.query = nn.Parameter(torch.randn(num_queries, dim) * 0.02)  # [Q, D]
        self.time = _time_table(num_frames, dim) if time_embeddings else None
        self.norm_in = nn.LayerNorm(dim)
        self.attn = MaskedAttention(dim, num_heads)
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, frames: Tensor, mask: Tensor) -> TemporalOutput:
        x = _check(frames, mask, self.num_frames, "attention pooling")  # [B, T, D]
        if self.time is not None:
            x = (x + self.time[: x.shape[1]]).masked_fill(~mask[..., None], 0.0)  # [B, T, D]
        q = self.query.expand(x.shape[0], -1, -1)  # [B, Q, D]
        out, _ = self.attn(q, self.norm_in(x), mask)  # [B, Q, D]; all-masked rows: zero weights
        return TemporalOutput(x, self.norm_out(out.mean(1)))


@register_temporal_pooling("temporal_transformer")
class TemporalTransformerPooling(nn.Module):
    """Learned time embeddings + a [CLS] token + ``num_layers`` pre-norm transformer layers over time.

    Tokens are the transformer's frame outputs (after a final LayerNorm, 0 at masked frames); the
    clip vector is the [CLS] output. Masked frames are excluded as attention keys.

    Args:
        num_layers, num_heads, mlp_ratio, dropout: the transformer's size.
    """

    def __init__(self, dim: int, num_frames: int, *, num_layers: int = 1, num_heads: int = 4,
                 mlp_ratio: float = 2.0, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"temporal_transformer: dim={dim} is not divisible by num_heads={num_heads}")
        self.dim, self.num_frames = dim, num_frames
        self.time = _time_table(num_frames, dim)  # [T_max, D]
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)  # [1, 1, D]
        layer = nn.TransformerEncoderLayer(dim, num_heads, int(math.ceil(dim * mlp_ratio)), dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        # no nested-tensor fast path: it would return padded positions in a different layout in eval
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, frames: Tensor, mask: Tensor) -> TemporalOutput:
        x = _check(frames, mask, self.num_frames, "temporal_transformer")  # [B, T, D]
        B, T, _ = x.shape
        x = x + self.time[:T]  # [B, T, D] time enters here
        x = torch.cat([self.cls.expand(B, -1, -1), x], dim=1)  # [B, 1+T, D]
        keep = torch.cat([mask.new_ones(B, 1), mask], dim=1)  # [B, 1+T]; [CLS] is always a valid key
        y = self.norm(self.encoder(x, src_key_padding_mask=~keep))  # [B, 1+T, D]
        tokens = y[:, 1:].masked_fill(~mask[..., None], 0.0)  # [B, T, D]
        return TemporalOutput(tokens, y[:, 0])
