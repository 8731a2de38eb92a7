"""Video encoder and temporal poolings: every registered pooling for shapes, gradients and padding;
order sensitivity; exact values on tiny inputs; every fusion on video features."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmfuse.encoders import EncoderOutput, VideoEncoder, VisionEncoder
from mmfuse.encoders.temporal import (
    TEMPORAL_POOLINGS,
    TemporalOutput,
    build_temporal_pooling,
    list_temporal_poolings,
    register_temporal_pooling,
    temporal_pooling_hparams,
)
from mmfuse.fusion import build_fusion, list_fusions

VIT = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}
D, T = 16, 5
POOLINGS = list_temporal_poolings()


def frames_and_mask(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(3, T, D, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    return frames, mask


def test_registry_lists_the_built_ins_and_names_unknown_options() -> None:
    assert {"mean", "attention", "temporal_transformer"} <= set(POOLINGS)
    assert temporal_pooling_hparams("temporal_transformer")["num_layers"] == 1
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['layers'\].*num_layers"):
        build_temporal_pooling("temporal_transformer", D, T, layers=2)
    with pytest.raises(KeyError, match="registered temporal poolings: attention, mean, temporal_transformer"):
        build_temporal_pooling("lstm", D, T)


@pytest.mark.parametrize("name", POOLINGS)
def test_pooling_shapes_gradients_and_padding(name: str) -> None:
    torch.manual_seed(0)
    pool = build_temporal_pooling(name, D, T)
    frames, mask = frames_and_mask()
    frames.requires_grad_(True)
    out = pool(frames, mask)
    assert isinstance(out, TemporalOutput)
    assert out.tokens.shape == (3, T, D) and out.pooled.shape == (3, D)
    assert (out.tokens[~mask] == 0).all(), "masked frames must give zero tokens"
    (out.pooled.square().sum() + out.tokens.square().sum()).backward()
    assert frames.grad[mask].abs().sum() > 0
    assert (frames.grad[~mask] == 0).all(), "no gradient may reach a padded frame"
    for pname, p in pool.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: no gradient for {pname}"
    # garbage (even NaN / inf) in padded frames changes nothing
    dirty = frames.detach().clone()
    dirty[~mask] = float("nan")
    dirty[2, 1] = float("inf")
    again = pool(dirty, mask)
    torch.testing.assert_close(again.pooled, out.pooled.detach())
    torch.testing.assert_close(again.tokens, out.tokens.detach())
    # a row padded to T frames equals the same row given alone without padding
    alone = pool(frames.detach()[1:2, :3], mask[1:2, :3])
    torch.testing.assert_close(alone.pooled, out.pooled.detach()[1:2], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", POOLINGS)
def test_pooling_without_any_real_frame_is_finite(name: str) -> None:
    pool = build_temporal_pooling(name, D, T)
    out = pool(torch.randn(2, T, D), torch.zeros(2, T, dtype=torch.bool))
    assert torch.isfinite(out.pooled).all() and torch.isfinite(out.tokens).all()


def test_mean_pooling_exact_values() -> None:
    pool = build_temporal_pooling("mean", 2, 3)
    frames = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    out = pool(frames, torch.tensor([[True, True, False]]))
    assert out.pooled.tolist() == [[2.0, 3.0]]
    assert out.tokens.tolist() == [[[1.0, 2.0], [3.0, 4.0], [0.0, 0.0]]]


def test_attention_pooling_with_one_frame_returns_its_projection() -> None:
    """Softmax over one key is 1: the output is LN(out(v(LN(x)))), whatever the query."""
    torch.manual_seed(0)
    pool = build_temporal_pooling("attention", D, T, num_heads=2).eval()
    x = torch.randn(1, 1, D)
    want = pool.norm_out(pool.attn.out(pool.attn.v(pool.norm_in(x)))[:, 0])
    torch.testing.assert_close(pool(x, torch.ones(1, 1, dtype=torch.bool)).pooled, want)


@pytest.mark.parametrize("name,hparams,sees_order", [
    ("mean", {}, False),
    ("attention", {}, False),
    ("attention", {"time_embeddings": True}, True),
    ("temporal_transformer", {}, True),
])
def test_order_sensitivity(name: str, hparams: dict, sees_order: bool) -> None:
    torch.manual_seed(0)
    pool = build_temporal_pooling(name, D, T, **hparams).eval()
    frames = torch.randn(2, T, D)
    mask = torch.ones(2, T, dtype=torch.bool)
    fwd, rev = pool(frames, mask).pooled, pool(frames.flip(1), mask).pooled
    if sees_order:
        assert (fwd - rev).abs().max() > 1e-3, f"{name} {hparams} should change when the frames are reversed"
    else:
        torch.testing.assert_close(fwd, rev, atol=1e-6, rtol=1e-5)


def test_too_many_frames_is_a_clear_error() -> None:
    pool = build_temporal_pooling("temporal_transformer", D, 4)
    with pytest.raises(ValueError, match="5 frames but was built for at most num_frames=4"):
        pool(torch.randn(1, 5, D), torch.ones(1, 5, dtype=torch.bool))


@pytest.mark.parametrize("output", ["frames", "patches"])
@pytest.mark.parametrize("name", POOLINGS)
def test_video_encoder_shapes_shared_weights_and_padded_frames(name: str, output: str) -> None:
    torch.manual_seed(0)
    vit = VisionEncoder(**VIT)
    enc = VideoEncoder(vit, num_frames=4, pooling=name, output=output).eval()
    video = torch.randn(2, 4, 3, 32, 32)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    out = enc(video, mask)
    assert isinstance(out, EncoderOutput) and enc.out_dim == 32
    n = 4 if output == "frames" else 4 * 16
    assert out.tokens.shape == (2, n, 32) and out.mask.shape == (2, n) and out.pooled.shape == (2, 32)
    assert out.mask[0].all() and out.mask[1].sum() == n // 2
    # shared weights: with mean pooling over frames, a frame token is exactly the ViT's pooled vector of it
    if output == "frames" and name == "mean":
        torch.testing.assert_close(out.tokens[0, 2], vit(video[0, 2:3]).pooled[0], atol=1e-5, rtol=1e-5)
    dirty = video.clone()
    dirty[1, 2:] = float("nan")  # padded frames are never encoded
    again = enc(dirty, mask)
    torch.testing.assert_close(again.pooled, out.pooled)
    torch.testing.assert_close(again.tokens, out.tokens)


def test_video_encoder_trains_the_vit_and_the_pooling() -> None:
    enc = VideoEncoder(VisionEncoder(**VIT), num_frames=3, pooling="temporal_transformer", output="patches")
    out = enc(torch.randn(2, 3, 3, 32, 32))
    (out.pooled.sum() + out.tokens.sum()).backward()
    for part in (enc.frame_encoder, enc.temporal):
        assert all(p.grad is not None for p in part.parameters() if p.requires_grad)
    assert enc.time.grad is not None and enc.time.grad.abs().sum() > 0


def test_video_encoder_rejects_bad_input() -> None:
    enc = VideoEncoder(VisionEncoder(**VIT), num_frames=2)
    with pytest.raises(ValueError, match=r"expects clips \[B, T, 3, H, W\]"):
        enc(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match="3 frames but the encoder was built for num_frames=2"):
        enc(torch.randn(1, 3, 3, 32, 32))
    with pytest.raises(ValueError, match="unknown video output 'tubes'"):
        VideoEncoder(VisionEncoder(**VIT), num_frames=2, output="tubes")


@pytest.mark.parametrize("fusion", list_fusions())
def test_every_fusion_works_unchanged_on_video_features(fusion: str) -> None:
    torch.manual_seed(0)
    enc = VideoEncoder(VisionEncoder(**VIT), num_frames=3, pooling="temporal_transformer").eval()
    video = enc(torch.randn(2, 3, 3, 32, 32))
    text = EncoderOutput(torch.randn(2, 4, 24), torch.ones(2, 4, dtype=torch.bool), torch.randn(2, 24))
    fuse = build_fusion(fusion, {"text": 24, "image": enc.out_dim}, 16).eval()
    out = fuse({"text": text, "image": video})
    assert out.pooled.shape == (2, 16) and torch.isfinite(out.pooled).all()


def test_a_user_pooling_registers_and_builds() -> None:
    try:
        @register_temporal_pooling("test_last_frame")
        class LastFrame(nn.Module):
            def __init__(self, dim: int, num_frames: int) -> None:
                super().__init__()

            def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> TemporalOutput:
                last = mask.long().cumsum(1).argmax(1)  # index of the last real frame
                return TemporalOutput(frames * mask[..., None], frames[torch.arange(len(frames)), last])

        enc = VideoEncoder(VisionEncoder(**VIT), num_frames=2, pooling="test_last_frame")
        assert enc(torch.randn(1, 2, 3, 32, 32)).pooled.shape == (1, 32)
    finally:
        TEMPORAL_POOLINGS._items.pop("test_last_frame", None)  # keep the registry clean for other tests
