"""Video-frame encoder: the image encoder on every frame (shared weights), then a temporal pooling chosen
by name (the registry lives in :mod:`mmfuse.encoders.temporal` and is re-exported here)."""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor, nn

from mmfuse.encoders.base import EncoderOutput
from mmfuse.encoders.temporal import (
    TEMPORAL_POOLINGS,
    TemporalOutput,
    build_temporal_pooling,
    list_temporal_poolings,
    register_temporal_pooling,
    temporal_pooling_hparams,
)

VIDEO_OUTPUTS = ("frames", "patches")
__all__ = [
    "TEMPORAL_POOLINGS", "VIDEO_OUTPUTS", "TemporalOutput", "VideoEncoder", "build_temporal_pooling",
    "list_temporal_poolings", "register_temporal_pooling", "temporal_pooling_hparams",
]


class FrameEncoder(Protocol):
    """What :class:`VideoEncoder` needs of its frame encoder (an ``nn.Module``, normally the ViT encoder)."""

    out_dim: int

    @property
    def data_config(self) -> dict[str, Any]: ...

    def __call__(self, images: Tensor) -> EncoderOutput: ...


class VideoEncoder(nn.Module):
    """Encodes clips ``[B, T, 3, H, W]`` with a frame encoder and a temporal pooling chosen by name.

    All ``B·T`` frames go through the frame encoder (any image encoder returning an
    :class:`EncoderOutput` with ``out_dim`` and ``data_config``, normally the timm ViT) as one batch,
    so its weights are shared across time. Frames whose ``mask`` is False (padding) are not encoded
    at all: their content cannot leak, not even through a BatchNorm's batch statistics.

    Args:
        frame_encoder: the image encoder applied to every frame.
        num_frames: the most frames a clip may have (sizes the time embeddings).
        pooling: a name from :func:`mmfuse.encoders.temporal.list_temporal_poolings`.
        output: ``frames``: one token per frame (the pooling's tokens); ``patches``: every patch token of
            every frame, each plus a learned embedding of its frame's time, ``[B, T·N, D]``.
        **pooling_hparams: options of the pooling (checked against its signature).

    Shapes:
        ``forward(video [B,T,3,H,W], mask [B,T] | None)`` → tokens ``[B,T,D]`` (``frames``) or
        ``[B,T·N,D]`` (``patches``), mask of the same length (True = real), pooled ``[B,D]`` (the
        pooling's clip vector).
    """

    is_video = True

    def __init__(self, frame_encoder: FrameEncoder, num_frames: int, pooling: str = "mean", output: str = "frames",
                 **pooling_hparams: Any) -> None:
        super().__init__()
        if output not in VIDEO_OUTPUTS:
            raise ValueError(f"unknown video output {output!r}; valid: {', '.join(VIDEO_OUTPUTS)}")
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        self.frame_encoder = frame_encoder
        self.out_dim: int = int(frame_encoder.out_dim)
        self.num_frames, self.output, self.pooling_name = int(num_frames), output, pooling
        self.temporal = build_temporal_pooling(pooling, self.out_dim, self.num_frames, **pooling_hparams)
        # patch tokens of all frames share positions in space; this tells the fusion their time
        self.time = nn.Parameter(torch.randn(self.num_frames, self.out_dim) * 0.02) if output == "patches" else None
        self.is_pretrained = bool(getattr(frame_encoder, "is_pretrained", False))

    @property
    def data_config(self) -> dict[str, Any]:
        """The frame encoder's preprocessing (``img_size``, ``mean``, ``std``): every frame gets it."""
        return self.frame_encoder.data_config

    def forward(self, video: Tensor, mask: Tensor | None = None) -> EncoderOutput:
        if video.dim() != 5:
            raise ValueError(f"VideoEncoder expects clips [B, T, 3, H, W], got shape {tuple(video.shape)}")
        B, T = video.shape[:2]
        if self.num_frames < T:
            raise ValueError(f"clip has {T} frames but the encoder was built for num_frames={self.num_frames}")
        if mask is None:
            mask = torch.ones(B, T, dtype=torch.bool, device=video.device)
        mask = mask.to(device=video.device, dtype=torch.bool)  # [B, T]
        flat = mask.reshape(-1)  # [B*T]
        real = self.frame_encoder(video.reshape(B * T, *video.shape[2:])[flat])  # EncoderOutput over [F] real frames
        N, D = real.tokens.shape[1], real.tokens.shape[2]
        frames = real.pooled.new_zeros(B * T, D).index_copy(0, flat.nonzero().squeeze(1), real.pooled)  # [B*T, D]
        out = self.temporal(frames.view(B, T, D), mask)  # tokens [B, T, D], pooled [B, D]
        if self.output == "frames":
            return EncoderOutput(out.tokens, mask, out.pooled)
        rows = flat.nonzero().squeeze(1)  # [F] positions of the real frames in B*T
        patches = real.tokens.new_zeros(B * T, N, D).index_copy(0, rows, real.tokens)  # [B*T, N, D]
        assert self.time is not None  # built for output="patches"
        patches = patches.view(B, T, N, D) + self.time[:T, None, :]  # [B, T, N, D]
        pmask = real.mask.new_zeros(B * T, N).index_copy(0, rows, real.mask).view(B, T, N)  # [B, T, N]
        tokens = patches.masked_fill(~pmask[..., None], 0.0).reshape(B, T * N, D)  # [B, T*N, D]
        return EncoderOutput(tokens, pmask.reshape(B, T * N), out.pooled)
