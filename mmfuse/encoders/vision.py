"""ViT image encoder through ``timm.create_model``; patch tokens out."""

from __future__ import annotations

from typing import Any

import timm
import torch
from timm.data import resolve_model_data_config
from timm.layers import build_sincos2d_pos_embed
from torch import Tensor, nn

from mmfuse.encoders.base import EncoderOutput
from mmfuse.encoders.stems import STEMS

POS_EMBEDS = ("learned", "sincos")
POOLS = ("cls", "mean", "flatten")


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
        pos_embed: ``learned`` (timm's: trained, initialised with std 0.02) or ``sincos`` (fixed 2-D
            sine-cosine position codes of the patch grid, as in MAE and MoCo v3; about as large as the
            stem's features from the first step, so a token says where it is before anything is learned).
        pool: the image vector ``pooled``: ``cls`` (the class token; the mean patch token for a model without
            one), ``mean`` (the mean patch token) or ``flatten`` (a linear map of all patch tokens in grid
            order, ``Linear(N·D → D)``, as a CNN's flattened feature map feeds an MLP: each position has its own
            weights, so *where* a feature is becomes linearly readable from the first step; a new, trained
            layer even on a pretrained ViT).
        coords: append each patch token's grid coordinates, ``(x, y)`` of the cell centre in ``[-1, 1]`` (x right,
            y down), as two more channels after the ViT (Santoro et al. 2017 tag every CNN cell with its
            coordinates): where a token is becomes readable by whatever attends to it, without the ViT having
            to keep it. ``out_dim`` grows by 2; ``pooled`` gets ``(0, 0)``, the image's centre.
        freeze: stop gradients into the encoder.
        **kwargs: any other ``timm.create_model`` argument.

    Shapes:
        ``forward(images [B,3,H,W])`` → tokens ``[B,N,D]`` (patch tokens, prefix tokens removed; ``D`` is
        the ViT's width, + 2 with ``coords``), mask ``[B,N]`` all True, pooled ``[B,D]`` (the class token when
        the model has one, else the mean patch token; see ``pool``).
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
        pos_embed: str = "learned",
        pool: str = "cls",
        coords: bool = False,
        freeze: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"unknown ViT stem {stem!r}; valid: {', '.join(STEMS)}")
        if pos_embed not in POS_EMBEDS:
            raise ValueError(f"unknown ViT pos_embed {pos_embed!r}; valid: {', '.join(POS_EMBEDS)}")
        if pool not in POOLS:
            raise ValueError(f"unknown ViT pool {pool!r}; valid: {', '.join(POOLS)}")
        if stem != "patch":
            kwargs["embed_layer"] = STEMS[stem]
        overrides = dict(img_size=img_size, patch_size=patch_size, embed_dim=embed_dim,
                         depth=depth, num_heads=num_heads, **kwargs)
        overrides = {k: v for k, v in overrides.items() if v is not None}
        self.vit = timm.create_model(name, pretrained=pretrained, num_classes=0,
                                     checkpoint_path=checkpoint_path or "", **overrides)
        self.is_pretrained = bool(pretrained or checkpoint_path)
        width = int(self.vit.embed_dim)
        self.out_dim: int = width + 2 * bool(coords)
        self.num_prefix_tokens: int = int(getattr(self.vit, "num_prefix_tokens", 0))
        self.has_class_token = bool(getattr(self.vit, "cls_token", None) is not None)
        self.frozen = freeze
        if pos_embed == "sincos":
            self._fix_sincos_pos_embed()
        self.pool = pool
        rows, cols = self.vit.patch_embed.grid_size
        self.flatten = nn.Linear(rows * cols * width, width) if pool == "flatten" else None
        self.coords: Tensor | None
        if coords:  # [N, 2] cell centres in grid (row-major) order, the order of the patch tokens
            y, x = torch.meshgrid((torch.arange(rows) + 0.5) / rows * 2 - 1, (torch.arange(cols) + 0.5) / cols * 2 - 1,
                                  indexing="ij")
            self.register_buffer("coords", torch.stack([x.flatten(), y.flatten()], 1), persistent=False)
        else:
            self.coords = None
        if freeze:  # the ViT only: a flatten layer is new and must learn even on frozen features
            self.vit.requires_grad_(False)

    def _fix_sincos_pos_embed(self) -> None:
        """Replace the learned position embeddings by fixed 2-D sin-cos codes (prefix tokens get zeros), kept
        as a buffer so that no optimiser, freeze or unfreeze ever trains them; same state-dict key."""
        pe = self.vit.pos_embed  # [1, P+N, D] or [1, N, D] (no_embed_class)
        grid = list(self.vit.patch_embed.grid_size)
        codes = build_sincos2d_pos_embed(grid, dim=int(self.vit.embed_dim), device=pe.device, dtype=pe.dtype)  # [N, D]
        fixed = torch.zeros_like(pe, requires_grad=False)
        fixed[0, pe.shape[1] - codes.shape[0]:] = codes
        del self.vit.pos_embed
        self.vit.register_buffer("pos_embed", fixed)

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
        if self.flatten is not None:
            pooled = self.flatten(tokens.flatten(1))  # [B, N*D] -> [B, D]
        elif self.pool == "cls" and self.has_class_token:
            pooled = x[:, 0]  # [B, D]
        else:
            pooled = tokens.mean(1)  # [B, D]
        if self.coords is not None:
            b = tokens.shape[0]
            tokens = torch.cat([tokens, self.coords.to(tokens.dtype).expand(b, -1, -1)], -1)  # [B, N, D+2]
            pooled = torch.cat([pooled, pooled.new_zeros(b, 2)], -1)  # [B, D+2]
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return EncoderOutput(tokens, mask, pooled)
