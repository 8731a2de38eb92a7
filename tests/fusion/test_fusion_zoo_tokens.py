"""Token-level fusions of the zoo: ``relation`` (Santoro et al. 2017) and ``bottleneck`` (MBT, Nagrani et al.
2021): exact values on hand-checked inputs, the bottleneck's information flow, errors. The contract
(shapes, gradients, padding, bf16, the ``index`` fast path) is in ``test_fusion.py``."""

from __future__ import annotations

import math

import pytest
import torch

from mmfuse.encoders.base import EncoderOutput
from mmfuse.fusion import build_fusion


def enc(tokens: list, mask: list, pooled: list | None = None) -> EncoderOutput:
    t = torch.tensor(tokens, dtype=torch.float32)
    p = torch.tensor(pooled, dtype=torch.float32) if pooled is not None else t.mean(1)
    return EncoderOutput(t, torch.tensor(mask), p)


# ---------------------------------------------------------------- relation

# Hand-set weights: g has 2 layers of width 2, f maps 2 -> 2 -> 1. The first layer of g acts on the
# concatenation [o_i (2) ; o_j (2) ; q (1)]: columns 0-1 are W_a, 2-3 W_b, 4 W_q.
G1_W = [[1.0, -1.0, 0.5, 0.0, 1.0], [0.0, 2.0, -1.0, 1.0, -0.5]]
G1_B = [0.1, -0.2]
G2_W, G2_B = [[1.0, -0.5], [0.5, 1.0]], [0.0, -0.3]
F1_W, F1_B = [[1.0, 0.0], [-1.0, 1.0]], [0.0, 0.2]
F2_W, F2_B = [[1.0, 2.0]], [-0.1]
# two questions; image row 0 has tokens o0, o1 and a padded garbage token, row 1 three valid tokens
IMAGE = [[[1.0, 2.0], [-1.0, 0.5], [1e6, -1e6]], [[0.5, -1.0], [2.0, 0.0], [-0.5, 1.5]]]
IMAGE_MASK = [[True, True, False], [True, True, True]]
Q = [[0.5], [-2.0]]


def linear(w: list, b: list, x: list) -> list:
    return [sum(wi * xi for wi, xi in zip(row, x)) + bi for row, bi in zip(w, b)]


def relu(x: list) -> list:
    return [max(v, 0.0) for v in x]


def relation_by_loops(reduction: str) -> list[float]:
    """RN(O, q) = f(sum_{i,j} g([o_i; o_j; q])) (or mean, or per-channel max), written out pair by pair
    over the valid tokens."""
    out = []
    for tokens, mask, q in zip(IMAGE, IMAGE_MASK, Q):
        objects = [o for o, valid in zip(tokens, mask) if valid]
        total, pairs = [0.0, 0.0] if reduction != "max" else [-math.inf, -math.inf], 0
        for oi in objects:
            for oj in objects:
                h = relu(linear(G2_W, G2_B, relu(linear(G1_W, G1_B, oi + oj + q))))
                total = [max(t, v) if reduction == "max" else t + v for t, v in zip(total, h)]
                pairs += 1
        if reduction == "mean":
            total = [t / pairs for t in total]
        out.append(linear(F2_W, F2_B, relu(linear(F1_W, F1_B, total)))[0])
    return out


def hand_set_relation(reduction: str, pair_chunk: int | None = None):
    fusion = build_fusion("relation", {"text": 1, "image": 2}, 1, g_layers=2, g_dim=2, reduction=reduction,
                          pair_chunk=pair_chunk).eval()
    w = torch.tensor(G1_W)
    with torch.no_grad():
        fusion.g_a.weight.copy_(w[:, 0:2])
        fusion.g_a.bias.copy_(torch.tensor(G1_B))
        fusion.g_b.weight.copy_(w[:, 2:4])
        fusion.g_q.weight.copy_(w[:, 4:5])
        for lin, (lw, lb) in zip((fusion.g_rest[0], fusion.f[0], fusion.f[3]),
                                 ((G2_W, G2_B), (F1_W, F1_B), (F2_W, F2_B))):
            lin.weight.copy_(torch.tensor(lw))
            lin.bias.copy_(torch.tensor(lb))
    return fusion


@pytest.mark.parametrize("reduction,pair_chunk", [("sum", None), ("sum", 0), ("sum", 1), ("mean", None),
                                                   ("mean", 0), ("max", None)])
def test_relation_equals_an_explicit_double_loop_over_valid_pairs(reduction, pair_chunk):
    """Both paths: the chunked pair sum (pair_chunk None / 1) and the whole grid under autograd (0)."""
    fusion = hand_set_relation(reduction, pair_chunk)
    inputs = {"image": enc(IMAGE, IMAGE_MASK), "text": enc([[[9.0]], [[9.0]]], [[True], [True]], Q)}
    out = fusion(inputs)
    assert out.tokens is None and out.mask is None and out.attention is None
    expected = torch.tensor(relation_by_loops(reduction))
    torch.testing.assert_close(out.pooled[:, 0], expected, rtol=1e-6, atol=1e-5)
    # the padded token is excluded: dropping it from row 0 gives the same row
    short = {"image": enc([IMAGE[0][:2]], [IMAGE_MASK[0][:2]]), "text": enc([[[0.0]]], [[True]], Q[:1])}
    torch.testing.assert_close(fusion(short).pooled[0], out.pooled[0], rtol=1e-6, atol=1e-6)


def test_relation_hand_check_is_not_trivial():
    """The loop reference separates sum from mean and sees the question (else the test above could pass
    on a fusion ignoring either)."""
    s, m, x = relation_by_loops("sum"), relation_by_loops("mean"), relation_by_loops("max")
    assert all(min(abs(a - b), abs(a - c), abs(b - c)) > 0.1 for a, b, c in zip(s, m, x))
    fusion = hand_set_relation("sum")
    image = enc(IMAGE, IMAGE_MASK)
    a = fusion({"image": image, "text": enc([[[0.0]], [[0.0]]], [[True], [True]], Q)}).pooled
    b = fusion({"image": image, "text": enc([[[0.0]], [[0.0]]], [[True], [True]], [[1.5], [0.0]])}).pooled
    assert (a - b).abs().min() > 1e-3


def test_relation_index_must_have_one_row_per_question():
    fusion = build_fusion("relation", {"text": 3, "image": 4}, 8, g_dim=8)
    inputs = {"image": enc(torch.randn(2, 3, 4).tolist(), [[True] * 3] * 2),
              "text": enc(torch.randn(5, 2, 3).tolist(), [[True] * 2] * 5)}
    assert fusion(inputs, index={"image": torch.tensor([0, 1, 1, 0, 1])}).pooled.shape == (5, 8)
    with pytest.raises(ValueError, match=r"index\['image'\].*\[5\]"):
        fusion(inputs, index={"image": torch.tensor([0, 1])})


@pytest.mark.parametrize("hparams,match", [
    ({"reduction": "min"}, r"reduction must be one of \['sum', 'mean', 'max'\]"),
    ({"g_layers": 0}, "g_layers"),
    ({"g_dim": 0}, "g_dim"),
    ({"context": "video"}, "context.*video"),
    ({"question": "image"}, "differ"),
    ({"pair_chunk": -1}, "pair_chunk must be null or an integer >= 0"),
    ({"pair_chunk": True}, "pair_chunk must be null or an integer >= 0"),
    ({"pair_chunk": 4, "reduction": "max"}, "pair_chunk > 0 needs reduction 'sum' or 'mean'"),
])
def test_relation_rejects_bad_hparams(hparams, match):
    with pytest.raises(ValueError, match=match):
        build_fusion("relation", {"text": 3, "image": 4}, 8, **hparams)


# ---------------------------------------------------------------- bottleneck

DIMS = {"text": 6, "image": 10}


def random_inputs(seed: int = 0, batch: int = 3) -> dict[str, EncoderOutput]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for m, n in (("text", 5), ("image", 7)):
        mask = torch.arange(n)[None] < torch.tensor([n, 2, 4][:batch])[:, None]
        out[m] = EncoderOutput(torch.randn(batch, n, DIMS[m], generator=g), mask, torch.zeros(batch, DIMS[m]))
    return out


def bottleneck(**hparams):
    torch.manual_seed(0)
    return build_fusion("bottleneck", DIMS, 16, **hparams).eval()


def test_bottleneck_latents_are_the_mean_of_per_modality_updates():
    fusion = bottleneck(num_layers=1, num_latents=3)
    inputs = random_inputs()
    with torch.no_grad():
        tokens, z = fusion.streams(inputs)
        updates = {}
        for m, block in fusion.layers[0].items():
            x = inputs[m]
            proj = fusion.proj[m](x.tokens)
            new_t, updates[m] = block(proj, x.mask, fusion.latents.expand(3, -1, -1))
            torch.testing.assert_close(tokens[m], new_t * x.mask[..., None])
        out = fusion(inputs)
    torch.testing.assert_close(z, (updates["text"] + updates["image"]) / 2)
    assert out.tokens.shape == (3, 3, 16) and out.mask.all()
    # the forward skips the last layer's token updates: same latents
    torch.testing.assert_close(out.tokens, fusion.out_norm(z))
    torch.testing.assert_close(out.pooled, fusion.out_norm(z).mean(1))


def with_new_image_tokens(inputs: dict[str, EncoderOutput]) -> dict[str, EncoderOutput]:
    v = inputs["image"]
    return dict(inputs, image=EncoderOutput(v.tokens + 1.0, v.mask, v.pooled))


def test_bottleneck_modalities_meet_only_through_the_latents():
    inputs = random_inputs()
    changed = with_new_image_tokens(inputs)
    one = bottleneck(num_layers=1)
    with torch.no_grad():
        (t_a, _), (t_b, _) = one.streams(inputs), one.streams(changed)
        # one layer: text tokens saw only the initial latents, not the image...
        torch.testing.assert_close(t_a["text"], t_b["text"], rtol=0, atol=0)
        assert not torch.allclose(t_a["image"], t_b["image"])
        # ...but the fused output does
        assert (one(inputs).pooled - one(changed).pooled).abs().amax(-1).min() > 1e-4
        # two layers: the image reaches the text tokens through the latents of layer 1
        two = bottleneck(num_layers=2)
        assert (two.streams(inputs)[0]["text"] - two.streams(changed)[0]["text"]).abs().amax() > 1e-4


def test_bottleneck_padding_never_changes_token_states_or_latents():
    fusion = bottleneck(num_layers=2)
    inputs = random_inputs()
    g = torch.Generator().manual_seed(1)
    padded = {m: EncoderOutput(torch.cat([x.tokens, 1e6 * torch.randn(3, 2, x.tokens.shape[-1], generator=g)], 1),
                               torch.cat([x.mask, torch.zeros(3, 2, dtype=torch.bool)], 1), x.pooled)
              for m, x in inputs.items()}
    with torch.no_grad():
        (ta, za), (tb, zb) = fusion.streams(inputs), fusion.streams(padded)
    torch.testing.assert_close(zb, za, rtol=1e-5, atol=1e-5)
    for m in ta:
        n = ta[m].shape[1]
        torch.testing.assert_close(tb[m][:, :n], ta[m], rtol=1e-5, atol=1e-5)
        assert (tb[m][:, n:] == 0).all()


@pytest.mark.parametrize("hparams,match", [
    ({"num_latents": 0}, "num_latents.*>= 1.*0"),
    ({"num_latents": -2}, "num_latents"),
    ({"num_latents": 2.5}, "num_latents.*2.5"),
    ({"num_latents": True}, "num_latents"),
    ({"num_layers": 0}, "num_layers"),
    ({"num_heads": 3}, "num_heads=3"),
])
def test_bottleneck_rejects_bad_hparams(hparams, match):
    with pytest.raises(ValueError, match=match):
        build_fusion("bottleneck", DIMS, 16, **hparams)
