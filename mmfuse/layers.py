"""The bottom layer: building blocks that encoders, fusions, heads and RL share.

Nothing here imports another mmfuse module, so every room may import this one.

* :func:`masked_mean`: the one masked mean (per row over a dimension, or over a whole tensor).
* :class:`MaskedAttention`: multi-head attention with a key padding mask; runs through PyTorch's fused
  ``scaled_dot_product_attention`` unless the attention weights are asked for.
* :func:`attention_weights`: a context manager that asks every module under it for its weights.
* :class:`FeedForward`: the transformer MLP.
* :func:`normalize`: uint8 images to the encoder's normalised floats.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FeedForward", "MaskedAttention", "attention_weights", "masked_max", "masked_mean", "normalize"]


def masked_mean(x: Tensor, mask: Tensor | None = None, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """Mean of ``x`` over the entries where ``mask`` is nonzero.

    ``mask`` (bool, int or float; None = every entry valid) has the leading dimensions of ``x`` and is
    broadcast over its trailing ones. ``dim`` is the dimension averaged over; None picks the two uses in
    mmfuse: with a mask of fewer dimensions than ``x``, the mask's last one (the token axis: ``tokens
    [B, N, D]`` with ``mask [B, N]`` → ``[B, D]``, a fusion's or encoder's pooled vector); with a mask of
    ``x``'s shape (or None), every entry (``[B, T]`` and ``[B, T]`` → a 0-dim tensor, the RL statistics).

    Masked entries are never read (NaN or inf there cannot leak in, forward or backward), and a slice
    without any valid entry gives 0, never NaN.
    """
    if mask is None:
        valid = torch.ones_like(x, dtype=torch.bool)
    else:
        valid = mask.to(x.device)
        valid = valid if valid.dtype == torch.bool else valid != 0
        if dim is None and valid.dim() < x.dim():
            dim = valid.dim() - 1
        try:
            valid = valid.reshape(*valid.shape, *([1] * (x.dim() - valid.dim()))).expand_as(x)
        except RuntimeError as e:
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not fit x of shape {tuple(x.shape)}") from e
    total = torch.where(valid, x, x.new_zeros(()))  # garbage at masked entries is never summed
    if dim is None:
        return total.sum() / valid.sum().to(x.dtype).clamp_min(1)  # []
    count = valid.sum(dim, keepdim=keepdim).to(x.dtype).clamp_min(1)
    return total.sum(dim, keepdim=keepdim) / count


def masked_max(x: Tensor, mask: Tensor) -> Tensor:
    """Element-wise max of ``tokens [B, N, D]`` over the valid tokens of ``mask [B, N]`` → ``[B, D]``.

    Masked tokens are never read (their gradient is 0) and a row without any valid token gives 0, never
    ``-inf``. The gradient of each output entry goes to the token that holds the max (hard attention per
    channel: what a pooled mean dilutes over the N tokens, the max keeps).
    """
    valid = mask.to(x.device).bool()[..., None]  # [B, N, 1]
    out = x.masked_fill(~valid, float("-inf")).amax(1)  # [B, D]
    return torch.where(valid.any(1), out, out.new_zeros(()))


class MaskedAttention(nn.Module):
    """Multi-head attention of queries ``x`` over a context ``ctx`` whose padded positions are masked.

    Shapes: ``x [B, N, D]``, ``ctx [B, M, D]``, ``ctx_mask [B, M]`` (True = real) → ``out [B, N, D]`` and
    ``attn [B, heads, N, M]`` (or None). Padded keys get weight exactly 0. A row whose keys are all
    padding attends to nothing: its weights are all 0 and its output is the out-projection's bias, never
    NaN.

    Without ``need_weights`` (the default) attention runs through
    :func:`torch.nn.functional.scaled_dot_product_attention`, so a GPU can use its fused kernels (flash,
    memory-efficient); ``attn`` is then None. With ``need_weights`` (a report's heat-maps; set per call or
    on the module, see :func:`attention_weights`) the weights are computed explicitly,
    ``softmax(q·kᵀ/√d)``, and returned; both paths give the same output up to float rounding.

    Args:
        dim: model width (divisible by ``num_heads``).
        num_heads: attention heads.
        dropout: dropout on the attention weights (training only).
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.dropout = float(dropout)
        self.need_weights = False  # see attention_weights()
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def project_kv(self, ctx: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values ``[B', h, M, hd]`` of ``ctx [B', M, D]`` (compute once, reuse via ``kv=``)."""
        b, m, d = ctx.shape
        h = self.num_heads
        k = self.k(ctx).view(b, m, h, d // h).transpose(1, 2)
        v = self.v(ctx).view(b, m, h, d // h).transpose(1, 2)
        return k, v

    def forward(self, x: Tensor, ctx: Tensor, ctx_mask: Tensor, kv: tuple[Tensor, Tensor] | None = None,
                need_weights: bool | None = None) -> tuple[Tensor, Tensor | None]:
        """``kv``: keys and values from :meth:`project_kv` (then ``ctx`` is not read). ``need_weights``:
        None = the module's ``need_weights`` attribute."""
        b, n, d = x.shape
        h = self.num_heads
        q = self.q(x).view(b, n, h, d // h).transpose(1, 2)  # [B, h, N, hd]
        k, v = kv if kv is not None else self.project_kv(ctx)  # [B, h, M, hd]
        keep = ctx_mask.bool()[:, None, None, :]  # [B, 1, 1, M]
        p = self.dropout if self.training else 0.0
        if self.need_weights if need_weights is None else need_weights:
            scores = (q * self.scale) @ k.transpose(-2, -1)  # [B, h, N, M]
            scores = scores.masked_fill(~keep, torch.finfo(scores.dtype).min)
            attn = scores.softmax(dim=-1) * keep  # all-padded rows: uniform * 0 = 0
            out = F.dropout(attn, p, self.training) @ v  # [B, h, N, hd]
        else:
            # A row without any real key would be NaN in the fused kernels: let it see every key (finite
            # garbage), then zero its output, which is what the explicit path gives.
            empty = ~keep.any(-1, keepdim=True)  # [B, 1, 1, 1]
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep | empty, dropout_p=p)  # [B, h, N, hd]
            out = out.masked_fill(empty, 0.0)
            attn = None
        return self.out(out.transpose(1, 2).reshape(b, n, d)), attn


@contextlib.contextmanager
def attention_weights(module: nn.Module) -> Iterator[nn.Module]:
    """Within the block, every submodule of ``module`` with a ``need_weights`` attribute (every
    :class:`MaskedAttention`, and fusions that return attention maps) computes and returns its attention
    weights; the previous settings come back afterwards::

        with attention_weights(model):
            fused = model(batch)["fusion"]  # fused.attention: [B, heads, N_text, N_vision]
    """
    # (module, its bool setting); Any: nn.Module types an attribute it does not declare as Tensor | Module
    saved: list[tuple[Any, Any]] = [(m, m.need_weights) for m in module.modules()
                                    if isinstance(getattr(m, "need_weights", None), bool)]
    try:
        for m, _ in saved:
            m.need_weights = True
        yield module
    finally:
        for m, value in saved:
            m.need_weights = value


class FeedForward(nn.Sequential):
    """``Linear(dim, mlp_ratio*dim) -> GELU -> Dropout -> Linear(., dim) -> Dropout`` on ``[..., dim]``."""

    def __init__(self, dim: int, mlp_ratio: float, dropout: float) -> None:
        hidden = int(round(dim * mlp_ratio))
        super().__init__(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim), nn.Dropout(dropout)
        )


def normalize(images: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """uint8 ``[N,3,H,W]`` → float ``(x/255 − mean)/std`` with ``mean``/``std`` of shape ``[3]``."""
    x = images.float().div_(255.0)
    return x.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))
