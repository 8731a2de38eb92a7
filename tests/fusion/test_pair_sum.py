"""The relation network's chunked pair sum (``mmfuse.fusion.pair_sum``): its hand-written backward equals
autograd on the whole pair grid, for every depth of g, both reductions, padding, the image-once path and any
chunk size; and the automatic chunk."""

from __future__ import annotations

import pytest
import torch

from mmfuse.encoders.base import EncoderOutput
from mmfuse.fusion import build_fusion
from mmfuse.fusion.pair_sum import CPU_CHUNK_ELEMENTS, auto_chunk, pair_sum


def inputs(seed: int = 0) -> dict[str, EncoderOutput]:
    """3 questions; image rows with 5, 3 and 4 valid tokens of 5 (padding filled with garbage)."""
    gen = torch.Generator().manual_seed(seed)
    image = torch.randn(3, 5, 6, generator=gen)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 1, 1, 1, 1]], dtype=torch.bool)
    image[~mask] = 1e4
    text = torch.randn(3, 4, 7, generator=gen)
    return {"image": EncoderOutput(image.requires_grad_(), mask, image.mean(1)),
            "text": EncoderOutput(text, torch.ones(3, 4, dtype=torch.bool), text[:, 0].clone().requires_grad_())}


def grads(fusion: torch.nn.Module, x: dict[str, EncoderOutput], index: dict | None = None
          ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    for t in (x["image"].tokens, x["text"].pooled):
        t.grad = None
    fusion.zero_grad()
    out = fusion(x, index=index).pooled
    (out * torch.linspace(-1, 2, out.numel()).view_as(out)).sum().backward()
    named = {n: p.grad.clone() for n, p in fusion.named_parameters()}
    named["image tokens"], named["question"] = x["image"].tokens.grad.clone(), x["text"].pooled.grad.clone()
    return out.detach(), named


def pair(g_layers: int, reduction: str, chunk: int | None) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The same relation fusion twice: whole grid under autograd, and chunked."""
    torch.manual_seed(0)
    whole = build_fusion("relation", {"text": 7, "image": 6}, 4, g_layers=g_layers, g_dim=8, reduction=reduction,
                         pair_chunk=0)
    torch.manual_seed(0)
    chunked = build_fusion("relation", {"text": 7, "image": 6}, 4, g_layers=g_layers, g_dim=8,
                           reduction=reduction, pair_chunk=chunk)
    return whole, chunked


@pytest.mark.parametrize("g_layers", [1, 2, 3])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("chunk", [1, 2, None])
def test_chunked_pair_sum_equals_autograd_on_the_whole_grid(g_layers, reduction, chunk):
    whole, chunked = pair(g_layers, reduction, chunk)
    x = inputs()
    out_w, grad_w = grads(whole, x)
    out_c, grad_c = grads(chunked, x)
    torch.testing.assert_close(out_c, out_w, rtol=1e-5, atol=1e-5)
    assert grad_c.keys() == grad_w.keys()
    for name in grad_w:
        assert grad_w[name].abs().max() > 0 or name.startswith("f."), name  # every gradient is exercised
        torch.testing.assert_close(grad_c[name], grad_w[name], rtol=1e-4, atol=1e-5, msg=name)
    # padded tokens get no gradient on either path
    assert torch.equal(grad_c["image tokens"][~x["image"].mask], torch.zeros(3, 6))


def test_chunked_pair_sum_on_the_image_once_path():
    """One image row per distinct image and an index: equal to the whole grid on the gathered rows."""
    whole, chunked = pair(2, "sum", 1)
    x = inputs()
    index = {"image": torch.tensor([0, 2, 2, 1, 0])}
    text = torch.randn(5, 4, 7)
    x["text"] = EncoderOutput(text, torch.ones(5, 4, dtype=torch.bool), text[:, 0].clone().requires_grad_())
    out_w, grad_w = grads(whole, x, index)
    out_c, grad_c = grads(chunked, x, index)
    torch.testing.assert_close(out_c, out_w, rtol=1e-5, atol=1e-5)
    for name in grad_w:
        torch.testing.assert_close(grad_c[name], grad_w[name], rtol=1e-4, atol=1e-5, msg=name)


def test_pair_sum_by_hand_without_layers():
    """No layers after the first: sum_{i,j} m_ij relu(a_i + c_j + q), checked on 2 tokens of width 1."""
    a = torch.tensor([[[1.0], [-2.0]]], requires_grad=True)
    c = torch.tensor([[[0.5], [3.0]]], requires_grad=True)
    q = torch.tensor([[-1.0]], requires_grad=True)
    m = torch.tensor([[[1.0, 1.0], [1.0, 0.0]]])  # the pair (1, 1) is padding
    out = pair_sum(a, c, q, m, [], chunk=1)
    # pairs: (0,0) relu(0.5)=0.5, (0,1) relu(3)=3, (1,0) relu(-2.5)=0, (1,1) masked
    assert torch.equal(out, torch.tensor([[3.5]]))
    out.sum().backward()
    # d/da_0 = 2 active pairs, d/da_1 = 0; d/dc_0 = 1, d/dc_1 = 1; d/dq = 2
    assert torch.equal(a.grad, torch.tensor([[[2.0], [0.0]]]))
    assert torch.equal(c.grad, torch.tensor([[[1.0], [1.0]]]))
    assert torch.equal(q.grad, torch.tensor([[2.0]]))
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        pair_sum(a, c, q, m, [], chunk=0)


def test_auto_chunk_fills_the_budget_and_keeps_at_least_one_question():
    cpu = torch.device("cpu")
    assert auto_chunk(cpu, 65, 256) == 1  # 1.08 M elements a question: over the budget, still one
    assert auto_chunk(cpu, 10, 8) == CPU_CHUNK_ELEMENTS // 800
    assert auto_chunk(torch.device("cuda"), 65, 256) > auto_chunk(cpu, 65, 256)


def test_chunked_pair_sum_under_bf16_autocast_matches_fp32():
    whole, chunked = pair(2, "mean", None)
    x = inputs()
    ref = whole(x).pooled
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = chunked(x).pooled
    out.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in chunked.parameters())
    torch.testing.assert_close(out.float(), ref, rtol=5e-2, atol=5e-2)
