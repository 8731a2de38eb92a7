"""Image tensor transforms: resize to the encoder's size, label-preserving augmentation,
normalisation with the encoder's own mean/std. All on batched tensors, so a batch of
small images costs microseconds, not a PIL round trip per image."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mmfuse.layers import normalize

__all__ = ["AUGMENTATIONS", "augment", "normalize", "resize_uint8"]

# label-preserving only where no question is about position or orientation
AUGMENTATIONS = ("hflip", "vflip", "rot90")


def resize_uint8(image: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear (antialiased) resize of uint8 ``[3,H,W]`` or ``[N,3,H,W]`` to ``size``."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    batched = image.dim() == 4
    x = image if batched else image.unsqueeze(0)
    x = F.interpolate(x.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    x = x.round().clamp_(0, 255).to(torch.uint8)
    return x if batched else x[0]


def augment(images: Tensor, ops: Sequence[str], generator: torch.Generator | None = None) -> Tensor:
    """Random per-image ``hflip`` / ``vflip`` / ``rot90`` (k ∈ {0,1,2,3}) of ``[N,3,H,W]``.

    Only label-preserving where no question is about position or orientation (easy-VQA).
    """
    if not ops:
        return images
    n = images.shape[0]
    out = images
    if "hflip" in ops:
        flip = torch.rand(n, generator=generator) < 0.5  # [N]
        out = torch.where(flip.view(n, 1, 1, 1), out.flip(-1), out)
    if "vflip" in ops:
        flip = torch.rand(n, generator=generator) < 0.5
        out = torch.where(flip.view(n, 1, 1, 1), out.flip(-2), out)
    if "rot90" in ops and out.shape[-1] == out.shape[-2]:
        k = torch.randint(0, 4, (n,), generator=generator)  # [N]
        rotated = [out] + [torch.rot90(out, j, (-2, -1)) for j in (1, 2, 3)]
        out = torch.stack(rotated)[k, torch.arange(n)]  # pick rotation k[i] for image i
    return out
