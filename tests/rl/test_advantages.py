"""Advantage estimators against per-row oracles written here with plain loops (ties, all-equal groups, masked
tokens, G = 1), VAPO's λ rules on hand values, safe whitening, loss aggregation, and the group helpers."""

from __future__ import annotations

import math

import pytest
import torch

from mmfuse.fusion.base import FusionOutput
from mmfuse.heads.generator import AnswerGenerator
from mmfuse.rl.advantages import (
    AdvantageInput,
    AdvantageOptions,
    get_advantage,
    grpo_advantages,
    length_adaptive_lambda,
    list_advantages,
    resolve_advantage,
    rloo_advantages,
)
from mmfuse.rl.gae import compute_gae, masked_var, masked_whiten
from mmfuse.rl.groups import cat_fused, cat_rollouts, group_rows, repeat_batch, select_rollout, uniform_groups
from mmfuse.rl.ppo import aggregate, k3_kl, policy_loss
from mmfuse.rl.rollout import Rollout

NAN = float("nan")




# ------------------------------------------------------------------- oracles: lists of floats, one row at a time


def grpo_oracle(group: list[float], scale: bool, eps: float = 1e-6) -> list[float]:
    mean = sum(group) / len(group)
    std = math.sqrt(sum((x - mean) ** 2 for x in group) / len(group))  # population std
    return [(x - mean) / (std + eps) if scale else x - mean for x in group]


def rloo_oracle(group: list[float]) -> list[float]:
    g = len(group)
    return [0.0 if g == 1 else x - sum(group[j] for j in range(g) if j != i) / (g - 1) for i, x in enumerate(group)]


def returns_oracle(r: list[float], m: list[bool], d: list[bool], gamma: float) -> list[float]:
    """Discounted reward-to-go over the valid tokens of one row (a done stops it)."""
    out, carry = [0.0] * len(r), 0.0
    for t in reversed(range(len(r))):
        if m[t]:
            carry = r[t] + gamma * (0.0 if d[t] else carry)
            out[t] = carry
    return out


def whiten_oracle(rows: list[list[float]], mask: list[list[bool]], min_std: float) -> list[list[float]]:
    vals = [x for row, mr in zip(rows, mask) for x, ok in zip(row, mr) if ok]
    mean = sum(vals) / len(vals)
    std = max(math.sqrt(sum((x - mean) ** 2 for x in vals) / len(vals) + 1e-8), min_std)
    return [[(x - mean) / std if ok else 0.0 for x, ok in zip(row, mr)] for row, mr in zip(rows, mask)]


# Three questions x G = 3 answers, T = 4: a tie (question 0), an all-equal group (question 1), masked holes
# holding NaN rewards (never read), a done mid-row (row 6 ends after t = 1; its t = 2 is a new episode).
REWARDS = torch.tensor([
    [0.0, -0.1, 1.0, NAN], [0.2, 0.0, NAN, NAN], [0.0, 0.0, 0.0, 1.0],
    [0.5, NAN, 0.0, 0.0], [0.0, 0.5, NAN, NAN], [0.25, 0.25, NAN, NAN],
    [1.0, 0.0, 2.0, NAN], [0.0, NAN, NAN, NAN], [-0.5, 0.0, 0.0, 0.3],
], dtype=torch.float64)
MASK = ~REWARDS.isnan()
DONES = torch.zeros_like(MASK)
DONES[6, 1] = True


def inputs(group: int = 3) -> AdvantageInput:
    return AdvantageInput(REWARDS, MASK, DONES, group)


def on_valid_tokens(per_answer: list[float]) -> torch.Tensor:
    rows = [[a if ok else 0.0 for ok in m] for a, m in zip(per_answer, MASK.tolist())]
    return torch.tensor(rows, dtype=torch.float64)


def seq_rows() -> list[float]:
    return [sum(x for x, ok in zip(r, m) if ok) for r, m in zip(REWARDS.tolist(), MASK.tolist())]


# ---------------------------------------------------------------------------------- the plain functions


def test_grpo_and_rloo_match_their_oracles_on_ties_equal_groups_and_g1() -> None:
    scores = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.3, 0.3, 0.3, 0.3], [0.1, 0.7, 0.7, 0.2]], dtype=torch.float64)
    for scale in (True, False):
        expected = [grpo_oracle(row, scale) for row in scores.tolist()]
        torch.testing.assert_close(grpo_advantages(scores, scale), torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(rloo_advantages(scores), torch.tensor([rloo_oracle(r) for r in scores.tolist()],
                                                                     dtype=torch.float64))
    # hand values: {1, 0, 0, 1} has mean 0.5 and std 0.5, so ±0.5 / 0.5; RLOO: 1 - 1/3 and 0 - 2/3
    a = 0.5 / (0.5 + 1e-6)
    assert grpo_advantages(scores)[0].tolist() == pytest.approx([a, -a, -a, a])
    assert rloo_advantages(scores)[0].tolist() == pytest.approx([2 / 3, -2 / 3, -2 / 3, 2 / 3])
    # an all-equal group is exactly 0 (0.3 is not exact in binary: a plain mean would leave ~1e-17 / 1e-6)
    for f in (grpo_advantages, rloo_advantages):
        assert (f(scores.float())[1] == 0).all()
    # G = 1: population std 0, so 0 / (0 + eps) = 0; no other answer for RLOO
    single = torch.tensor([[0.7], [0.0]])
    assert grpo_advantages(single).tolist() == [[0.0], [0.0]] and rloo_advantages(single).tolist() == [[0.0], [0.0]]
    with pytest.raises(ValueError, match=r"\[B, G\]"):
        grpo_advantages(torch.ones(4))


def test_length_adaptive_lambda_hand_values() -> None:
    lengths = torch.tensor([0, 1, 2, 4, 10])
    # 1 - 1/(0.5 l): l=0 -> -inf, l=1 -> -1, l=2 -> 0 (all clamped to 0), l=4 -> 0.5, l=10 -> 0.8
    assert length_adaptive_lambda(lengths, 0.5).tolist() == pytest.approx([0.0, 0.0, 0.0, 0.5, 0.8])
    assert length_adaptive_lambda(lengths, 2.0).tolist() == pytest.approx([0.0, 0.5, 0.75, 0.875, 0.95])
    # VAPO's α = 0.05: a 100-token answer gets 0.8, a 1000-token one 0.98
    assert length_adaptive_lambda(torch.tensor([100, 1000]), 0.05).tolist() == pytest.approx([0.8, 0.98])
    with pytest.raises(ValueError, match="alpha must be > 0"):
        length_adaptive_lambda(lengths, 0.0)


@pytest.mark.parametrize("method", ["loop", "matrix"])
def test_gae_takes_one_lambda_per_row(method: str) -> None:
    r = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    done = torch.tensor([[False, False, True]] * 2)
    adv, _ = compute_gae(r, torch.zeros_like(r), dones=done, lam=torch.tensor([0.5, 1.0]), method=method)
    # γ = 1, V = 0: A_t = λ^(2-t) * 1
    assert adv.tolist() == [[0.25, 0.5, 1.0], [1.0, 1.0, 1.0]]
    g = torch.Generator().manual_seed(0)
    r, v = torch.randn(3, 6, generator=g, dtype=torch.float64), torch.randn(3, 6, generator=g, dtype=torch.float64)
    m = torch.rand(3, 6, generator=g) > 0.3
    lam = torch.tensor([0.0, 0.6, 0.95])
    per_row, _ = compute_gae(r, v, m, gamma=0.9, lam=lam, method=method)
    for b in range(3):
        one, _ = compute_gae(r[b:b + 1], v[b:b + 1], m[b:b + 1], gamma=0.9, lam=float(lam[b]), method=method)
        torch.testing.assert_close(per_row[b:b + 1], one, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="one λ per row"):
        compute_gae(r, v, lam=torch.tensor([0.5, 0.5]))


# ------------------------------------------------------------------------------- the registered estimators


def test_registry_critics_and_the_reinforce_alias() -> None:
    assert list_advantages() == ["gae", "grpo", "reinforce", "reinforce_pp", "rloo"]
    assert [get_advantage(n).critic for n in list_advantages()] == [True, False, False, False, False]
    assert resolve_advantage("gae", "reinforce") == "reinforce" and resolve_advantage("grpo", "reinforce") == "grpo"
    assert resolve_advantage("gae", "ppo") == "gae"
    with pytest.raises(KeyError, match="registered advantage estimators: gae, grpo"):
        get_advantage("ppo")


@pytest.mark.parametrize("scale", [True, False])
def test_grpo_estimator_puts_the_group_advantage_on_every_valid_token(scale: bool) -> None:
    out = get_advantage("grpo").fn(inputs(), AdvantageOptions(scale=scale))
    seq = seq_rows()
    expected = [a for b in range(3) for a in grpo_oracle(seq[3 * b:3 * b + 3], scale)]
    want = on_valid_tokens(expected)
    torch.testing.assert_close(out.advantages, want)
    assert (out.advantages[3:6] == 0).all()  # question 1: every answer's total reward is 0.5
    assert out.returns is None and out.agg == ("sequence" if scale else "sum")


def test_rloo_estimator_and_g1() -> None:
    out = get_advantage("rloo").fn(inputs(), AdvantageOptions())
    seq = seq_rows()
    expected = [a for b in range(3) for a in rloo_oracle(seq[3 * b:3 * b + 3])]
    want = on_valid_tokens(expected)
    torch.testing.assert_close(out.advantages, want)
    assert out.returns is None and out.agg == "token"
    for name in ("grpo", "rloo"):  # G = 1: nothing to compare with
        assert (get_advantage(name).fn(inputs(1), AdvantageOptions()).advantages == 0).all()
    with pytest.raises(ValueError, match="groups of rl.samples_per_question=4"):
        get_advantage("rloo").fn(inputs(4), AdvantageOptions())


@pytest.mark.parametrize("gamma,min_std", [(1.0, 0.0), (0.9, 0.0), (0.9, 5.0)])
def test_reinforce_pp_whitens_discounted_returns_over_the_batch(gamma: float, min_std: float) -> None:
    out = get_advantage("reinforce_pp").fn(inputs(), AdvantageOptions(gamma=gamma, min_std=min_std))
    rows = [returns_oracle(r, m, d, gamma) for r, m, d in zip(REWARDS.tolist(), MASK.tolist(), DONES.tolist())]
    want = whiten_oracle(rows, MASK.tolist(), min_std)
    torch.testing.assert_close(out.advantages, torch.tensor(want, dtype=torch.float64))
    assert out.returns is None and out.agg == "token"


def test_reinforce_is_the_batch_mean_baseline() -> None:
    rows = [returns_oracle(r, m, d, 1.0) for r, m, d in zip(REWARDS.tolist(), MASK.tolist(), DONES.tolist())]
    vals = [x for row, mr in zip(rows, MASK.tolist()) for x, ok in zip(row, mr) if ok]
    mean = sum(vals) / len(vals)
    out = get_advantage("reinforce").fn(inputs(), AdvantageOptions(whiten=False))
    want = [[x - mean if ok else 0.0 for x, ok in zip(row, mr)] for row, mr in zip(rows, MASK.tolist())]
    torch.testing.assert_close(out.advantages, torch.tensor(want, dtype=torch.float64))
    whitened = get_advantage("reinforce").fn(inputs(), AdvantageOptions(whiten=True)).advantages
    torch.testing.assert_close(whitened, torch.tensor(whiten_oracle(want, MASK.tolist(), 0.0), dtype=torch.float64))


def test_gae_estimator_decouples_the_critic_lambda_and_adapts_to_length() -> None:
    r = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    v = torch.full_like(r, 0.5)
    m = torch.tensor([[True, True, True], [True, True, False]])
    d = torch.tensor([[False, False, True], [False, True, False]])
    inp = AdvantageInput(r, m, d, 1, v, None)
    out = get_advantage("gae").fn(inp, AdvantageOptions(lam=0.0, lam_critic=1.0, whiten=False))
    # λ_policy = 0: A = δ = r + V_next - V; λ_critic = 1: the value target is the Monte-Carlo return
    assert out.advantages.tolist() == [[0.0, 0.0, 0.5], [0.0, 0.5, 0.0]]
    assert out.returns.tolist() == [[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]] and out.agg == "token"
    same = get_advantage("gae").fn(inp, AdvantageOptions(lam=0.0, lam_critic=0.0, whiten=False))
    assert same.returns.tolist() == [[0.5, 0.5, 1.0], [0.5, 1.0, 0.0]]  # A + V with λ = 0
    # lengths 3 and 2 with α = 1: λ = 2/3 and 1/2; row 0: A_2 = 0.5, A_1 = 0 + (2/3) 0.5, A_0 = (2/3)^2 0.5
    ada = get_advantage("gae").fn(inp, AdvantageOptions(lam_length_alpha=1.0, whiten=False))
    torch.testing.assert_close(ada.advantages, torch.tensor([[2 / 9, 1 / 3, 0.5], [0.25, 0.5, 0.0]],
                                                            dtype=torch.float64))
    assert ada.returns.tolist() == [[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]
    with pytest.raises(ValueError, match="value head"):
        get_advantage("gae").fn(AdvantageInput(r, m, d, 1), AdvantageOptions())


# ------------------------------------------------------------------------------------------ safe whitening


def test_whitening_constant_or_near_constant_advantages_stays_small() -> None:
    mask = torch.tensor([[True, True, False], [True, True, True]])
    const = torch.full((2, 3), 0.1)  # float32 0.1: the batch mean is not exactly 0.1
    for min_std in (0.0, 0.1):
        out = masked_whiten(const, mask, min_std=min_std)
        assert torch.isfinite(out).all() and out.abs().max() < 1e-3
    assert (masked_whiten(const, mask, min_std=0.1).abs() < 1e-6).all()
    # saturated reward: advantages are critic error of spread ~0.01; plain whitening makes them a unit-variance
    # signal, the floor divides them by 0.1 instead (a gain of 10, not ~100)
    noise = 1.0 + 0.01 * torch.randn(2, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert masked_var(masked_whiten(noise, mask), mask).item() == pytest.approx(1.0, rel=1e-3)
    mean = noise[mask].mean()
    torch.testing.assert_close(masked_whiten(noise, mask, min_std=0.1), torch.where(mask, (noise - mean) / 0.1, 0.0))
    # a real spread above the floor is whitened as before
    x = torch.tensor([[1.0, 2.0, 0.0], [3.0, 4.0, 5.0]])
    torch.testing.assert_close(masked_whiten(x, mask, min_std=0.1), masked_whiten(x, mask))


# ---------------------------------------------------------------------------------- losses: aggregation, k3


def test_aggregate_token_sequence_and_fixed_length_sum() -> None:
    x = torch.tensor([[1.0, 2.0, 3.0, NAN], [4.0, NAN, NAN, NAN]])
    m = ~x.isnan()
    assert aggregate(x, m, "token").item() == pytest.approx(10 / 4)
    assert aggregate(x, m, "sequence").item() == pytest.approx((2.0 + 4.0) / 2)
    assert aggregate(x, m, "sum").item() == pytest.approx(10 / (2 * 4))
    assert aggregate(x, m, "sum", norm_len=5).item() == pytest.approx(10 / (2 * 5))
    with pytest.raises(ValueError, match="valid choices: token, sequence, sum"):
        aggregate(x, m, "mean")
    # at ratio 1 the clipped loss is -agg(A)
    adv = torch.tensor([[1.0, 1.0, 1.0, 0.0], [-2.0, 0.0, 0.0, 0.0]])
    logp = torch.zeros(2, 4, requires_grad=True)
    loss, _ = policy_loss(logp, torch.zeros(2, 4), adv, m, agg="sequence")
    assert loss.item() == pytest.approx(-(1.0 - 2.0) / 2)


def test_k3_kl_hand_value_and_gradient() -> None:
    logp = torch.tensor([[math.log(0.5), NAN]], requires_grad=True)
    ref = torch.tensor([[math.log(0.25), 0.0]])
    m = torch.tensor([[True, False]])
    kl = k3_kl(logp, ref, m)
    assert kl[0, 0].item() == pytest.approx(0.5 - 1 - math.log(0.5)) and kl[0, 1].item() == 0.0
    kl.sum().backward()
    # d/dlogp (e^(ref-logp) - 1 - (ref-logp)) = 1 - e^(ref-logp) = 0.5; the NaN pad gets a zero gradient
    assert logp.grad.tolist() == [[pytest.approx(0.5), 0.0]]


# --------------------------------------------------------------------------------------------- group helpers


def test_groups_stay_together() -> None:
    assert group_rows(3, 2).tolist() == [0, 0, 1, 1, 2, 2]
    batch = {"question_id": [7, 8], "answers": [["a"], ["b"]], "image": torch.zeros(2, 3, 4, 4), "dataset": "x"}
    rep = repeat_batch(batch, 3)
    assert rep["question_id"] == [7, 7, 7, 8, 8, 8] and rep["answers"] == [["a"]] * 3 + [["b"]] * 3
    assert rep["image"] is batch["image"] and rep["dataset"] == "x"  # tensors (images) are not per question
    scores = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.5, 0.5, 0.2, 0.3])
    assert uniform_groups(scores, 2).tolist() == [True, False, True, False]
    assert uniform_groups(scores, 1).all() and not uniform_groups(scores, 4).any()
    with pytest.raises(ValueError, match="groups of 3"):
        uniform_groups(scores, 3)


def rollout(n: int, t: int, last_value: bool = False) -> Rollout:
    g = torch.Generator().manual_seed(n * 10 + t)
    f = torch.randn(n, t, generator=g)
    mask = torch.ones(n, t, dtype=torch.bool)
    return Rollout(torch.full((n, t), 4), mask, f, f + 1, f + 2, f + 3, f + 4, mask & False,
                   torch.randn(n, generator=g) if last_value else None, torch.arange(n).float(), mask[:, 0] & False,
                   [f"a{i}" for i in range(n)])


def test_select_and_join_rollouts() -> None:
    a, b = rollout(4, 2), rollout(2, 3, last_value=True)
    sub = select_rollout(a, torch.tensor([2, 3]))
    assert sub.texts == ["a2", "a3"] and torch.equal(sub.logprobs, a.logprobs[2:]) and sub.last_value is None
    joined = cat_rollouts([sub, b], pad_id=0)
    assert joined.tokens.shape == (4, 3) and joined.tokens[:2, 2].tolist() == [0, 0]  # PAD, masked, zero
    assert not joined.mask[:2, 2].any() and (joined.rewards[:2, 2] == 0).all()
    assert torch.equal(joined.rewards[2:], b.rewards) and joined.texts == ["a2", "a3", "a0", "a1"]
    assert joined.last_value.tolist() == [0.0, 0.0, *b.last_value.tolist()]  # terminal ends bootstrap from 0


def test_joined_fused_features_give_the_generator_the_same_answers() -> None:
    torch.manual_seed(0)
    gen = AnswerGenerator(16, 9, num_layers=1, num_heads=2, dropout=0.0, max_length=4).eval()
    a = FusionOutput(torch.randn(2, 16), torch.randn(2, 3, 16), torch.tensor([[1, 1, 0], [1, 1, 1]]).bool())
    b = FusionOutput(torch.randn(1, 16), torch.randn(1, 5, 16), torch.ones(1, 5, dtype=torch.bool))
    joined = cat_fused([a, b])
    assert joined.tokens.shape == (3, 5, 16) and joined.mask[:2, 3:].sum() == 0
    tokens = torch.tensor([[4, 5, 2, 0], [6, 2, 0, 0], [5, 5, 5, 2]])
    with torch.no_grad():
        apart = torch.cat([gen(a, tokens[:2]).logits, gen(b, tokens[2:]).logits])
        torch.testing.assert_close(gen(joined, tokens).logits, apart, rtol=0, atol=1e-5)
