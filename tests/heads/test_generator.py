"""AnswerGenerator: shapes, masking, causality, loss, score/generate consistency, overfitting."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from mmfuse.data.answer_tokens import AnswerTokenizer
from mmfuse.fusion.base import FusionOutput
from mmfuse.heads.generator import AnswerGenerator

D, V, L = 16, 9, 5  # dim, vocab (4 specials + 5 words), max_length
PAD, BOS, EOS = 0, 1, 2


def make_fused(batch: int = 3, with_tokens: bool = True, seed: int = 0, dim: int = D, n: int = 4) -> FusionOutput:
    g = torch.Generator().manual_seed(seed)
    pooled = torch.randn(batch, dim, generator=g)
    if not with_tokens:
        return FusionOutput(pooled)
    lengths = torch.arange(batch) % n + 1  # varied lengths, row 0 has a single real token
    mask = torch.arange(n)[None] < lengths[:, None]
    return FusionOutput(pooled, torch.randn(batch, n, dim, generator=g), mask)


def make_model(seed: int = 0, **kw) -> AnswerGenerator:
    torch.manual_seed(seed)
    kw = {"num_layers": 2, "num_heads": 2, "dropout": 0.0, "max_length": L, **kw}
    return AnswerGenerator(D, V, **kw).eval()


TOKENS = torch.tensor([[4, 5, 2, 0], [6, 2, 0, 0], [7, 8, 3, 2]])


@pytest.mark.parametrize("with_tokens", [True, False])
def test_shapes(with_tokens: bool) -> None:
    model, fused = make_model(), make_fused(with_tokens=with_tokens)
    out = model(fused, TOKENS)
    assert out.logits.shape == (3, 4, V) and out.hidden.shape == (3, 4, D)
    s = model.score(fused, TOKENS)
    assert s.logprobs.shape == (3, 4) and s.hidden.shape == (3, 4, D) and s.mask.dtype == torch.bool
    for strategy in ("greedy", "sample", "beam"):
        gen = model.generate(fused, strategy)
        b, t = gen.tokens.shape
        assert b == 3 and 1 <= t <= L and gen.tokens.dtype == torch.long
        assert gen.logprobs.shape == gen.mask.shape == (3, t) and gen.hidden.shape == (3, t, D)


def test_padded_memory_is_ignored() -> None:
    model, fused = make_model(), make_fused()
    garbage = fused.tokens.masked_fill(~fused.mask.unsqueeze(-1), float("nan"))
    other = fused._replace(tokens=garbage)
    assert torch.equal(model(fused, TOKENS).logits, model(other, TOKENS).logits)
    assert torch.equal(model.generate(other, "beam").tokens, model.generate(fused, "beam").tokens)
    other = other._replace(tokens=other.tokens.requires_grad_())
    model.loss(other, TOKENS).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert torch.isfinite(other.tokens.grad).all()


def test_tokens_change_output() -> None:
    """The memory tokens are actually attended (not just the pooled vector)."""
    model, fused = make_model(), make_fused()
    moved = fused._replace(tokens=torch.randn_like(fused.tokens))  # (a shift or scale would be normed away)
    assert not torch.allclose(model(fused, TOKENS).logits[..., 2:], model(moved, TOKENS).logits[..., 2:])


def test_teacher_forcing_is_causal() -> None:
    model, fused = make_model(), make_fused()
    base = model(fused, TOKENS)
    for t in range(TOKENS.shape[1]):
        changed = TOKENS.clone()
        changed[:, t] = torch.where(changed[:, t] == 5, 6, 5)
        out = model(fused, changed)
        torch.testing.assert_close(out.logits[:, : t + 1], base.logits[:, : t + 1], rtol=0, atol=1e-6)
        torch.testing.assert_close(out.hidden[:, : t + 1], base.hidden[:, : t + 1], rtol=0, atol=1e-6)
        if t + 1 < TOKENS.shape[1]:
            assert not torch.allclose(out.logits[:, t + 1], base.logits[:, t + 1])


def test_pad_and_bos_are_never_actions() -> None:
    logp = F.log_softmax(make_model()(make_fused(), TOKENS).logits, -1)
    assert (logp[..., [PAD, BOS]].exp() == 0).all() and torch.isfinite(logp).all()


def test_loss_matches_cross_entropy_and_ignores_pad() -> None:
    model, fused = make_model(), make_fused()
    logits = model(fused, TOKENS).logits
    valid = TOKENS != PAD
    torch.testing.assert_close(model.loss(fused, TOKENS), F.cross_entropy(logits[valid], TOKENS[valid]))
    longer = torch.cat([TOKENS, torch.zeros(3, 1, dtype=torch.long)], 1)
    torch.testing.assert_close(model.loss(fused, longer), model.loss(fused, TOKENS))
    # smoothing is spread over the real actions only (PAD and BOS excluded)
    allowed = torch.tensor([i for i in range(V) if i not in (PAD, BOS)])
    ref = F.cross_entropy(logits[valid][:, allowed], TOKENS[valid] - 2, label_smoothing=0.1)
    torch.testing.assert_close(model.loss(fused, TOKENS, label_smoothing=0.1), ref)


def test_loss_all_pad_is_zero_with_grad() -> None:
    model, fused = make_model(), make_fused()
    one_pad_row = TOKENS.clone()
    one_pad_row[1] = PAD
    valid = one_pad_row != PAD
    ref = F.cross_entropy(model(fused, one_pad_row).logits[valid], one_pad_row[valid])
    torch.testing.assert_close(model.loss(fused, one_pad_row), ref)
    loss = model.loss(fused, torch.zeros(3, 2, dtype=torch.long))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_score_mask_and_logprobs() -> None:
    model, fused = make_model(), make_fused()
    tokens = torch.tensor([[4, 2, 5, 0], [6, 7, 8, 4], [2, 0, 0, 0]])  # junk after EOS; no EOS; EOS only
    s = model.score(fused, tokens, temperature=0.7)
    assert s.mask.tolist() == [[True, True, False, False], [True] * 4, [True, False, False, False]]
    ref = F.log_softmax(model(fused, tokens).logits / 0.7, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(s.logprobs, ref.masked_fill(~s.mask, 0.0))


def expected_mask(tokens: torch.Tensor) -> torch.Tensor:
    rows = []
    for row in tokens.tolist():
        n = row.index(EOS) + 1 if EOS in row else len(row)
        assert all(x == PAD for x in row[n:]) and PAD not in row[:n] and BOS not in row
        rows.append([True] * n + [False] * (len(row) - n))
    return torch.tensor(rows)


@pytest.mark.parametrize("strategy", ["greedy", "sample", "beam"])
@pytest.mark.parametrize("with_tokens", [True, False])
def test_generate_equals_score(strategy: str, with_tokens: bool) -> None:
    model, fused = make_model(), make_fused(batch=6, with_tokens=with_tokens)
    model.out.bias.data[EOS] -= 1.5  # longer answers, so several rows differ in length
    gen = model.generate(fused, strategy, temperature=1.3, top_k=3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(gen.mask, expected_mask(gen.tokens))
    assert (gen.logprobs[~gen.mask] == 0).all()
    s = model.score(fused, gen.tokens, temperature=1.3)
    torch.testing.assert_close(gen.logprobs, s.logprobs, rtol=0, atol=1e-5)
    torch.testing.assert_close(gen.hidden, s.hidden, rtol=0, atol=1e-5)
    assert gen.logprobs.requires_grad  # caller's grad mode: RL can backprop through it
    with torch.no_grad():
        assert not model.generate(fused, strategy).logprobs.requires_grad


def test_rows_are_cut_at_max_new_tokens() -> None:
    model, fused = make_model(), make_fused()
    model.out.bias.data[EOS] = -100.0  # never ends
    for strategy in ("greedy", "sample", "beam"):
        gen = model.generate(fused, strategy, max_new_tokens=3)
        assert gen.tokens.shape == (3, 3) and gen.mask.all() and (gen.tokens != EOS).all()
    model.out.bias.data[EOS] = 100.0  # ends at once
    for strategy in ("greedy", "sample", "beam"):
        gen = model.generate(fused, strategy)
        assert gen.tokens.tolist() == [[EOS]] * 3 and gen.mask.all()


def test_sampling_top1_is_greedy_and_seeded_sampling_reproducible() -> None:
    model, fused = make_model(), make_fused(batch=16)
    greedy = model.generate(fused, "greedy").tokens
    assert torch.equal(model.generate(fused, "sample", top_k=1, temperature=2.0).tokens, greedy)
    a = model.generate(fused, "sample", generator=torch.Generator().manual_seed(3)).tokens
    b = model.generate(fused, "sample", generator=torch.Generator().manual_seed(3)).tokens
    c = model.generate(fused, "sample", generator=torch.Generator().manual_seed(4)).tokens
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_sampling_frequencies_follow_tempered_softmax() -> None:
    model, fused = make_model(), make_fused(batch=4000, with_tokens=False)
    model.out.weight.data.zero_()  # logits = bias, whatever the input
    model.out.bias.data = torch.tensor([9.0, 9.0, 0.5, -1.0, 1.0, 0.0, 2.0, -0.5, 0.3])
    gen = model.generate(fused, "sample", max_new_tokens=1, temperature=2.0,
                         generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(gen.tokens[:, 0], minlength=V).float() / 4000
    expected = torch.softmax(model.out.bias.data.masked_fill(model.banned, -1e9) / 2.0, -1)
    assert freq[[PAD, BOS]].sum() == 0  # the large PAD/BOS biases are banned
    torch.testing.assert_close(freq, expected, rtol=0, atol=0.03)
    topk = model.generate(fused, "sample", max_new_tokens=1, temperature=2.0, top_k=2).tokens
    assert set(topk[:, 0].tolist()) == {6, 4}


def all_answers(max_len: int) -> list[list[int]]:
    """Every action sequence: words then EOS within max_len tokens, or max_len words (cut)."""
    words = [i for i in range(V) if i not in (PAD, BOS, EOS)]
    seqs = [list(w) + [EOS] for n in range(max_len) for w in itertools.product(words, repeat=n)]
    return seqs + [list(w) for w in itertools.product(words, repeat=max_len)]


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_wide_beam_is_exact_search(length_penalty: float) -> None:
    model, fused = make_model(max_length=3), make_fused(batch=2)
    model.out.bias.data[EOS] -= 2.0
    seqs = all_answers(3)
    padded = torch.tensor([s + [PAD] * (3 - len(s)) for s in seqs])
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.float)
    gen = model.generate(fused, "beam", num_beams=len(seqs), length_penalty=length_penalty)
    for row in range(2):
        one = FusionOutput(*(x[row : row + 1].expand(len(seqs), *x.shape[1:]) for x in fused[:3]))
        totals = model.score(one, padded).logprobs.sum(1) / lengths.pow(length_penalty)
        best = seqs[int(totals.argmax())]
        assert gen.tokens[row, : len(best)].tolist() == best and (gen.tokens[row, len(best):] == PAD).all()


def test_one_beam_is_greedy() -> None:
    model, fused = make_model(), make_fused(batch=8)
    assert torch.equal(model.generate(fused, "beam", num_beams=1).tokens, model.generate(fused).tokens)


def test_dropout_only_in_train_mode() -> None:
    model, fused = make_model(dropout=0.5), make_fused()
    assert torch.equal(model(fused, TOKENS).logits, model(fused, TOKENS).logits)
    model.train()
    assert not torch.equal(model(fused, TOKENS).logits, model(fused, TOKENS).logits)


def test_invalid_arguments() -> None:
    model, fused = make_model(), make_fused()
    with pytest.raises(ValueError, match="greedy"):
        model.generate(fused, "nucleus")
    with pytest.raises(ValueError):
        model.generate(fused, max_new_tokens=L + 1)
    with pytest.raises(ValueError):
        model.score(fused, TOKENS, temperature=0.0)
    with pytest.raises(ValueError):
        model(fused, torch.tensor([[BOS, 4]] * 3))
    with pytest.raises(ValueError):
        model(make_fused(dim=D + 1), TOKENS)


def overfit(answers: list[str], with_tokens: bool,
            steps: int = 150) -> tuple[AnswerGenerator, FusionOutput, AnswerTokenizer]:
    tok = AnswerTokenizer.from_answers(answers)
    torch.manual_seed(0)
    fused = make_fused(batch=len(answers), with_tokens=with_tokens, dim=32, n=6)
    model = AnswerGenerator(32, len(tok), num_layers=2, num_heads=4, dropout=0.0, max_length=4)
    targets = tok.encode_batch(answers, max_length=4)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        opt.zero_grad()
        model.loss(fused, targets).backward()
        opt.step()
    return model.eval(), fused, tok


@pytest.mark.parametrize("with_tokens", [True, False])
def test_overfit_answers_are_generated(with_tokens: bool) -> None:
    answers = ["red", "blue circle", "yes", "no", "2"]
    model, fused, tok = overfit(answers, with_tokens)
    assert tok.decode_batch(model.generate(fused, "greedy").tokens) == answers
    assert tok.decode_batch(model.generate(fused, "beam", num_beams=3).tokens) == answers
    sampled = model.generate(fused, "sample", temperature=0.5, generator=torch.Generator().manual_seed(0))
    assert tok.decode_batch(sampled.tokens) == answers
