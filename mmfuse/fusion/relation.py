"""``relation``: relation network: an MLP over every ordered pair of vision tokens, conditioned on the question."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from mmfuse.encoders.base import EncoderOutput
from mmfuse.fusion.base import FusionOutput, check_inputs, register_fusion
from mmfuse.fusion.pair_sum import auto_chunk, pair_sum
from mmfuse.layers import masked_max

REDUCTIONS = ("sum", "mean", "max")


@register_fusion("relation")
class RelationFusion(nn.Module):
    """Relation network: Santoro et al. 2017, "A simple neural network module for relational reasoning".

    ::

        RN(O, q) = f_phi( sum_{i,j} g_theta(o_i, o_j, q) )

    over every ordered pair ``(i, j)`` of valid context tokens (``i == j`` included, as in the paper);
    ``o_i`` are the context (vision) tokens and ``q`` the question modality's pooled vector.
    ``g_theta`` is an MLP of ``g_layers`` ReLU layers of width ``g_dim``; ``f_phi`` is
    ``Linear(g_dim, g_dim) -> ReLU -> Dropout -> Linear(g_dim, dim)``.

    The first layer of ``g`` on ``[o_i ; o_j ; q]`` is ``W_a o_i + W_b o_j + W_q q + b``, so the
    per-token terms are computed once and broadcast to the ``[B, N, N, g_dim]`` pair grid (no
    concatenated pairs). The grid still costs ``B * N^2 * g_dim`` per layer of ``g`` (ViT-B/16 at
    224 px: N = 197): mind ``g_dim`` and the batch size.

    Pairs that involve a padded token are excluded (the pair grid is masked; padded tokens are also
    zeroed before ``g``, so their content never enters). ``reduction="sum"`` is the paper's; its
    scale grows with ``N^2``, so ``"mean"`` (over the valid pairs) is offered too, and ``"max"`` (per
    channel, over the valid pairs): "the shape of the object closest to the red one" is then the channel
    of ``g(red, o_j, q)`` that peaks at a near ``o_j``, kept whole instead of summed with the other N² − 1 pairs. A row
    without any valid token gives zero: ``pooled = f_phi(0)``.

    Memory and speed (``pair_chunk``): with ``reduction`` sum or mean, the pair sum runs a few questions at a
    time (:func:`~mmfuse.fusion.pair_sum.pair_sum`: forward and backward by hand, no whole pair grid kept;
    1.85x faster than autograd on the whole grid at 64 questions, N = 65, g_dim 256 on a 2-core CPU, and a
    tenth of the bytes kept for the backward, 80 vs 798 MB: ``tools/benchmark_fusion.py``).
    ``pair_chunk=None`` picks the chunk from the grid's size; ``0`` materialises the whole grid under autograd,
    as before (``reduction="max"`` always does). Same maths, other float rounding.

    Coordinates: the paper appends each object's (x, y) position; ViT patch tokens already carry
    position embeddings, so none are added here.

    Fast path (``accepts_index``): ``forward(inputs, index={context: [B] long})`` with one context row
    per distinct image computes the token terms ``W_a o_i + b`` and ``W_b o_j`` once per image and
    gathers them per question (the question term differs per question); the result equals the
    gathered per-question call.

    Shapes:
        inputs[context]: tokens ``[B, N, in_dims[context]]``, mask ``[B, N]``.
        inputs[question]: pooled ``[B, in_dims[question]]`` (its tokens are not read).
        output.pooled ``[B, dim]``; ``tokens``, ``mask`` and ``attention`` are None.

    Args:
        g_layers: layers of ``g_theta`` (>= 1; the first is the decomposed one).
        g_dim: width of ``g_theta`` and of ``f_phi``'s hidden layer.
        reduction: ``"sum"`` (the paper), ``"mean"`` or ``"max"`` over the valid pairs.
        dropout: dropout in ``f_phi`` (the paper uses 0.5 there).
        pair_chunk: questions a chunk of the pair sum (None: from the grid's size; 0: the whole grid under
            autograd; needs ``reduction`` sum or mean when > 0).
        context: the modality whose tokens are the objects (default ``"image"``).
        question: the modality whose pooled vector conditions ``g`` (default ``"text"``).
    """

    accepts_index = True

    def __init__(
        self,
        in_dims: dict[str, int],
        dim: int,
        *,
        g_layers: int = 2,
        g_dim: int = 256,
        reduction: str = "sum",
        dropout: float = 0.0,
        context: str = "image",
        question: str = "text",
        pair_chunk: int | None = None,
    ) -> None:
        super().__init__()
        names = sorted(in_dims)
        for key, value in (("context", context), ("question", question)):
            if value not in in_dims:
                raise ValueError(f"relation fusion: {key} modality {value!r} is not among the modalities {names}")
        if context == question:
            raise ValueError(f"relation fusion: context and question must differ, both are {context!r}")
        for key, n in (("g_layers", g_layers), ("g_dim", g_dim)):
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"relation fusion: {key} must be an integer >= 1, got {n!r}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"relation fusion: reduction must be one of {list(REDUCTIONS)}, got {reduction!r}")
        if pair_chunk is not None and (isinstance(pair_chunk, bool) or not isinstance(pair_chunk, int)
                                       or pair_chunk < 0):
            raise ValueError(f"relation fusion: pair_chunk must be null or an integer >= 0, got {pair_chunk!r}")
        if pair_chunk and reduction == "max":
            raise ValueError("relation fusion: pair_chunk > 0 needs reduction 'sum' or 'mean' (max materialises "
                             "the grid); set pair_chunk: 0 or null")
        self.pair_chunk = 0 if reduction == "max" else pair_chunk
        ignored = [m for m in names if m not in (context, question)]
        if ignored:
            warnings.warn(f"relation fusion ignores modality(ies) {ignored}", stacklevel=2)
        self.context, self.question, self.reduction = context, question, reduction
        self.in_dims = {m: int(in_dims[m]) for m in sorted((context, question))}
        self.dim = dim
        # g's first layer on [o_i; o_j; q], split by input block: W_a (carries the bias b), W_b, W_q
        self.g_a = nn.Linear(self.in_dims[context], g_dim)
        self.g_b = nn.Linear(self.in_dims[context], g_dim, bias=False)
        self.g_q = nn.Linear(self.in_dims[question], g_dim, bias=False)
        rest: list[nn.Module] = []
        for _ in range(g_layers - 1):
            rest += [nn.Linear(g_dim, g_dim), nn.ReLU()]
        self.g_rest = nn.Sequential(*rest)
        self.f = nn.Sequential(nn.Linear(g_dim, g_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(g_dim, dim))

    def forward(self, inputs: Mapping[str, EncoderOutput],
                index: Mapping[str, Tensor] | None = None) -> FusionOutput:
        """Fuse. ``index`` (optional): ``{context: [B] long}`` when ``inputs[context]`` holds one row per
        distinct image; question ``b`` uses context row ``index[b]``."""
        check_inputs(inputs, self.in_dims, "relation")
        cx, q = inputs[self.context], inputs[self.question].pooled  # q: [B, Dq]
        mask = cx.mask.bool()  # [U, N] (U = B without index)
        o = cx.tokens.masked_fill(~mask[..., None], 0.0)
        a, b = self.g_a(o), self.g_b(o)  # [U, N, g]: once per context row
        idx = None if index is None else index.get(self.context)
        if idx is not None:
            if idx.shape != (q.shape[0],):
                raise ValueError(f"relation fusion: index[{self.context!r}] must have shape [{q.shape[0]}] "
                                 f"(one row per question), got {list(idx.shape)}")
            a, b, mask = a[idx], b[idx], mask[idx]
        pairs = mask[:, :, None] & mask[:, None, :]  # [B, N, N] bool
        chunk = self.pair_chunk
        if chunk is None:
            chunk = auto_chunk(a.device, a.shape[1], a.shape[2])
        if chunk:
            layers = [(m.weight, m.bias) for m in self.g_rest if isinstance(m, nn.Linear)]
            total = pair_sum(a, b, self.g_q(q), pairs, layers, chunk)  # [B, g]
            return FusionOutput(pooled=self.f(self._mean(total, pairs)))
        h = torch.relu(a[:, :, None] + b[:, None, :] + self.g_q(q)[:, None, None])  # [B, N, N, g]
        h = self.g_rest(h)
        pairs = pairs.flatten(1)  # [B, N*N]
        if self.reduction == "max":
            return FusionOutput(pooled=self.f(masked_max(h.flatten(1, 2), pairs)))
        # masked sum as one batched matmul: no masked copy of the pair grid (padded pairs are finite)
        total = torch.einsum("bpg,bp->bg", h.flatten(1, 2), pairs.to(h.dtype))  # [B, g]
        return FusionOutput(pooled=self.f(self._mean(total, pairs)))

    def _mean(self, total: Tensor, pairs: Tensor) -> Tensor:
        """``total [B, g]`` divided by the valid pairs (``pairs [B, ...]`` bool) when the reduction is mean."""
        if self.reduction != "mean":
            return total
        return total / pairs.flatten(1).sum(1, keepdim=True).clamp_min(1)
