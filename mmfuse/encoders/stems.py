"""Patch-embedding stems for timm ViTs.

``conv``: the convolutional stem of Xiao et al. 2021 ("Early Convolutions Help Transformers
See Better"): ``log2(patch_size)`` stride-2 3×3 convolutions (BatchNorm, ReLU) and a final
1×1 projection, in place of the single ``patch×patch`` stride-``patch`` convolution. Same
token grid and width, so the rest of the ViT is unchanged.

``deep_conv``: the same with one more stride-1 3×3 convolution per stage, which roughly
doubles each token's receptive field (29 px instead of 15 px at patch 8): a token can then
see a whole small object, not just a piece of its edge.
"""

from __future__ import annotations

import math
from typing import Any

from timm.layers import PatchEmbed
from torch import nn


class ConvStemEmbed(PatchEmbed):
    """Drop-in ``embed_layer`` for ``timm.models.VisionTransformer`` (same interface as ``PatchEmbed``).

    Shapes: ``[B, 3, H, W]`` → ``[B, (H/p)·(W/p), embed_dim]`` with ``p = patch_size`` (a power of 2).
    """

    convs_per_stage = 1

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        p = self.patch_size[0]
        if p != self.patch_size[1] or p < 2 or p & (p - 1):
            raise ValueError(f"conv stem needs a square power-of-2 patch size, got {self.patch_size}")
        dim, in_chans = self.proj.out_channels, self.proj.in_channels
        n = int(math.log2(p))
        widths = [max(16, dim >> (n - i)) for i in range(1, n + 1)]  # e.g. p=8, dim=128: 32, 64, 128
        layers: list[nn.Module] = []
        c = in_chans
        for w in widths:
            for j in range(self.convs_per_stage):
                layers += [nn.Conv2d(c, w, 3, stride=2 if j == 0 else 1, padding=1, bias=False),
                           nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
                c = w
        layers.append(nn.Conv2d(c, dim, 1))
        self.proj = nn.Sequential(*layers)  # type: ignore[assignment]  # timm types proj as the Conv2d it builds


class DeepConvStemEmbed(ConvStemEmbed):
    """:class:`ConvStemEmbed` with two 3×3 convolutions per stage (the second at stride 1)."""

    convs_per_stage = 2


STEMS = {"patch": PatchEmbed, "conv": ConvStemEmbed, "deep_conv": DeepConvStemEmbed}
