"""The relation network's pair sum, a few questions at a time: no ``[B, N, N, g]`` grid is ever whole.

``pair_sum`` computes, per question ``b``::

    h0[i, j] = relu(a[b, i] + c[b, j] + q[b])                  # g's first layer, decomposed by input block
    h[i, j]  = relu(W_L ... relu(W_1 h0[i, j] + b_1) ... + b_L)  # the rest of g: L Linear + ReLU layers
    out[b]   = sum_{i, j} m[b, i, j] * h[i, j]                   # [g_dim]

the maths of :class:`~mmfuse.fusion.relation.RelationFusion`'s materialised path. Plain autograd on that path
keeps four or five ``[B, N, N, g]`` tensors alive per layer and streams each of them through memory several
times (at B=256, N=65, g=256 each is 1.1 GB): on a CPU the element-wise passes cost as much as the matrix
products. Here the forward and the backward walk ``chunk`` questions at a time, so every pair-grid tensor is
small enough to stay in cache, and the backward recomputes what it needs from the saved per-token terms; the
only pair-sized tensor kept is one bool per output of g's last ReLU (a quarter of one fp32 grid). The
matrix products are the same three per layer as autograd's, plus one forward product per layer beyond the
first of g_rest (their inputs are recomputed, not stored). Same maths; other float rounding (sums in
another order).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

# Pair-grid elements a chunk may hold: 4 MiB of fp32 on a CPU (lives in L2/L3: measured fastest at one
# 65x65x256 question a chunk on a 2-core EPYC); far more on an accelerator, where launches cost and memory is
# fast.
CPU_CHUNK_ELEMENTS = 2**20
DEVICE_CHUNK_ELEMENTS = 2**26


def auto_chunk(device: torch.device, n_tokens: int, g_dim: int) -> int:
    """Questions a chunk for ``n_tokens`` context tokens and width ``g_dim`` (at least 1)."""
    budget = CPU_CHUNK_ELEMENTS if device.type == "cpu" else DEVICE_CHUNK_ELEMENTS
    return max(1, budget // (n_tokens * n_tokens * g_dim))


def _first(a: Tensor, c: Tensor, q: Tensor) -> Tensor:
    """Pre-activation of g's first layer for a chunk: ``[k, N, 1, g] + [k, 1, N, g]`` -> ``[k, N, N, g]``."""
    return (a + q[:, None])[:, :, None] + c[:, None]


def _forward(a: Tensor, c: Tensor, q: Tensor, m: Tensor, chunk: int, params: Sequence[Tensor],
             last_on: Tensor | None) -> Tensor:
    """The chunked pair sum ``[B, out]``; writes g's last ReLU pattern into ``last_on`` when given."""
    weights, biases = params[0::2], params[1::2]
    out = a.new_empty(a.shape[0], weights[-1].shape[0] if weights else a.shape[-1])
    for s in range(0, a.shape[0], chunk):
        e = slice(s, s + chunk)
        h = _first(a[e], c[e], q[e]).relu_()
        for w, b in zip(weights, biases, strict=True):
            h = F.linear(h, w, b).relu_()
        if last_on is not None:
            last_on[e] = h > 0
        out[e] = torch.einsum("kijg,kij->kg", h, m[e])
    return out


class _PairSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, a: Tensor, c: Tensor, q: Tensor, m: Tensor, chunk: int, *params: Tensor) -> Tensor:
        n_questions, n_tokens, _ = a.shape
        # no layers: the backward recomputes the pattern from a, c, q
        grid = (n_questions, n_tokens, n_tokens, params[-2].shape[0]) if params else (0,)
        last_on = torch.empty(grid, dtype=torch.bool, device=a.device)
        out = _forward(a, c, q, m, chunk, params, last_on if params else None)
        ctx.chunk = chunk
        ctx.save_for_backward(a, c, q, m, last_on, *params)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        a, c, q, m, last_on, *params = ctx.saved_tensors
        weights, biases = params[0::2], params[1::2]
        grad_a, grad_c, grad_q = torch.empty_like(a), torch.empty_like(c), torch.empty_like(q)
        grad_w = [torch.zeros_like(w) for w in weights]
        grad_b = [torch.zeros_like(b) for b in biases]
        for s in range(0, a.shape[0], ctx.chunk):
            e = slice(s, s + ctx.chunk)
            inputs = [_first(a[e], c[e], q[e]).relu_()]  # the input of every layer of g_rest, recomputed
            for w, b in zip(weights[:-1], biases[:-1], strict=True):
                inputs.append(F.linear(inputs[-1], w, b).relu_())
            g = m[e][..., None] * grad_out[e][:, None, None, :]  # d out / d h: [k, N, N, out_dim]
            g.mul_(last_on[e] if weights else inputs[0] > 0)
            for layer in reversed(range(len(weights))):
                x = inputs[layer]
                g2 = g.reshape(-1, g.shape[-1])
                grad_w[layer].addmm_(g2.t(), x.reshape(-1, x.shape[-1]))
                grad_b[layer].add_(g2.sum(0))
                g = (g2 @ weights[layer]).view_as(x).mul_(x > 0)  # through the Linear, then the ReLU below it
            rows = g.sum(2)  # [k, N, g]: over j
            grad_a[e], grad_c[e], grad_q[e] = rows, g.sum(1), rows.sum(1)
        grads = [t for pair in zip(grad_w, grad_b, strict=True) for t in pair]
        return grad_a, grad_c, grad_q, None, None, *grads


def pair_sum(a: Tensor, c: Tensor, q: Tensor, m: Tensor, layers: Sequence[tuple[Tensor, Tensor]],
             chunk: int) -> Tensor:
    """``sum_{i,j} m[b,i,j] g(a_i + c_j + q)`` a chunk of questions at a time (module docstring).

    Args:
        a: ``[B, N, g]`` the ``W_a o_i + b`` term per token (the first index of a pair).
        c: ``[B, N, g]`` the ``W_b o_j`` term per token (the second index).
        q: ``[B, g]`` the question term ``W_q q``.
        m: ``[B, N, N]`` pair weights (1 for a valid pair, 0 for one with a padded token), in ``a``'s dtype.
        layers: ``(weight [out, in], bias [out])`` of every Linear of g after the first; ReLU after each.
        chunk: questions a chunk (>= 1).

    Returns:
        ``[B, out]`` (``out`` = the last layer's width, ``g`` when ``layers`` is empty).
    """
    if chunk < 1:
        raise ValueError(f"pair_sum: chunk must be >= 1, got {chunk}")
    params = [t.to(a.dtype) for pair in layers for t in pair]
    c, q, m = c.to(a.dtype), q.to(a.dtype), m.to(a.dtype)
    with torch.autocast(a.device.type, enabled=False):  # the inputs' dtype throughout (autocast would mix)
        if not torch.is_grad_enabled() or not any(t.requires_grad for t in (a, c, q, *params)):
            return _forward(a, c, q, m, chunk, params, None)  # evaluation: no backward, no saved ReLU pattern
        out: Tensor = _PairSum.apply(a, c, q, m, chunk, *params)
    return out
