"""Rollouts of a tiny generator: masks, log-probs equal to a re-scoring, rewards on the last valid token,
truncation (terminal / bootstrap), the missing-EOS penalty, and the value head."""

from __future__ import annotations

import copy

import pytest
import torch

from mmfuse.data.answer_tokens import AnswerTokenizer
from mmfuse.fusion.base import FusionOutput
from mmfuse.heads.generator import AnswerGenerator, action_mask
from mmfuse.heads.value import ValueHead
from mmfuse.metrics.vqa import normalize_answer
from mmfuse.rl.gae import compute_gae
from mmfuse.rl.ppo import exact_token_kl
from mmfuse.rl.rollout import collect_rollout, evaluate_actions, select_rows

D = 16
TOK = AnswerTokenizer(["red", "blue", "big", "circle", "yes"])


def fused(batch: int = 24, seed: int = 0) -> FusionOutput:
    g = torch.Generator().manual_seed(seed)
    return FusionOutput(torch.randn(batch, D, generator=g), torch.randn(batch, 3, D, generator=g),
                        torch.ones(batch, 3, dtype=torch.bool))


def models(seed: int = 0, max_length: int = 4) -> tuple[AnswerGenerator, AnswerGenerator, ValueHead]:
    torch.manual_seed(seed)
    policy = AnswerGenerator(D, len(TOK), num_layers=1, num_heads=2, dropout=0.0, max_length=max_length).eval()
    reference = copy.deepcopy(policy)
    with torch.no_grad():  # a reference that differs from the policy, so the KL is not 0
        for p in reference.parameters():
            p.add_(0.05 * torch.randn_like(p))
    value = ValueHead(D, hidden=8)
    with torch.no_grad():  # non-zero values (the head starts at 0)
        value.net[-1].weight.normal_()
        value.net[-1].bias.fill_(0.3)
    return policy, reference, value


def prefers_red(texts, batch) -> torch.Tensor:
    return torch.tensor([1.0 if t == "red" else 0.25 for t in texts])


def rollout(policy, reference, value, f, **kw):
    kw = {"kl_coef": 0.1, "generator": torch.Generator().manual_seed(1), **kw}
    return collect_rollout(policy, value, f, reference, f, TOK.decode_batch, {"answers": [["red"]] * f.pooled.shape[0]},
                           prefers_red, **kw)


def test_rollout_is_consistent() -> None:
    policy, reference, value = models()
    f = fused()
    roll = rollout(policy, reference, value, f)
    b, t = roll.tokens.shape
    assert roll.mask.dtype == torch.bool and roll.mask.shape == (b, t)
    assert torch.equal(roll.mask, action_mask(roll.tokens, TOK.eos_id, TOK.pad_id))
    assert (roll.tokens[~roll.mask] == TOK.pad_id).all()  # PAD after each EOS, nothing else masked
    assert roll.mask[:, 0].all()
    # log-probs equal a re-scoring of the sampled tokens by the policy and by the reference
    logp, values, _ = evaluate_actions(policy, value, f, roll.tokens)
    torch.testing.assert_close(roll.logprobs, logp, rtol=0, atol=1e-5)
    torch.testing.assert_close(roll.values, values, rtol=0, atol=1e-6)
    torch.testing.assert_close(roll.ref_logprobs, reference.score(f, roll.tokens).logprobs, rtol=0, atol=1e-5)
    assert (roll.values[roll.mask] != 0).all() and (roll.values[~roll.mask] == 0).all()
    # text: decoded and scored
    assert roll.texts == [normalize_answer(t) for t in TOK.decode_batch(roll.tokens)]
    torch.testing.assert_close(roll.scores, prefers_red(roll.texts, None))
    # k1 KL and shaped rewards: -beta*kl everywhere, plus the score on the last valid token only
    torch.testing.assert_close(roll.kl, (roll.logprobs - roll.ref_logprobs) * roll.mask)
    last = roll.mask.long().cumsum(1).argmax(1)  # index of the last valid token
    expected = -0.1 * roll.kl
    expected[torch.arange(b), last] += roll.scores
    torch.testing.assert_close(roll.rewards, expected)
    assert (roll.rewards[~roll.mask] == 0).all()
    finished = ~roll.truncated
    assert torch.equal(roll.dones.sum(1), finished.long())  # one done, at the EOS, per finished row
    assert torch.equal(roll.dones, (roll.tokens == TOK.eos_id) & roll.mask)


def test_rewards_without_kl_sit_on_the_last_valid_token_only() -> None:
    policy, reference, value = models()
    roll = rollout(policy, reference, value, fused(), kl_coef=0.0)
    last = roll.mask.long().cumsum(1).argmax(1)
    only = torch.zeros_like(roll.rewards)
    only[torch.arange(len(last)), last] = roll.scores
    assert torch.equal(roll.rewards, only)


def test_truncation_terminal_scores_the_cut_text_and_applies_the_penalty() -> None:
    policy, reference, value = models()
    roll = rollout(policy, reference, value, fused(48), max_new_tokens=1, missing_eos_penalty=0.5)
    assert roll.tokens.shape[1] == 1
    assert roll.truncated.any() and (~roll.truncated).any()  # a one-token EOS answer is not truncated
    raw = prefers_red(roll.texts, None)
    torch.testing.assert_close(roll.scores, raw - 0.5 * roll.truncated.float())
    assert roll.last_value is None  # every row ends: GAE treats the cut as terminal


def test_truncation_bootstrap_uses_the_value_of_the_next_state() -> None:
    policy, reference, value = models()
    f = fused(48)
    roll = rollout(policy, reference, value, f, max_new_tokens=2, truncation="bootstrap", kl_coef=0.0)
    assert roll.truncated.any()
    states = policy.states(f, roll.tokens)  # [B, T + 1, D]
    v_next = value(states)[torch.arange(48), roll.mask.sum(1)]
    torch.testing.assert_close(roll.last_value[roll.truncated], v_next[roll.truncated])
    # a cut answer gets no score: its continuation's value stands in for it, via GAE's bootstrap
    assert (roll.rewards[roll.truncated] == 0).all()
    adv, _ = compute_gae(roll.rewards, roll.values, roll.mask, roll.dones, roll.last_value, gamma=1.0, lam=1.0)
    r = int(roll.truncated.nonzero()[0])
    torch.testing.assert_close(adv[r, 0], v_next[r] - roll.values[r, 0])


def test_states_extend_forward_hidden_by_one() -> None:
    policy, _, _ = models()
    f = fused(4)
    tokens = torch.tensor([[4, 2, 0, 0], [5, 6, 7, 8], [2, 0, 0, 0], [4, 5, 2, 0]])
    states = policy.states(f, tokens)
    assert states.shape == (4, 5, D)
    torch.testing.assert_close(states[:, :4], policy(f, tokens).hidden)


def test_unknown_truncation_and_bad_reward_shape_are_errors() -> None:
    policy, reference, value = models()
    with pytest.raises(ValueError, match="truncation"):
        rollout(policy, reference, value, fused(), truncation="drop")
    with pytest.raises(ValueError, match="reward function returned shape"):
        collect_rollout(policy, value, fused(), reference, fused(), TOK.decode_batch, {"answers": [["red"]] * 24},
                        lambda texts, batch: torch.zeros(3), kl_coef=0.1)


def test_value_head_starts_at_zero_and_keeps_shape() -> None:
    for hidden in (0, 8):
        head = ValueHead(D, hidden)
        out = head(torch.randn(2, 5, D))
        assert out.shape == (2, 5) and out.dtype == torch.float32 and (out == 0).all()


def test_select_rows_and_exact_kl() -> None:
    f = fused(5)
    sub = select_rows(f, torch.tensor([4, 1]))
    assert torch.equal(sub.pooled, f.pooled[[4, 1]]) and torch.equal(sub.tokens, f.tokens[[4, 1]])
    logits = torch.randn(2, 3, 4)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    assert (exact_token_kl(logits, logits, mask) == 0).all()
    ref = torch.randn(2, 3, 4)
    p, q = logits.softmax(-1), ref.softmax(-1)
    expected = (p * (p.log() - q.log())).sum(-1) * mask
    torch.testing.assert_close(exact_token_kl(logits, ref, mask), expected)
