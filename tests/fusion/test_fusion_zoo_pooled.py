"""Exact values of the pooled-vector fusions (gated, film, mfb, mutan, tensor, lmf) on tiny hand-checked
inputs, their non-default variants, and their errors. The shared contract is in ``test_fusion.py``."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmfuse.encoders.base import EncoderOutput
from mmfuse.fusion import build_fusion


def pooled_inputs(**values: list[list[float]]) -> dict[str, EncoderOutput]:
    """One real token per row, equal to the pooled vector."""
    out = {}
    for m, v in values.items():
        x = torch.tensor(v)
        out[m] = EncoderOutput(x[:, None], torch.ones(x.shape[0], 1, dtype=torch.bool), x)
    return out


def random_inputs(in_dims: dict[str, int], batch: int = 3, seed: int = 0) -> dict[str, EncoderOutput]:
    g = torch.Generator().manual_seed(seed)
    return pooled_inputs(**{m: torch.randn(batch, d, generator=g).tolist() for m, d in in_dims.items()})


def set_linear(lin: nn.Module, weight: list[list[float]], bias: list[float] | None = None) -> None:
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(weight))
        lin.bias.copy_(torch.tensor(bias) if bias is not None else torch.zeros(len(weight)))


# ---------------------------------------------------------------- gated


def test_gated_two_modalities_is_the_papers_gmu():
    fusion = build_fusion("gated", {"text": 2, "image": 1}, 2).eval()
    assert fusion.gate.out_features == 2  # one sigmoid gate per channel, not a softmax over modalities
    set_linear(fusion.proj["image"], [[1.0], [-2.0]], [0.0, 0.5])  # W_v
    set_linear(fusion.proj["text"], [[1.0, 0.0], [0.5, 1.0]])  # W_t
    set_linear(fusion.gate, [[1.0, 0.0, 0.0], [0.0, 1.0, -1.0]], [0.0, 0.25])  # W_z on [v; t] (sorted)
    out = fusion(pooled_inputs(text=[[1.0, -1.0]], image=[[0.5]]))
    assert out.tokens is None and out.mask is None and out.attention is None
    v, t0, t1 = 0.5, 1.0, -1.0
    h_v = [math.tanh(v), math.tanh(-2 * v + 0.5)]
    h_t = [math.tanh(t0), math.tanh(0.5 * t0 + t1)]
    z = [1 / (1 + math.exp(-v)), 1 / (1 + math.exp(-(t0 - t1 + 0.25)))]
    expected = [zi * hv + (1 - zi) * ht for zi, hv, ht in zip(z, h_v, h_t)]  # h = z h_v + (1 - z) h_t
    torch.testing.assert_close(out.pooled, torch.tensor([expected]))


def test_gated_three_modalities_softmax_gate():
    fusion = build_fusion("gated", {"text": 1, "image": 1, "audio": 1}, 1).eval()
    for lin in fusion.proj.values():
        set_linear(lin, [[1.0]])
    # gate rows are [audio, image, text] channels; only the image logit depends on the input
    set_linear(fusion.gate, [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    out = fusion(pooled_inputs(text=[[0.3]], image=[[math.log(2.0)]], audio=[[-0.2]]))
    w = [1 / 4, 2 / 4, 1 / 4]  # softmax(0, log 2, 0)
    expected = w[0] * math.tanh(-0.2) + w[1] * math.tanh(math.log(2.0)) + w[2] * math.tanh(0.3)
    torch.testing.assert_close(out.pooled, torch.tensor([[expected]]))


def test_gated_norm_normalises_each_row():
    fusion = build_fusion("gated", {"text": 3, "image": 4}, 8, norm=True).eval()
    pooled = fusion(random_inputs({"text": 3, "image": 4})).pooled
    torch.testing.assert_close(pooled.mean(-1), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(pooled.var(-1, unbiased=False), torch.ones(3), atol=1e-3, rtol=0)


# ---------------------------------------------------------------- film


def film_inputs() -> dict[str, EncoderOutput]:
    image = torch.tensor([[[1.0, 4.0], [3.0, -2.0], [100.0, -100.0]]])  # the last token is padding
    text = torch.tensor([[1.0, 2.0]])
    return {"image": EncoderOutput(image, torch.tensor([[True, True, False]]), image[:, 0]),
            "text": EncoderOutput(text[:, None], torch.ones(1, 1, dtype=torch.bool), text)}


def test_film_zero_generator_is_the_identity_on_projected_tokens():
    torch.manual_seed(0)
    fusion = build_fusion("film", {"text": 2, "image": 2}, 3).eval()
    with torch.no_grad():
        fusion.film.weight.zero_()
        fusion.film.bias.zero_()  # Δγ = 0, β = 0: γ = 1
    inputs = film_inputs()
    out = fusion(inputs)
    u = F.linear(inputs["image"].tokens[0, :2], fusion.proj.weight, fusion.proj.bias)  # the two real tokens
    torch.testing.assert_close(out.tokens[0, :2], u)
    assert (out.tokens[0, 2] == 0).all()
    assert torch.equal(out.mask, inputs["image"].mask)
    torch.testing.assert_close(out.pooled[0], u.mean(0))


@pytest.mark.parametrize("residual,tokens", [(False, [[4.0, 1.0], [8.0, -2.0]]), (True, [[5.0, 5.0], [11.0, -2.0]])])
def test_film_exact_values(residual, tokens):
    fusion = build_fusion("film", {"text": 2, "image": 2}, 2, residual=residual).eval()
    set_linear(fusion.proj, [[1.0, 0.0], [0.0, 1.0]])  # u = image tokens
    # rows: Δγ_0, Δγ_1, β_0, β_1. text = [1, 2]: Δγ = [1, -0.5] → γ = [2, 0.5]; β = [2, -1]
    set_linear(fusion.film, [[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 0.0]], [0.0, -0.5, 0.0, -1.0])
    # u = [1, 4], [3, -2]: γ u + β = [4, 1], [8, -2]; residual: u + relu(.) = [5, 5], [11, -2]
    out = fusion(film_inputs())
    expected = torch.tensor(tokens)
    torch.testing.assert_close(out.tokens[0], torch.cat([expected, torch.zeros(1, 2)]))
    torch.testing.assert_close(out.pooled[0], expected.mean(0))
    pool_max = build_fusion("film", {"text": 2, "image": 2}, 2, residual=residual, pool="max").eval()
    pool_max.load_state_dict(fusion.state_dict())
    # per channel over the two real tokens (the padded [100, -100] never wins): [8, 1] / [11, 5]
    torch.testing.assert_close(pool_max(film_inputs()).pooled[0], expected.amax(0))


def test_film_relu_is_relu_of_the_film_layer():
    fusion = build_fusion("film", {"text": 2, "image": 2}, 2, relu=True).eval()
    set_linear(fusion.proj, [[1.0, 0.0], [0.0, 1.0]])
    set_linear(fusion.film, [[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 0.0]], [0.0, -0.5, 0.0, -1.0])
    # as test_film_exact_values: γ u + β = [4, 1], [8, -2]; ReLU zeroes the -2
    out = fusion(film_inputs())
    torch.testing.assert_close(out.tokens[0, :2], torch.tensor([[4.0, 1.0], [8.0, 0.0]]))
    torch.testing.assert_close(out.pooled[0], torch.tensor([6.0, 0.5]))


def test_film_max_pool_gradient_goes_to_the_winning_token_only():
    fusion = build_fusion("film", {"text": 2, "image": 2}, 2, pool="max").eval()
    set_linear(fusion.proj, [[1.0, 0.0], [0.0, 1.0]])
    set_linear(fusion.film, [[0.0, 0.0]] * 4, [0.0, 0.0, 0.0, 0.0])  # the identity: y = image tokens
    inputs = film_inputs()
    image = inputs["image"].tokens.clone().requires_grad_(True)
    inputs["image"] = EncoderOutput(image, inputs["image"].mask, image[:, 0])
    fusion(inputs).pooled.sum().backward()
    # channel 0: max(1, 3) is token 1; channel 1: max(4, -2) is token 0; the padded token gets nothing
    assert image.grad is not None
    torch.testing.assert_close(image.grad[0], torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]))


def test_film_roles_and_errors():
    dims = {"text": 4, "image": 6}
    fusion = build_fusion("film", dims, 8, condition="image").eval()  # vision conditions, text is modulated
    assert (fusion.condition, fusion.modulated) == ("image", "text")
    inputs = random_inputs(dims)
    assert fusion(inputs).tokens.shape == (3, 1, 8)
    with pytest.raises(ValueError, match="condition modality 'audio'"):
        build_fusion("film", dims, 8, condition="audio")
    with pytest.raises(ValueError, match="modulated modality 'text'"):
        build_fusion("film", dims, 8, modulated="text")
    three = {"text": 4, "image": 6, "audio": 2}
    with pytest.raises(ValueError, match="set modulated= explicitly"):
        build_fusion("film", three, 8)
    with pytest.raises(ValueError, match=r"pool must be one of \['mean', 'max'\], got 'sum'"):
        build_fusion("film", dims, 8, pool="sum")
    with pytest.warns(UserWarning, match="audio"):
        fusion = build_fusion("film", three, 8, modulated="image")
    assert fusion.in_dims == {"image": 6, "text": 4}


# ---------------------------------------------------------------- mfb


def test_mfb_sum_pool_signed_sqrt_and_l2_norm():
    fusion = build_fusion("mfb", {"text": 2, "image": 2}, 2, factor=2).eval()
    assert isinstance(fusion.out, nn.Identity)  # o = dim: no output projection
    set_linear(fusion.proj["text"], [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]], [0.0, 0.0, 0.0, 1.0])
    set_linear(fusion.proj["image"], [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, -2.0]])
    # Uᵀt = [1, 2, 3, 1], Vᵀv = [3, 3, -1, 2] → p = [3, 6, -3, 2] → sum pairs z = [9, -1] → [3, -1] → /√10
    out = fusion(pooled_inputs(text=[[1.0, 2.0]], image=[[3.0, -1.0]]))
    torch.testing.assert_close(out.pooled, torch.tensor([[3.0, -1.0]]) / math.sqrt(10.0))
    assert out.tokens is None


def test_mfb_output_is_unit_norm_and_projected_when_out_dim_differs():
    dims = {"text": 3, "image": 5}
    inputs = random_inputs(dims)
    fusion = build_fusion("mfb", dims, 6).eval()
    torch.testing.assert_close(fusion(inputs).pooled.norm(dim=-1), torch.ones(3))
    fusion = build_fusion("mfb", dims, 6, out_dim=10, factor=3).eval()
    assert fusion.proj["text"].out_features == 30 and fusion.out.in_features == 10
    with torch.no_grad():
        fusion.out.weight.copy_(torch.eye(6, 10))  # read back the first 6 of the o = 10 normalised channels
        fusion.out.bias.zero_()
    pooled = fusion(inputs).pooled
    assert pooled.shape == (3, 6) and (pooled.norm(dim=-1) <= 1 + 1e-6).all()


def test_mfb_zero_product_gives_zero_and_finite_gradients():
    fusion = build_fusion("mfb", {"text": 2, "image": 2}, 2, factor=2)
    with torch.no_grad():
        fusion.proj["text"].bias.zero_()
    out = fusion(pooled_inputs(text=[[0.0, 0.0]], image=[[1.0, 2.0]]))  # Uᵀt = 0 → z = 0
    assert (out.pooled == 0).all()
    (out.pooled * torch.tensor([[1.0, -2.0]])).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in fusion.parameters())


# ---------------------------------------------------------------- mutan


def mutan_pooled(fusion: nn.Module, t: torch.Tensor, v: torch.Tensor, rank: int) -> torch.Tensor:
    """z = Σ_r (W_{t,r} tanh(W_t t)) ∘ (W_{v,r} tanh(W_v v)), each rank's rows taken from the stacked maps."""
    tt = torch.tanh(F.linear(t, fusion.proj["text"].weight, fusion.proj["text"].bias))
    vv = torch.tanh(F.linear(v, fusion.proj["image"].weight, fusion.proj["image"].bias))
    z = 0
    for r in range(rank):
        rows = slice(r * fusion.mm_dim, (r + 1) * fusion.mm_dim)
        ft, fv = fusion.factors["text"], fusion.factors["image"]
        z = z + F.linear(tt, ft.weight[rows], ft.bias[rows]) * F.linear(vv, fv.weight[rows], fv.bias[rows])
    return F.linear(z, fusion.out.weight, fusion.out.bias)


@pytest.mark.parametrize("rank", [1, 3])
def test_mutan_is_the_sum_of_rank_one_products(rank):
    dims = {"text": 3, "image": 4}
    torch.manual_seed(rank)
    fusion = build_fusion("mutan", dims, 5, rank=rank, proj_dim=6, mm_dim=7).eval()
    inputs = random_inputs(dims)
    expected = mutan_pooled(fusion, inputs["text"].pooled, inputs["image"].pooled, rank)
    torch.testing.assert_close(fusion(inputs).pooled, expected)


def test_mutan_rank_one_hand_values():
    fusion = build_fusion("mutan", {"text": 1, "image": 1}, 1, rank=1, proj_dim=1).eval()
    set_linear(fusion.proj["text"], [[1.0]])
    set_linear(fusion.proj["image"], [[2.0]])
    set_linear(fusion.factors["text"], [[3.0]], [1.0])
    set_linear(fusion.factors["image"], [[-1.0]])
    set_linear(fusion.out, [[0.5]], [0.25])
    t, v = 0.4, -0.3
    expected = 0.5 * (3 * math.tanh(t) + 1) * (-math.tanh(2 * v)) + 0.25
    torch.testing.assert_close(fusion(pooled_inputs(text=[[t]], image=[[v]])).pooled, torch.tensor([[expected]]))


# ---------------------------------------------------------------- tensor and lmf


def test_tensor_outer_product_of_one_extended_vectors():
    fusion = build_fusion("tensor", {"text": 1, "image": 1, "audio": 1}, 8, proj_dim=1).eval()
    for lin in fusion.proj.values():
        set_linear(lin, [[1.0]])
    assert fusion.out.in_features == 8  # (1 + 1)^3
    set_linear(fusion.out, torch.eye(8).tolist())
    a, i, t = 2.0, 3.0, 5.0  # sorted: audio, image, text
    out = fusion(pooled_inputs(text=[[t]], image=[[i]], audio=[[a]]))
    # [a, 1] ⊗ [i, 1] ⊗ [t, 1], row-major
    expected = [a * i * t, a * i, a * t, a, i * t, i, t, 1.0]
    torch.testing.assert_close(out.pooled, torch.tensor([expected]))
    assert out.tokens is None


@pytest.mark.parametrize("in_dims", [{"text": 3, "image": 4}, {"text": 3, "image": 4, "audio": 2}])
def test_lmf_equals_tensor_with_the_weight_its_factors_reconstruct(in_dims):
    torch.manual_seed(0)
    lmf = build_fusion("lmf", in_dims, 5, rank=3, proj_dim=2).eval()
    tensor = build_fusion("tensor", in_dims, 5, proj_dim=2).eval()
    factors = [lmf.factors[m] for m in sorted(in_dims)]  # [r, proj_dim+1, dim] each
    letters = "abc"[: len(factors)]
    full = torch.einsum(",".join(f"r{x}o" for x in letters) + f"->o{letters}", *factors)  # Σ_r ⊗_m W_m^(r)
    with torch.no_grad():
        tensor.proj.load_state_dict(lmf.proj.state_dict())
        tensor.out.weight.copy_(full.reshape(5, -1))
        tensor.out.bias.copy_(lmf.bias + 0.5)
        lmf.bias.add_(0.5)
    inputs = random_inputs(in_dims, batch=4)
    torch.testing.assert_close(lmf(inputs).pooled, tensor(inputs).pooled, rtol=1e-5, atol=1e-5)


def test_lmf_rank_one_hand_values():
    fusion = build_fusion("lmf", {"text": 1, "image": 1}, 1, rank=1, proj_dim=1).eval()
    for lin in fusion.proj.values():
        set_linear(lin, [[1.0]])
    with torch.no_grad():
        fusion.factors["image"].copy_(torch.tensor([[[2.0], [1.0]]]))  # 2 i + 1
        fusion.factors["text"].copy_(torch.tensor([[[1.0], [-3.0]]]))  # t - 3
        fusion.bias.fill_(0.5)
    out = fusion(pooled_inputs(text=[[4.0]], image=[[1.5]]))
    torch.testing.assert_close(out.pooled, torch.tensor([[(2 * 1.5 + 1) * (4.0 - 3) + 0.5]]))


# ---------------------------------------------------------------- variants and errors


@pytest.mark.parametrize("name,in_dims,hparams", [
    ("gated", {"text": 3, "image": 4}, {"norm": True}),
    ("gated", {"text": 3, "image": 4, "audio": 2}, {}),
    ("film", {"text": 3, "image": 4}, {"residual": True}),
    ("mfb", {"text": 3, "image": 4}, {"out_dim": 6}),
    ("mfb", {"text": 3, "image": 4, "audio": 2}, {}),
    ("mutan", {"text": 3, "image": 4, "audio": 2}, {"proj_dim": 5}),
    ("tensor", {"text": 3, "image": 4, "audio": 2}, {"proj_dim": 2}),
    ("lmf", {"text": 3, "image": 4, "audio": 2}, {}),
])
def test_variants_train(name, in_dims, hparams):
    torch.manual_seed(0)
    fusion = build_fusion(name, in_dims, 8, **hparams).train()
    out = fusion(random_inputs(in_dims, batch=4))
    assert out.pooled.shape == (4, 8)
    (out.pooled * torch.randn(out.pooled.shape)).sum().backward()
    for pname, p in fusion.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", ["gated", "film", "mfb", "mutan", "tensor", "lmf"])
def test_one_modality_is_an_error_naming_the_fusion(name):
    with pytest.raises(ValueError, match=name):
        build_fusion(name, {"text": 4}, 8)


@pytest.mark.parametrize("name,hparams,match", [
    ("mfb", {"factor": 0}, "mfb factor must be an integer >= 1, got 0"),
    ("mfb", {"out_dim": 0}, "mfb out_dim"),
    ("mutan", {"rank": 0}, "mutan rank must be an integer >= 1, got 0"),
    ("mutan", {"proj_dim": -1}, "mutan proj_dim"),
    ("mutan", {"mm_dim": 0}, "mutan mm_dim"),
    ("tensor", {"proj_dim": 0}, "tensor proj_dim"),
    ("lmf", {"rank": 0}, "lmf rank must be an integer >= 1, got 0"),
    ("lmf", {"proj_dim": 0}, "lmf proj_dim"),
])
def test_bad_hparams(name, hparams, match):
    with pytest.raises(ValueError, match=match):
        build_fusion(name, {"text": 4, "image": 4}, 8, **hparams)
