from pathlib import Path

import pytest
import timm
import torch
from transformers import BertConfig, BertModel

from mmfuse.data.tokenizer import build_tokenizer, train_wordpiece
from mmfuse.encoders import EncoderOutput, TextEncoder, VisionEncoder

BERT = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
VIT = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}


def test_text_encoder_shapes_and_padding_invariance() -> None:
    enc = TextEncoder(config=BERT, vocab_size=50).eval()
    ids = torch.tensor([[2, 7, 9, 3], [2, 8, 3, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    out = enc(ids, mask)
    assert isinstance(out, EncoderOutput) and enc.out_dim == 32
    assert out.tokens.shape == (2, 4, 32) and out.pooled.shape == (2, 32)
    assert out.mask.dtype == torch.bool and out.mask.tolist() == [[True] * 4, [True] * 3 + [False]]
    # the padded row alone, without padding, gives the same pooled vector
    alone = enc(ids[1:, :3], mask[1:, :3])
    torch.testing.assert_close(alone.pooled, out.pooled[1:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pool", ["mean", "max", "cls"])
def test_text_pool_reads_the_token_states_of_the_real_tokens(pool: str) -> None:
    torch.manual_seed(0)
    enc = TextEncoder(config=BERT, vocab_size=50, pool=pool).eval()
    ids = torch.tensor([[2, 7, 9, 3], [2, 8, 3, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    out = enc(ids, mask)
    for row, n in ((0, 4), (1, 3)):  # the padded state of row 1 never enters its pooled vector
        real = out.tokens[row, :n]
        expected = {"mean": real.mean(0), "max": real.amax(0), "cls": real[0]}[pool]
        torch.testing.assert_close(out.pooled[row], expected)
    if pool != "mean":  # a different vector from the mean of the same states
        assert (out.pooled[0] - out.tokens[0].mean(0)).abs().max() > 1e-3


def test_text_pool_unknown_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown text pool 'sum'; valid: mean, max, cls"):
        TextEncoder(config=BERT, vocab_size=50, pool="sum")


@pytest.mark.parametrize("std", [None, 1.0, 0.3])
def test_text_embed_init_std_redraws_the_word_table_only(std: float | None) -> None:
    torch.manual_seed(0)
    enc = TextEncoder(config={**BERT, "vocab_size": 4000}, vocab_size=4000, embed_init_std=std)
    table = enc.bert.embeddings.word_embeddings.weight.detach()  # [4000, 32]
    assert table[0].abs().max() == 0  # the padding row (pad_token_id 0) stays zero
    expected = 0.02 if std is None else std  # None: BERT's initializer_range
    assert abs(table[1:].std().item() - expected) < 0.03 * expected
    assert abs(table[1:].mean().item()) < 0.05 * expected
    positions = enc.bert.embeddings.position_embeddings.weight.detach()
    assert abs(positions.std().item() - 0.02) < 0.002  # the other tables keep BERT's init


def test_text_encoder_from_local_directory(tmp_path: Path) -> None:
    ref = BertModel(BertConfig(vocab_size=60, **BERT), add_pooling_layer=False).eval()
    ref.save_pretrained(tmp_path / "bert")
    tok = train_wordpiece(["what color is the shape", "is there a circle"], vocab_size=60)
    tok.save_pretrained(str(tmp_path / "bert"))
    enc = TextEncoder(pretrained=str(tmp_path / "bert")).eval()
    assert enc.is_pretrained
    for (n, p), (_, q) in zip(enc.bert.state_dict().items(), ref.state_dict().items()):
        assert torch.equal(p, q), n
    loaded = build_tokenizer(str(tmp_path / "bert"))  # the pretrained model's own tokenizer
    assert loaded("what color")["input_ids"] == tok("what color")["input_ids"]


def test_freeze_stops_gradients() -> None:
    enc = TextEncoder(config=BERT, vocab_size=50, freeze=True)
    assert not any(p.requires_grad for p in enc.parameters())
    venc = VisionEncoder(**VIT, freeze=True)
    assert not any(p.requires_grad for p in venc.parameters())


def test_vision_encoder_patch_tokens_and_data_config() -> None:
    enc = VisionEncoder("vit_tiny_patch16_224", **VIT).eval()
    out = enc(torch.randn(2, 3, 32, 32))
    assert out.tokens.shape == (2, 16, 32)  # (32/8)^2 patches, class token removed
    assert out.pooled.shape == (2, 32) and out.mask.all()
    assert enc.grid_size == (4, 4)
    dc = enc.data_config
    assert dc["img_size"] == (32, 32) and len(dc["mean"]) == 3 and len(dc["std"]) == 3


def test_vision_encoder_from_local_checkpoint(tmp_path: Path) -> None:
    ref = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, **VIT)
    torch.save(ref.state_dict(), tmp_path / "vit.pth")
    enc = VisionEncoder("vit_tiny_patch16_224", checkpoint_path=str(tmp_path / "vit.pth"), **VIT)
    assert enc.is_pretrained
    for (n, p), (_, q) in zip(enc.vit.state_dict().items(), ref.state_dict().items()):
        assert torch.equal(p, q), n


def test_unknown_timm_model_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="Unknown model"):
        VisionEncoder("vit_does_not_exist", **VIT)


@pytest.mark.parametrize("patch", [4, 8])
@pytest.mark.parametrize("stem", ["conv", "deep_conv"])
def test_conv_stem_keeps_the_token_grid(patch: int, stem: str) -> None:
    conv = VisionEncoder(**{**VIT, "patch_size": patch}, stem=stem).eval()
    plain = VisionEncoder(**{**VIT, "patch_size": patch}).eval()
    x = torch.randn(2, 3, 32, 32)
    assert conv(x).tokens.shape == plain(x).tokens.shape == (2, (32 // patch) ** 2, 32)
    assert conv.grid_size == plain.grid_size
    out = conv(x)
    out.pooled.sum().backward()
    assert all(p.grad is not None for p in conv.vit.patch_embed.parameters())


def test_conv_stem_rejects_bad_patch_and_unknown_stem() -> None:
    with pytest.raises(ValueError, match="power-of-2"):
        VisionEncoder(**{**VIT, "patch_size": 6, "img_size": 36}, stem="conv")
    with pytest.raises(ValueError, match="unknown ViT stem 'cnn'; valid: patch, conv, deep_conv"):
        VisionEncoder(**VIT, stem="cnn")


def test_sincos_pos_embed_is_fixed_2d_code_of_the_grid(tmp_path: Path) -> None:
    torch.manual_seed(0)
    enc = VisionEncoder(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, stem="conv",
                        pos_embed="sincos")
    pe = enc.vit.pos_embed  # [1, 1 + 16, 32]: class token first
    assert pe.shape == (1, 17, 32) and not pe.requires_grad
    assert "vit.pos_embed" not in dict(enc.named_parameters()) and "vit.pos_embed" in enc.state_dict()
    assert torch.equal(pe[0, 0], torch.zeros(32))  # the class token gets no position
    # Hand-built 2-D code (timm's layout): [sin(row·ω), sin(col·ω), cos(row·ω), cos(col·ω)], D/4 channels
    # each, ω_k = 10000^(-k/(D/4)); positions are the 4x4 patch grid, row-major.
    d = 32 // 4
    omega = 1.0 / 10000 ** (torch.arange(d, dtype=torch.float32) / d)  # [8]
    rows, cols = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    r, c = rows.flatten()[:, None] * omega, cols.flatten()[:, None] * omega  # [16, 8] each
    codes = pe[0, 1:]
    assert torch.allclose(codes, torch.cat([r.sin(), c.sin(), r.cos(), c.cos()], 1), atol=1e-6)
    assert len({tuple(r.tolist()) for r in codes}) == 16  # every patch has its own code
    # It stays fixed through an optimiser step and survives a state-dict round trip.
    opt = torch.optim.AdamW([p for p in enc.parameters() if p.requires_grad], lr=0.1)
    enc(torch.randn(2, 3, 32, 32)).tokens.sum().backward()
    opt.step()
    assert torch.equal(enc.vit.pos_embed, pe)
    other = VisionEncoder(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, stem="conv",
                          pos_embed="sincos")
    other.load_state_dict(enc.state_dict())
    assert torch.equal(other.vit.pos_embed, pe)
    with pytest.raises(ValueError, match="pos_embed 'rope'.*learned, sincos"):
        VisionEncoder(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, pos_embed="rope")


def test_text_encoder_encodes_repeated_questions_once_with_the_same_states_and_gradients(
        monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    enc = TextEncoder(config={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                              "intermediate_size": 64, "hidden_dropout_prob": 0.0,
                              "attention_probs_dropout_prob": 0.0, "max_position_embeddings": 16}, vocab_size=50,
                      dedupe=True)
    ids = torch.randint(1, 50, (4, 8))
    ids[:, 5:] = 0
    ids = torch.cat([ids, ids[[2, 0, 2]]])  # 7 rows, 4 distinct
    mask = (ids != 0).long()
    seen: list[int] = []
    bert_forward = enc.bert.forward
    monkeypatch.setattr(enc.bert, "forward", lambda **kw: seen.append(kw["input_ids"].shape[0]) or bert_forward(**kw))
    weights = torch.randn(7, 8, 32)
    out = enc(ids, mask)
    (out.tokens * weights).sum().backward()
    grads = {n: p.grad.clone() for n, p in enc.named_parameters() if p.grad is not None}
    enc.zero_grad()
    ref = bert_forward(input_ids=ids, attention_mask=mask).last_hidden_state  # every row encoded
    (ref * weights).sum().backward()
    assert seen == [4]  # one BERT call over the 4 distinct rows
    assert torch.allclose(out.tokens, ref, atol=1e-6)
    assert grads.keys() == {n for n, p in enc.named_parameters() if p.grad is not None}
    for n, p in enc.named_parameters():
        if p.grad is not None:
            assert torch.allclose(grads[n], p.grad, atol=1e-5), n
    # with dropout active in training, repeats must not share a dropout mask: every row is encoded
    enc.bert.config.hidden_dropout_prob = 0.1
    seen.clear()
    enc.train()(ids, mask)
    assert seen == [7]
    enc.bert.config.hidden_dropout_prob = 0.0
    enc.dedupe = False  # the default: every row encoded
    seen.clear()
    enc(ids, mask)
    assert seen == [7]


@pytest.mark.parametrize("pool", ["cls", "mean", "flatten"])
def test_vision_pool_choices(pool: str) -> None:
    torch.manual_seed(0)
    enc = VisionEncoder(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, pool=pool)
    images = torch.randn(3, 3, 32, 32)
    out = enc(images)
    assert out.tokens.shape == (3, 16, 32) and out.pooled.shape == (3, 32)
    x = enc.vit.forward_features(images)  # [3, 1 + 16, 32]
    if pool == "cls":
        assert torch.allclose(out.pooled, x[:, 0])
    elif pool == "mean":
        assert torch.allclose(out.pooled, x[:, 1:].mean(1))
    else:
        assert enc.flatten is not None
        # each grid position has its own weights: the pooled vector is sum_n W_n · token_n + b
        w = enc.flatten.weight.view(32, 16, 32)  # [D_out, N, D]
        expected = torch.einsum("bnd,ond->bo", x[:, 1:], w) + enc.flatten.bias
        assert torch.allclose(out.pooled, expected, atol=1e-5)
        # moving the content of one patch to another changes the pooled vector (mean pooling would not)
        tokens = out.tokens.detach().clone()
        swapped = tokens[:, [1, 0, *range(2, 16)]]
        assert not torch.allclose(enc.flatten(tokens.flatten(1)), enc.flatten(swapped.flatten(1)))
        frozen = VisionEncoder(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, pool=pool, freeze=True)
        trainable = {n for n, p in frozen.named_parameters() if p.requires_grad}
        assert trainable == {"flatten.weight", "flatten.bias"}  # the new layer learns on frozen features


def test_vision_pool_unknown_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="pool 'max'.*cls, mean, flatten"):
        VisionEncoder(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, pool="max")


@pytest.mark.parametrize("pool", ["cls", "flatten"])
def test_vision_coords_append_the_cell_centres(pool: str) -> None:
    torch.manual_seed(0)
    enc = VisionEncoder(**VIT, pool=pool, coords=True)  # 32 px, patch 8: a 4x4 grid
    plain = VisionEncoder(**VIT, pool=pool)
    plain.load_state_dict(enc.state_dict())  # the coordinates are not a parameter or a saved buffer
    images = torch.randn(2, 3, 32, 32)
    out, ref = enc(images), plain(images)
    assert enc.out_dim == 34 and out.tokens.shape == (2, 16, 34) and out.pooled.shape == (2, 34)
    torch.testing.assert_close(out.tokens[..., :32], ref.tokens)
    torch.testing.assert_close(out.pooled[:, :32], ref.pooled)
    assert out.pooled[:, 32:].abs().sum() == 0  # the pooled vector sits at the centre
    xy = out.tokens[0, :, 32:]  # token n = row n // 4, column n % 4
    assert xy[0].tolist() == [-0.75, -0.75] and xy[3].tolist() == [0.75, -0.75] and xy[12].tolist() == [-0.75, 0.75]
    assert torch.equal(out.tokens[1, :, 32:], xy)
