"""Contract tests run for every registered fusion, plus registry, concat, weighted_sum and
cross_attention specifics."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
from torch import nn

from mmfuse.encoders.base import EncoderOutput
from mmfuse.fusion import FUSIONS, FusionOutput, build_fusion, fusion_hparams, list_fusions, register_fusion
from mmfuse.layers import attention_weights

IN_DIMS = {"text": 8, "image": 12}
DIM = 16
N_TOKENS = {"text": 5, "image": 7}

# Collected once at import: every registered fusion with its signature defaults, plus a few
# non-default variants of the built-ins.
CASES = [(name, {}) for name in list_fusions()] + [
    ("cross_attention", {"bidirectional": True}),
    ("weighted_sum", {"learn_weights": False}),
    ("weighted_sum", {"weights": [0.3, 0.7]}),
    ("concat", {"norm": False}),
    ("bottleneck", {"num_layers": 1, "num_latents": 1}),
    ("relation", {"reduction": "mean", "g_layers": 1}),
]
CASE_IDS = [name + "".join(f"-{k}={v}" for k, v in hp.items()) for name, hp in CASES]




def make_inputs(batch: int = 4, seed: int = 0, in_dims: dict[str, int] = IN_DIMS) -> dict[str, EncoderOutput]:
    """Random inputs; masks have varied lengths (every row keeps at least one real token)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for m, d in in_dims.items():
        n = N_TOKENS.get(m, 6)
        tokens = torch.randn(batch, n, d, generator=g)
        lengths = torch.randint(1, n + 1, (batch,), generator=g)
        lengths[0] = n
        mask = torch.arange(n)[None, :] < lengths[:, None]
        out[m] = EncoderOutput(tokens, mask, torch.randn(batch, d, generator=g))
    return out


def pad_with_garbage(inputs: dict[str, EncoderOutput], extra: int = 3, seed: int = 1) -> dict[str, EncoderOutput]:
    """The same batch with ``extra`` padded positions appended, filled with huge random values."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for m, x in inputs.items():
        b, _, d = x.tokens.shape
        garbage = 1e6 * torch.randn(b, extra, d, generator=g)
        out[m] = EncoderOutput(
            torch.cat([x.tokens, garbage], dim=1),
            torch.cat([x.mask, torch.zeros(b, extra, dtype=torch.bool)], dim=1),
            x.pooled,
        )
    return out


def build(name: str, hparams: dict, in_dims: dict[str, int] = IN_DIMS, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_fusion(name, in_dims, DIM, **hparams).eval()


def test_builtins_registered():
    assert {"concat", "weighted_sum", "cross_attention"} <= set(list_fusions())


@pytest.mark.parametrize("name,hparams", CASES, ids=CASE_IDS)
def test_output_shapes(name, hparams):
    inputs = make_inputs(batch=3)
    out = build(name, hparams)(inputs)
    assert isinstance(out, FusionOutput)
    assert out.pooled.shape == (3, DIM)
    assert torch.isfinite(out.pooled).all()
    if out.tokens is not None:
        assert out.tokens.shape[0] == 3 and out.tokens.shape[-1] == DIM
        assert out.mask is not None and out.mask.shape == out.tokens.shape[:2]
        assert out.mask.dtype == torch.bool


@pytest.mark.parametrize("name,hparams", CASES, ids=CASE_IDS)
def test_every_parameter_gets_a_finite_gradient(name, hparams):
    fusion = build(name, hparams).train()
    out = fusion(make_inputs())
    g = torch.Generator().manual_seed(5)
    # Random read-out weights: a plain .sum() through a LayerNorm would give zero gradients.
    loss = (out.pooled * torch.randn(out.pooled.shape, generator=g)).sum()
    if out.tokens is not None:
        loss = loss + (out.tokens * torch.randn(out.tokens.shape, generator=g)).sum()
    loss.backward()
    params = list(fusion.named_parameters())
    assert params, "a fusion without parameters"
    for pname, p in params:
        assert p.grad is not None, f"{pname} received no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{pname} has an all-zero gradient"


def with_weights(fusion: nn.Module, weights: bool) -> contextlib.AbstractContextManager:
    """``attention_weights(fusion)`` (explicit attention, maps returned) or nothing (fused kernels)."""
    return attention_weights(fusion) if weights else contextlib.nullcontext()


@pytest.mark.parametrize("weights", [False, True], ids=["fused", "weights"])
@pytest.mark.parametrize("name,hparams", CASES, ids=CASE_IDS)
def test_padding_does_not_change_outputs(name, hparams, weights):
    fusion = build(name, hparams)
    inputs = make_inputs()
    padded = pad_with_garbage(inputs)
    with torch.no_grad(), with_weights(fusion, weights):
        a, b = fusion(inputs), fusion(padded)
    torch.testing.assert_close(b.pooled, a.pooled, rtol=1e-5, atol=1e-5)
    if a.tokens is not None:
        n = a.tokens.shape[1]
        assert torch.equal(b.mask[:, :n], a.mask)
        assert not b.mask[:, n:].any()
        valid = a.mask[..., None]
        torch.testing.assert_close(b.tokens[:, :n] * valid, a.tokens * valid, rtol=1e-5, atol=1e-5)
    if a.attention is not None:
        nq, nk = a.attention.shape[-2:]
        torch.testing.assert_close(b.attention[..., :nq, :nk], a.attention, rtol=1e-5, atol=1e-6)
        assert (b.attention[..., nk:] == 0).all()


@pytest.mark.parametrize("weights", [False, True], ids=["fused", "weights"])
@pytest.mark.parametrize("name,hparams", CASES, ids=CASE_IDS)
def test_all_padded_rows_give_no_nan(name, hparams, weights):
    inputs = make_inputs()
    for m, x in inputs.items():
        mask = x.mask.clone()
        mask[1] = False
        inputs[m] = EncoderOutput(x.tokens, mask, x.pooled)
    fusion = build(name, hparams)
    with with_weights(fusion, weights):
        out = fusion(inputs)
    for field in out:
        if field is not None and field.is_floating_point():
            assert torch.isfinite(field).all()
    out.pooled.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in fusion.parameters() if p.grad is not None)


@pytest.mark.parametrize("name,hparams", CASES, ids=CASE_IDS)
def test_runs_under_bf16_autocast(name, hparams):
    fusion = build(name, hparams)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fusion(make_inputs())
    assert out.pooled.shape == (4, DIM) and torch.isfinite(out.pooled.float()).all()


@pytest.mark.parametrize("name,hparams", CASES, ids=CASE_IDS)
def test_modality_order_invariance(name, hparams):
    reversed_dims = dict(reversed(list(IN_DIMS.items())))
    assert list(reversed_dims) != list(IN_DIMS)
    f1, f2 = build(name, hparams, IN_DIMS), build(name, hparams, reversed_dims)
    inputs = make_inputs()
    reversed_inputs = dict(reversed(list(inputs.items())))
    with torch.no_grad():
        outs = [f1(inputs), f1(reversed_inputs), f2(inputs), f2(reversed_inputs)]
    for out in outs[1:]:
        torch.testing.assert_close(out.pooled, outs[0].pooled)


def _accepts_index(name: str, hparams: dict) -> bool:
    with torch.random.fork_rng():  # collection must not move the global stream
        return bool(getattr(build_fusion(name, IN_DIMS, DIM, **hparams), "accepts_index", False))


# every case whose module takes the fast path (an instance attribute: cross_attention's depends on hparams)
INDEX_CASES = [(name, hp) for name, hp in CASES if _accepts_index(name, hp)]
INDEX_IDS = [name + "".join(f"-{k}={v}" for k, v in hp.items()) for name, hp in INDEX_CASES]


def test_some_fusions_take_the_index_fast_path():
    assert {"cross_attention", "relation"} <= {name for name, _ in INDEX_CASES}
    assert ("cross_attention", {"bidirectional": True}) not in INDEX_CASES


@pytest.mark.parametrize("weights", [False, True], ids=["fused", "weights"])
@pytest.mark.parametrize("name,hparams", INDEX_CASES, ids=INDEX_IDS)
def test_index_fast_path_equals_gathered_per_question_inputs(name, hparams, weights):
    """One vision row per distinct image + ``index`` gives exactly the per-question call's outputs."""
    fusion = build(name, hparams)
    images = make_inputs(batch=4, seed=3)["image"]  # varied masks; image 1 is never used
    questions = make_inputs(batch=5, seed=4)
    index = torch.tensor([2, 0, 2, 3, 0])  # repeated and out of order
    with torch.no_grad(), with_weights(fusion, weights):
        fast = fusion(dict(questions, image=images), index={"image": index})
        slow = fusion(dict(questions, image=images.index_select(index)))
    assert fast.pooled.shape == (5, DIM)
    for got, want in zip(fast, slow):
        assert (got is None) == (want is None)
        if want is not None:
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list_fusions())
def test_missing_modality_is_a_clear_key_error(name):
    inputs = make_inputs()
    del inputs["image"]
    with pytest.raises(KeyError, match="image"):
        build(name, {})(inputs)


def test_unknown_fusion_lists_registered_names():
    with pytest.raises(KeyError) as err:
        build_fusion("no_such_fusion", IN_DIMS, DIM)
    for name in list_fusions():
        assert name in str(err.value)


def test_unknown_hparam_names_option_and_valid_ones():
    with pytest.raises(TypeError) as err:
        build_fusion("concat", IN_DIMS, DIM, bogus_option=1)
    msg = str(err.value)
    assert "bogus_option" in msg
    for option in fusion_hparams("concat"):
        assert option in msg


def test_user_registered_fusion_is_found_by_build_fusion():
    name = "_test_user_mean_fusion"
    assert name not in FUSIONS
    try:

        @register_fusion(name)
        class MeanFusion(nn.Module):
            def __init__(self, in_dims: dict[str, int], dim: int, *, scale: float = 1.0) -> None:
                super().__init__()
                self.proj = nn.ModuleDict({m: nn.Linear(d, dim) for m, d in sorted(in_dims.items())})
                self.scale = scale

            def forward(self, inputs):
                return FusionOutput(self.scale * sum(p(inputs[m].pooled) for m, p in self.proj.items()))

        assert name in list_fusions()
        assert fusion_hparams(name) == {"scale": 1.0}
        fusion = build_fusion(name, IN_DIMS, DIM, scale=2.0)
        assert isinstance(fusion, MeanFusion) and fusion.scale == 2.0
        assert fusion(make_inputs()).pooled.shape == (4, DIM)
    finally:
        FUSIONS._items.pop(name, None)  # keep the registry clean for other tests
    assert name not in list_fusions()


# ---------------------------------------------------------------- concat


def test_concat_exact_values():
    a, b = torch.tensor([[1.0], [0.0]]), torch.tensor([[2.0, -1.0], [0.5, 3.0]])
    inputs = {"b": EncoderOutput(b[:, None], torch.ones(2, 1, dtype=torch.bool), b),
              "a": EncoderOutput(a[:, None], torch.ones(2, 1, dtype=torch.bool), a)}
    fusion = build_fusion("concat", {"b": 2, "a": 1}, 3).eval()
    weight = [[1.0, 0.5, 0.0], [0.0, 1.0, -1.0], [2.0, 0.0, 1.0]]  # columns: a, b0, b1 (sorted order)
    bias = [0.1, 0.0, -0.2]
    with torch.no_grad():
        fusion.proj.weight.copy_(torch.tensor(weight))
        fusion.proj.bias.copy_(torch.tensor(bias))
    out = fusion(inputs)
    assert out.tokens is None and out.mask is None and out.attention is None

    def gelu(x):
        return 0.5 * x * (1 + math.erf(x / math.sqrt(2)))

    for row in range(2):
        x = [a[row, 0].item(), b[row, 0].item(), b[row, 1].item()]
        h = [gelu(sum(w * xi for w, xi in zip(ws, x)) + bb) for ws, bb in zip(weight, bias)]
        mean = sum(h) / 3
        var = sum((v - mean) ** 2 for v in h) / 3
        expected = [(v - mean) / math.sqrt(var + 1e-5) for v in h]
        torch.testing.assert_close(out.pooled[row], torch.tensor(expected), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- weighted_sum


def _identity_weighted_sum(**hparams):
    fusion = build_fusion("weighted_sum", {"text": 2, "image": 2}, 2, **hparams).eval()
    with torch.no_grad():
        for lin in fusion.proj.values():
            lin.weight.copy_(torch.eye(2))
            lin.bias.zero_()
    return fusion


def _pooled_inputs(text, image):
    text, image = torch.tensor(text), torch.tensor(image)
    ones = torch.ones(text.shape[0], 1, dtype=torch.bool)
    return {"text": EncoderOutput(text[:, None], ones, text), "image": EncoderOutput(image[:, None], ones, image)}


@pytest.mark.parametrize("weights", [{"text": 0.25, "image": 0.75}, [0.75, 0.25]])  # list: sorted (image, text)
def test_weighted_sum_exact_values_fixed_weights(weights):
    fusion = _identity_weighted_sum(weights=weights)
    assert fusion.modality_weights() == {"image": 0.75, "text": 0.25}
    assert not any("logit" in n for n, _ in fusion.named_parameters())
    assert sum(p.numel() for p in fusion.parameters()) == 2 * (4 + 2)  # only the two projections
    out = fusion(_pooled_inputs([[1.0, 2.0], [4.0, 0.0]], [[-1.0, 8.0], [0.0, 4.0]]))
    expected = torch.tensor([[0.25 * 1 - 0.75 * 1, 0.25 * 2 + 0.75 * 8], [0.25 * 4, 0.75 * 4]])
    torch.testing.assert_close(out.pooled, expected)
    assert out.tokens is None and out.mask is None and out.attention is None


def test_weighted_sum_unlearned_default_is_equal_fixed():
    fusion = _identity_weighted_sum(learn_weights=False)
    assert fusion.modality_weights() == {"image": 0.5, "text": 0.5}
    assert not fusion.learned


def test_weighted_sum_learned_weights_sum_to_one():
    fusion = _identity_weighted_sum()
    assert fusion.learned
    w = fusion.modality_weights()
    assert list(w) == ["image", "text"] and w["image"] == pytest.approx(0.5)
    with torch.no_grad():
        fusion.logits.copy_(torch.tensor([0.0, math.log(3.0)]))
    w = fusion.modality_weights()
    assert sum(w.values()) == pytest.approx(1.0)
    assert w == pytest.approx({"image": 0.25, "text": 0.75})
    out = fusion(_pooled_inputs([[4.0, 0.0]], [[0.0, 4.0]]))
    torch.testing.assert_close(out.pooled, torch.tensor([[3.0, 1.0]]))


@pytest.mark.parametrize("weights", [[1.0], {"text": 1.0}, {"text": 1.0, "audio": 1.0}, [1.0, float("nan")]])
def test_weighted_sum_rejects_bad_weights(weights):
    with pytest.raises(ValueError):
        build_fusion("weighted_sum", {"text": 2, "image": 2}, 2, weights=weights)


# ---------------------------------------------------------------- cross_attention


@pytest.mark.parametrize("bidirectional", [False, True])
def test_attention_shape_and_rows(bidirectional):
    inputs = make_inputs(batch=3)
    fusion = build("cross_attention", {"bidirectional": bidirectional, "num_heads": 2})
    assert fusion(inputs).attention is None  # not asked for: fused kernels, no weights
    with attention_weights(fusion):
        out = fusion(inputs)
    assert fusion(inputs).attention is None  # the setting comes back after the block
    nt, nv = N_TOKENS["text"], N_TOKENS["image"]
    assert out.attention.shape == (3, 2, nt, nv)
    assert out.tokens.shape == (3, nt, DIM)
    assert torch.equal(out.mask, inputs["text"].mask)
    vmask = inputs["image"].mask[:, None, None, :].expand_as(out.attention)
    assert (out.attention[~vmask] == 0).all()
    assert (out.attention >= 0).all()
    torch.testing.assert_close(out.attention.sum(-1), torch.ones(3, 2, nt))
    # padded query positions come back as zeros
    assert (out.tokens[~out.mask] == 0).all()


def test_attention_of_padded_inputs_matches_and_ignores_padding():
    fusion = build("cross_attention", {})
    inputs = make_inputs()
    with attention_weights(fusion):
        a, b = fusion(inputs), fusion(pad_with_garbage(inputs, extra=4))
    nt, nv = a.attention.shape[-2:]
    assert b.attention.shape[-2:] == (nt + 4, nv + 4)
    torch.testing.assert_close(b.attention[..., :nt, :nv], a.attention, rtol=1e-5, atol=1e-6)
    assert (b.attention[..., nv:] == 0).all()


def test_fully_padded_rows():
    inputs = make_inputs()
    t, v = inputs["text"], inputs["image"]
    tmask, vmask = t.mask.clone(), v.mask.clone()
    tmask[1] = False  # a question without tokens
    vmask[2] = False  # an image without patches
    inputs = {"text": EncoderOutput(t.tokens, tmask, t.pooled), "image": EncoderOutput(v.tokens, vmask, v.pooled)}
    for bidirectional in (False, True):
        fusion = build("cross_attention", {"bidirectional": bidirectional})
        with attention_weights(fusion):
            out = fusion(inputs)
        fused = fusion(inputs)  # the fused-kernel path: same outputs, no NaN either
        torch.testing.assert_close(fused.pooled, out.pooled, rtol=1e-5, atol=1e-6)
        assert torch.isfinite(out.pooled).all() and torch.isfinite(out.tokens).all()
        assert (out.attention[2] == 0).all()
        if not bidirectional:
            assert (out.pooled[1] == 0).all()


def test_bidirectional_updates_both_streams_and_differs():
    inputs = make_inputs()
    uni, bi = build("cross_attention", {}), build("cross_attention", {"bidirectional": True})
    assert sum(p.numel() for p in bi.parameters()) > sum(p.numel() for p in uni.parameters())
    # changing a valid vision token changes the output in both variants
    v = inputs["image"]
    tokens = v.tokens.clone()
    tokens[:, 0] += 1.0
    changed = dict(inputs, image=EncoderOutput(tokens, v.mask, v.pooled))
    for fusion in (uni, bi):
        assert not torch.allclose(fusion(inputs).pooled, fusion(changed).pooled)


def test_context_inference_and_errors():
    three = {"text": 8, "image": 12, "video": 6}
    with pytest.raises(ValueError, match="context"):
        build_fusion("cross_attention", three, DIM)
    with pytest.warns(UserWarning, match="video"):
        fusion = build_fusion("cross_attention", three, DIM, context="image")
    assert (fusion.query, fusion.context) == ("text", "image")
    fusion = build_fusion("cross_attention", {"text": 8, "video": 12}, DIM)
    assert fusion.context == "video"
    with pytest.raises(ValueError, match="query"):
        build_fusion("cross_attention", {"question": 8, "image": 12}, DIM)
    with pytest.raises(ValueError, match="num_heads"):
        build_fusion("cross_attention", IN_DIMS, 10, num_heads=4)
    # vision as the query side
    fusion = build_fusion("cross_attention", IN_DIMS, DIM, query="image").eval()
    with attention_weights(fusion):
        out = fusion(make_inputs())
    assert out.attention.shape[-2:] == (N_TOKENS["image"], N_TOKENS["text"])
