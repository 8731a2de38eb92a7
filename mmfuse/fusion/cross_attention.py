"""``cross_attention``: text tokens attend to vision tokens (optionally both ways, co-attention)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from mmfuse.encoders.base import EncoderOutput
from mmfuse.fusion.base import FusionOutput, check_inputs, pick_pair, register_fusion
from mmfuse.layers import FeedForward, MaskedAttention, masked_mean


class CrossAttentionBlock(nn.Module):
    """One pre-norm block: ``t += Attn(LN(t) -> LN(v))``; ``t += FFN(LN(t))``.

    With ``bidirectional`` the vision stream is updated too, from the same previous-layer states:
    ``v += Attn(LN(v) -> LN(t))``; ``v += FFN(LN(v))``.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float, bidirectional: bool) -> None:
        super().__init__()
        self.bidirectional = bidirectional
        self.norm_t, self.norm_v = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn_t = MaskedAttention(dim, num_heads, dropout)
        self.norm_ff_t = nn.LayerNorm(dim)
        self.ff_t = FeedForward(dim, mlp_ratio, dropout)
        self.drop = nn.Dropout(dropout)
        if bidirectional:
            self.attn_v = MaskedAttention(dim, num_heads, dropout)
            self.norm_ff_v = nn.LayerNorm(dim)
            self.ff_v = FeedForward(dim, mlp_ratio, dropout)

    def forward(self, t: Tensor, t_mask: Tensor, v: Tensor, v_mask: Tensor, index: Tensor | None = None,
                need_weights: bool | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        """``index [B]``: ``v``/``v_mask`` hold one row per *image* and ``index`` maps each query
        row to its image (unidirectional only): keys and values are computed once per image.
        ``need_weights``: return the query->context weights (else None; see :class:`MaskedAttention`)."""
        tn = self.norm_t(t)
        if index is not None:
            k, val = self.attn_t.project_kv(self.norm_v(v))  # [U, h, M, hd]
            dt, attn = self.attn_t(tn, v, v_mask[index], kv=(k[index], val[index]), need_weights=need_weights)
        else:
            vn = self.norm_v(v)
            dt, attn = self.attn_t(tn, vn, v_mask, need_weights=need_weights)
            if self.bidirectional:
                dv, _ = self.attn_v(vn, tn, t_mask)
                v = v + self.drop(dv)
                v = v + self.ff_v(self.norm_ff_v(v))
        t = t + self.drop(dt)
        t = t + self.ff_t(self.norm_ff_t(t))
        return t, v, attn


@register_fusion("cross_attention")
class CrossAttentionFusion(nn.Module):
    """Query (text) tokens attend to context (vision) tokens through ``num_layers`` pre-norm blocks.

    Both token streams are first projected to ``dim`` (padded positions zeroed before, so their
    content never enters any computation). Each block is pre-norm (see
    :class:`CrossAttentionBlock`); a final LayerNorm is applied to the output streams.

    Pooled output: the masked mean of the valid query tokens; with ``bidirectional`` it is
    ``Linear(2*dim, dim)([mean_text, mean_vision])`` (both masked means). A row with no valid
    token contributes zeros to its mean (never NaN).

    Shapes:
        inputs[query]: tokens ``[B, N_t, in_dims[query]]``, mask ``[B, N_t]``.
        inputs[context]: tokens ``[B, N_v, in_dims[context]]``, mask ``[B, N_v]``.
        output.pooled ``[B, dim]``; output.tokens ``[B, N_t, dim]`` (updated query tokens, zero at
        padded positions); output.mask ``[B, N_t]`` (the query mask); output.attention: None, or,
        when asked for (``need_weights = True``, e.g. inside :func:`mmfuse.layers.attention_weights`),
        ``[B, num_heads, N_t, N_v]``: last layer's query->context weights, rows sum to 1 over the
        valid context tokens and are 0 on padded ones. Without it every layer runs PyTorch's fused
        ``scaled_dot_product_attention``.

    Args:
        query: the modality whose tokens attend (default ``"text"``).
        context: the attended modality; None = the single modality other than ``query``
            (an error if there are several). Other modalities in ``in_dims`` are ignored.
        bidirectional: also let context tokens attend to query tokens (co-attention).
    """

    def __init__(
        self,
        in_dims: dict[str, int],
        dim: int,
        *,
        num_layers: int = 2,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        bidirectional: bool = False,
        query: str = "text",
        context: str | None = None,
    ) -> None:
        super().__init__()
        query, context = pick_pair("cross_attention", in_dims, query, context)
        if dim % num_heads:
            raise ValueError(f"cross_attention dim={dim} is not divisible by num_heads={num_heads}")
        if num_layers < 1:
            raise ValueError(f"cross_attention needs num_layers >= 1, got {num_layers}")
        self.query, self.context = query, context
        self.in_dims = {m: int(in_dims[m]) for m in sorted((query, context))}
        self.dim, self.bidirectional = dim, bidirectional
        self.need_weights = False  # return the last layer's attention map (reports); see attention_weights()
        self.proj_t = nn.Linear(self.in_dims[query], dim)
        self.proj_v = nn.Linear(self.in_dims[context], dim)
        self.blocks = nn.ModuleList(
            CrossAttentionBlock(dim, num_heads, mlp_ratio, dropout, bidirectional) for _ in range(num_layers)
        )
        self.out_norm_t = nn.LayerNorm(dim)
        if bidirectional:
            self.out_norm_v = nn.LayerNorm(dim)
            self.pool = nn.Linear(2 * dim, dim)

    @property
    def accepts_index(self) -> bool:
        """True: ``forward`` may be given one context row per image plus ``index`` (see below)."""
        return not self.bidirectional

    def forward(self, inputs: Mapping[str, EncoderOutput],
                index: Mapping[str, Tensor] | None = None) -> FusionOutput:
        """Fuse. ``index`` (optional, unidirectional only): ``{context: [B] long}`` when
        ``inputs[context]`` holds one row per distinct image and ``index`` maps each query row
        to its image; the result equals that of the gathered inputs, but the context stream is
        projected once per image instead of once per question."""
        check_inputs(inputs, self.in_dims, "cross_attention")
        qx, cx = inputs[self.query], inputs[self.context]
        idx = None if index is None else index.get(self.context)
        if idx is not None and self.bidirectional:  # both streams are per question: gather now
            cx, idx = cx.index_select(idx), None
        t_mask, v_mask = qx.mask.bool(), cx.mask.bool()
        t = self.proj_t(qx.tokens.masked_fill(~t_mask[..., None], 0.0))
        v = self.proj_v(cx.tokens.masked_fill(~v_mask[..., None], 0.0))
        attn = None
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            want = True if self.need_weights and i == last else None  # None: the attention module's own setting
            t, v, attn = block(t, t_mask, v, v_mask, idx, need_weights=want)
        t = self.out_norm_t(t).masked_fill(~t_mask[..., None], 0.0)
        pooled = masked_mean(t, t_mask)
        if self.bidirectional:
            pooled = self.pool(torch.cat([pooled, masked_mean(self.out_norm_v(v), v_mask)], dim=-1))
        return FusionOutput(pooled=pooled, tokens=t, mask=t_mask, attention=attn)
