"""``bottleneck``: attention bottlenecks (MBT): modalities exchange information only through shared latents."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import torch
from torch import Tensor, nn

from mmfuse.encoders.base import EncoderOutput
from mmfuse.fusion.base import FusionOutput, check_inputs, register_fusion
from mmfuse.layers import FeedForward, MaskedAttention


class BottleneckLayer(nn.Module):
    """One modality's pre-norm transformer layer over ``x = [tokens ; latents]``.

    ``x += Attn(LN(x) -> LN(x))`` (key padding mask: the token mask, latents always valid);
    ``x += FFN(LN(x))``. Shapes: ``tokens [B, N, D]``, ``mask [B, N]``, ``latents [B, L, D]``.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = MaskedAttention(dim, num_heads, dropout)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, mlp_ratio, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, tokens: Tensor, mask: Tensor, latents: Tensor,
                update_tokens: bool = True) -> tuple[Tensor | None, Tensor]:
        """Updated ``(tokens [B, N, D], latents [B, L, D])``. ``update_tokens=False`` (a last layer,
        whose token states nobody reads) runs the latent queries only: the latents come out the same,
        since attention rows and the FFN are per position; the tokens come back None."""
        n = tokens.shape[1]
        x = torch.cat([tokens, latents], dim=1)  # [B, N+L, D]
        keep = torch.cat([mask, mask.new_ones(latents.shape[:2])], dim=1)  # [B, N+L]: latents always valid
        xn = self.norm(x)
        query, y = (xn, x) if update_tokens else (xn[:, n:], latents)
        d, _ = self.attn(query, xn, keep)
        y = y + self.drop(d)
        y = y + self.ff(self.norm_ff(y))
        return (y[:, :n], y[:, n:]) if update_tokens else (None, y)


@register_fusion("bottleneck")
class BottleneckFusion(nn.Module):
    """Attention bottlenecks: Nagrani et al. 2021, "Attention Bottlenecks for Multimodal Fusion" (MBT).

    ``num_latents`` learned bottleneck tokens ``z`` are shared by every modality. Each layer ``l``
    runs, per modality ``m`` (its own weights), a transformer layer over its tokens and the latents,
    then averages the per-modality latent updates (the paper's fusion via bottlenecks)::

        [x_m^{l+1} ; z_m^{l+1}] = Transformer_m([x_m^l ; z^l])
        z^{l+1} = mean_m z_m^{l+1}

    so a modality's tokens reach another modality only through ``z``. The transformer layer is
    pre-norm, see :class:`BottleneckLayer`. Tokens are first projected to ``dim`` (padded positions
    zeroed before, and masked as attention keys, so their content never enters). Every attention
    row sees the latents, so a modality without any valid token gives no NaN.

    Read-out: ``tokens`` are the final latents after a LayerNorm, ``[B, num_latents, dim]`` with an
    all-True mask; ``pooled`` is their mean. All cross-modal information lies in the latents, so
    with one layer the output is already fused. (The last layer's token states are never read, so
    that layer runs its latent queries only; :meth:`streams` gives the token states.)

    Shapes:
        inputs[m]: tokens ``[B, N_m, in_dims[m]]``, mask ``[B, N_m]`` (every modality in ``in_dims``).
        output.pooled ``[B, dim]``; output.tokens ``[B, num_latents, dim]``; output.mask
        ``[B, num_latents]`` all True; output.attention None.

    Args:
        num_latents: number of shared bottleneck tokens (the paper uses 4).
        num_layers: fusion layers.
        num_heads, mlp_ratio, dropout: of each transformer layer.
    """

    def __init__(
        self,
        in_dims: dict[str, int],
        dim: int,
        *,
        num_latents: int = 4,
        num_layers: int = 2,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not in_dims:
            raise ValueError("bottleneck fusion needs at least one modality in in_dims, got none")
        for key, value in (("num_latents", num_latents), ("num_layers", num_layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"bottleneck fusion: {key} must be an integer >= 1, got {value!r}")
        if dim % num_heads:
            raise ValueError(f"bottleneck fusion: dim={dim} is not divisible by num_heads={num_heads}")
        self.in_dims = {m: int(in_dims[m]) for m in sorted(in_dims)}
        self.dim = dim
        self.proj = nn.ModuleDict({m: nn.Linear(d, dim) for m, d in self.in_dims.items()})
        self.latents = nn.Parameter(0.02 * torch.randn(num_latents, dim))  # small init, as in MBT
        self.layers = nn.ModuleList(
            nn.ModuleDict({m: BottleneckLayer(dim, num_heads, mlp_ratio, dropout) for m in self.in_dims})
            for _ in range(num_layers)
        )
        self.out_norm = nn.LayerNorm(dim)

    def streams(self, inputs: Mapping[str, EncoderOutput],
                final_tokens: bool = True) -> tuple[dict[str, Tensor], Tensor]:
        """Run the layers: ``({m: tokens [B, N_m, dim]}, latents [B, num_latents, dim])``, both before the
        output LayerNorm, tokens zero at padded positions. ``final_tokens=False`` skips the last layer's
        token updates and returns no tokens (``{}``); the latents are the same."""
        xs = check_inputs(inputs, self.in_dims, "bottleneck")
        masks = {m: x.mask.bool() for m, x in zip(self.in_dims, xs)}
        tokens = {m: self.proj[m](x.tokens.masked_fill(~masks[m][..., None], 0.0)) for m, x in zip(self.in_dims, xs)}
        z = self.latents.expand(xs[0].tokens.shape[0], -1, -1)  # [B, L, dim]
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            updates = []
            for m, block in cast(nn.ModuleDict, layer).items():
                t, z_m = block(tokens[m], masks[m], z, update_tokens=final_tokens or i < last)
                if t is not None:
                    tokens[m] = t
                updates.append(z_m)
            z = torch.stack(updates).mean(0)  # the shared latents: mean of the per-modality updates
        if not final_tokens:
            return {}, z
        return {m: t.masked_fill(~masks[m][..., None], 0.0) for m, t in tokens.items()}, z

    def forward(self, inputs: Mapping[str, EncoderOutput]) -> FusionOutput:
        _, z = self.streams(inputs, final_tokens=False)
        z = self.out_norm(z)
        return FusionOutput(pooled=z.mean(1), tokens=z, mask=z.new_ones(z.shape[:2], dtype=torch.bool))
