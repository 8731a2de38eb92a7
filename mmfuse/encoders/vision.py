"""ViT image encoder through ``timm.create_model``; patch tokens out."""

from __future__ import annotations

from typing import Any

import timm
import torch
from timm.data import resolve_model_data_config
from torch import Tensor, nn

from mmfuse.encoders.base import EncoderOutput
from mmfuse.encoders.stems import STEMS


class VisionEncoder(nn.Module):
    """Any timm ViT as an encoder of ``[B,3,H,W]`` images.

    Args:
        name: a timm ViT name, e.g. ``vit_tiny_patch16_224`` or ``vit_base_patch16_224``.
        pretrained: load timm's pretrained weights (a download; a user option only).
        checkpoint_path: a local timm checkpoint (state dict) to load instead.
        img_size, patch_size, embed_dim, depth, num_heads: size overrides (None keeps the
            variant's default).
        stem: ``patch`` (the ViT's own patch embedding) or ``conv`` (a convolutional stem,
            :mod:`mmfuse.encoders.stems`; not compatible with pretrained patch weights).
        freeze: stop gradients into the encoder.
        **kwargs: any other ``timm.create_model`` argument.

    Shapes:
        ``forward(images [B,3,H,W])`` → tokens ``[B,N,D]`` (patch tokens, prefix tokens
        removed), mask ``[B,N]`` all True, pooled ``[B,D]`` (the class token when the model
        has one, else the mean patch token).
    """

    vit: Any  # the timm model: its class (and so its attributes) depends on ``name``

    def __init__(
        self,
        name: str = "vit_tiny_patch16_224",
        pretrained: bool = False,
        checkpoint_path: str | None = None,
        img_size: int | None = None,
        patch_size: int | None = None,
        embed_dim: int | None = None,
        depth: int | None = None,
        num_heads: int | None = None,
        stem: str = "patch",
        freeze: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"unknown ViT stem {stem!r}; valid: {', '.join(STEMS)}")
        if stem != "patch":
            kwargs["embed_layer"] = STEMS[stem]
        overrides = dict(img_size=img_size, patch_size=patch_size, embed_dim=embed_dim,
                         depth=depth, num_heads=num_heads, **kwargs)
        overrides = {k: v for k, v in overrides.items() if v is not None}
        self.vit = timm.create_model(name, pretrained=pretrained, num_classes=0,
                                     checkpoint_path=checkpoint_path or "", **overrides)
        self.is_pretrained = bool(pretrained or checkpoint_path)
        self.out_dim: int = int(self.vit.embed_dim)
        self.num_prefix_tokens: int = int(getattr(self.vit, "num_prefix_tokens", 0))
        self.has_class_token = bool(getattr(self.vit, "cls_token", None) is not None)
        self.frozen = freeze
        if freeze:
            self.vit.requires_grad_(False)

    @property
    def data_config(self) -> dict[str, Any]:
        """Preprocessing from timm's own data config: ``{"img_size": (H, W), "mean", "std"}``."""
        cfg = resolve_model_data_config(self.vit)
        size = getattr(self.vit.patch_embed, "img_size", cfg["input_size"][1:])
        return {"img_size": tuple(int(s) for s in size), "mean": tuple(cfg["mean"]), "std": tuple(cfg["std"])}

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patch grid ``(rows, cols)``: used to draw attention maps over the image."""
        return tuple(self.vit.patch_embed.grid_size)

    def forward(self, images: Tensor) -> EncoderOutput:
        x = self.vit.forward_features(images)  # [B, P+N, D]
        tokens = x[:, self.num_prefix_tokens:]  # [B, N, D]
        pooled = x[:, 0] if self.has_class_token else tokens.mean(1)  # [B, D]
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return EncoderOutput(tokens, mask, pooled)
