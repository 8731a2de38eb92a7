"""The bottom layer: masked mean (exact values), masked attention (the fused path equals the explicit one),
the attention-weights switch, and the shared errors."""

from __future__ import annotations

import math

import pytest
import torch

from mmfuse.layers import FeedForward, MaskedAttention, attention_weights, masked_max, masked_mean, normalize


# ---------------------------------------------------------------- masked_max
def test_masked_max_skips_padding_and_gives_zero_for_an_empty_row() -> None:
    tokens = torch.tensor([[[1.0, -5.0], [3.0, -7.0], [float("nan"), 9.0]],
                           [[2.0, 2.0], [float("inf"), 1.0], [0.0, 0.0]]], requires_grad=True)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    out = masked_max(tokens, mask)
    assert torch.equal(out.detach(), torch.tensor([[3.0, -5.0], [0.0, 0.0]]))
    out.sum().backward()
    assert tokens.grad is not None
    assert torch.equal(tokens.grad, torch.tensor([[[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0]] * 3]))


# ---------------------------------------------------------------- masked_mean
def test_masked_mean_per_row_over_tokens() -> None:
    tokens = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [float("inf"), float("nan")]],
                           [[5.0, 6.0], [1e30, -1e30], [7.0, 8.0]]])  # [B=2, N=3, D=2]
    mask = torch.tensor([[True, True, False], [True, False, True]])
    out = masked_mean(tokens, mask)  # the mask's last dim: [B, D]
    assert torch.equal(out, torch.tensor([[2.0, 3.0], [6.0, 7.0]]))
    assert torch.equal(masked_mean(tokens, mask, dim=1), out)
    assert masked_mean(tokens, mask, dim=1, keepdim=True).shape == (2, 1, 2)


def test_masked_mean_whole_tensor_and_mask_kinds() -> None:
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, float("nan"), 6.0]])
    m = torch.tensor([[1, 1, 0], [1, 0, 1]])
    for mask in (m, m.bool(), m.float()):
        out = masked_mean(x, mask)  # same shape as x: every valid entry
        assert out.dim() == 0 and out.item() == pytest.approx((1 + 2 + 4 + 6) / 4)
    assert masked_mean(torch.tensor([1.0, 2.0, 6.0])).item() == pytest.approx(3.0)  # None: all valid
    assert masked_mean(x, m, dim=0).tolist() == [2.5, 2.0, 6.0]


def test_masked_mean_empty_rows_are_zero_and_gradients_finite() -> None:
    x = torch.tensor([[[float("inf")], [2.0]], [[3.0], [4.0]]], requires_grad=True)
    mask = torch.tensor([[False, False], [True, True]])
    out = masked_mean(x, mask)
    assert out.tolist() == [[0.0], [3.5]]
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad[0].abs().sum() == 0
    assert masked_mean(x.detach(), torch.zeros(2, 2, 1, dtype=torch.bool)).item() == 0.0


def test_masked_mean_rejects_a_mask_that_does_not_fit() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        masked_mean(torch.zeros(2, 3), torch.ones(3, 2, dtype=torch.bool))


# ---------------------------------------------------------------- MaskedAttention
def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x, ctx = torch.randn(4, 5, 16, generator=g), torch.randn(4, 7, 16, generator=g)
    mask = torch.ones(4, 7, dtype=torch.bool)
    mask[1, 4:] = False  # padding
    mask[2] = False  # a row whose keys are all padding
    mask[3, ::2] = False  # holes
    return x, ctx, mask


def test_fused_and_explicit_attention_agree() -> None:
    torch.manual_seed(0)
    attn = MaskedAttention(16, 4, dropout=0.3).eval()  # eval: dropout off
    x, ctx, mask = _inputs()
    fused, none = attn(x, ctx, mask)
    explicit, weights = attn(x, ctx, mask, need_weights=True)
    assert none is None and weights is not None and weights.shape == (4, 4, 5, 7)
    torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-6)
    assert (weights[~mask[:, None, None, :].expand_as(weights)] == 0).all()  # padded keys: exactly 0
    torch.testing.assert_close(weights[[0, 1, 3]].sum(-1), torch.ones(3, 4, 5))
    assert (weights[2] == 0).all()  # all-padded row: no weight anywhere ...
    torch.testing.assert_close(fused[2], attn.out.bias.expand(5, 16))  # ... and the out-projection's bias
    # keys and values computed once (the per-image fast path) give the same result
    kv = attn.project_kv(ctx)
    torch.testing.assert_close(attn(x, ctx[:0], mask, kv=kv)[0], fused)


def test_fused_attention_ignores_padded_content_and_has_finite_gradients() -> None:
    torch.manual_seed(0)
    attn = MaskedAttention(16, 4)
    x, ctx, mask = _inputs()
    garbage = ctx.clone()
    garbage[~mask] = 1e4 * torch.randn(int((~mask).sum()), 16)
    torch.testing.assert_close(attn(x, garbage, mask)[0], attn(x, ctx, mask)[0], rtol=1e-5, atol=1e-5)
    x.requires_grad_(True)
    attn(x, ctx, mask)[0].sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in attn.parameters())


def test_attention_matches_a_hand_computed_case() -> None:
    """One head, identity projections: out = softmax(q·kᵀ/√d over the real keys)·v."""
    attn = MaskedAttention(2, 1).eval()
    with torch.no_grad():
        for lin in (attn.q, attn.k, attn.v, attn.out):
            lin.weight.copy_(torch.eye(2))
            lin.bias.zero_()
    x = torch.tensor([[[1.0, 0.0]]])
    ctx = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    mask = torch.tensor([[True, True, False]])
    w = torch.softmax(torch.tensor([1.0, 0.0]) / math.sqrt(2), 0)
    expected = w[0] * torch.tensor([1.0, 0.0]) + w[1] * torch.tensor([0.0, 1.0])
    for need in (False, True):
        out, weights = attn(x, ctx, mask, need_weights=need)
        torch.testing.assert_close(out[0, 0], expected)
    torch.testing.assert_close(weights[0, 0, 0], torch.cat([w, torch.zeros(1)]))


def test_attention_weights_switch_is_scoped() -> None:
    model = torch.nn.Sequential(MaskedAttention(8, 2), torch.nn.Linear(8, 8), MaskedAttention(8, 2))
    model[2].need_weights = True  # a module already asking keeps asking afterwards
    with attention_weights(model) as m:
        assert m is model and model[0].need_weights and model[2].need_weights
    assert not model[0].need_weights and model[2].need_weights


def test_attention_width_must_split_into_heads() -> None:
    with pytest.raises(ValueError, match="num_heads"):
        MaskedAttention(10, 4)


def test_feed_forward_and_normalize() -> None:
    ff = FeedForward(8, 2.0, 0.0)
    assert ff[0].out_features == 16 and ff(torch.zeros(3, 8)).shape == (3, 8)
    images = torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 1, 2).expand(1, 3, 1, 2)
    out = normalize(images, torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0.5, 0.25, 1.0]))
    assert out[0, :, 0, 0].tolist() == [-1.0, -2.0, -0.5] and out[0, :, 0, 1].tolist() == [1.0, 2.0, 0.5]
