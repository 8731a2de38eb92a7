"""PPO losses, diagnostics and KL controllers against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from mmfuse.rl.ppo import (
    AdaptiveKLController,
    FixedKLController,
    entropy,
    explained_variance,
    policy_loss,
    value_loss,
)

NAN = float("nan")


def _t(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def test_policy_loss_by_hand() -> None:
    # ratios r = [1.1, 1.5, 0.5, 1.5], advantages [2, 1, -1, -1], clip 0.2:
    #   t0: inside the range   -> -2 * 1.1            = -2.2
    #   t1: A > 0, r > 1.2     -> max(-1.5, -1.2)     = -1.2 (clipped)
    #   t2: A < 0, r < 0.8     -> max(0.5, 0.8)       =  0.8 (clipped)
    #   t3: A < 0, r > 1.2     -> max(1.5, 1.2)       =  1.5 (pessimistic: unclipped)
    ratios = torch.tensor([[1.1, 1.5, 0.5, 1.5]])
    old = _t([-1.0, -2.0, -0.5, -3.0])
    logp = (old + ratios.log()).requires_grad_()
    adv = _t([2.0, 1.0, -1.0, -1.0])
    loss, stats = policy_loss(logp, old, adv, torch.ones(1, 4), clip=0.2)
    torch.testing.assert_close(loss, torch.tensor((-2.2 - 1.2 + 0.8 + 1.5) / 4))
    torch.testing.assert_close(stats["clipfrac"], torch.tensor(0.75))
    logr = ratios.log()[0]
    torch.testing.assert_close(stats["approx_kl"], (0.5 * logr**2).mean())
    torch.testing.assert_close(stats["approx_kl_k3"], ((ratios[0] - 1) - logr).mean())
    loss.backward()
    # d/dlogp of -A*r/4 is -A*r/4 where the unclipped term is active; 0 where clipped
    torch.testing.assert_close(logp.grad, _t([-2 * 1.1 / 4, 0.0, 0.0, 1.5 / 4]))


def test_policy_loss_masking_and_garbage() -> None:
    old = _t([-1.0, NAN, -1.0])
    logp = _t([-1.0 + math.log(1.5), 7.0, float("inf")]).requires_grad_()
    adv = _t([1.0, NAN, 5.0])
    mask = torch.tensor([[1, 0, 0]])
    loss, stats = policy_loss(logp, old, adv, mask, clip=0.2)
    torch.testing.assert_close(loss, torch.tensor(-1.2))
    torch.testing.assert_close(stats["clipfrac"], torch.tensor(1.0))
    loss.backward()
    assert torch.isfinite(logp.grad).all()
    # no valid token -> 0, not NaN
    loss0, stats0 = policy_loss(logp, old, adv, torch.zeros(1, 3))
    assert loss0.item() == 0.0 and stats0["clipfrac"].item() == 0.0


def test_masked_mean_is_over_all_valid_tokens_of_the_batch() -> None:
    # row 0 has 3 valid tokens, row 1 one: the mean is over 4 tokens, not a mean of row means
    z = torch.zeros(2, 3)
    adv = _t([1.0, 1.0, 1.0], [5.0, 0.0, 0.0])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    loss, _ = policy_loss(z, z, adv, mask)
    torch.testing.assert_close(loss, torch.tensor(-(3 + 5) / 4))


def test_value_loss_clipped_and_unclipped_by_hand() -> None:
    values, old, ret = _t([1.0, 2.0, 0.0]), _t([0.5, 1.0, 0.1]), _t([1.5, 1.0, 0.0])
    mask = torch.ones(1, 3)
    # t0: (1-1.5)^2=.25, clipped 0.7 -> (.7-1.5)^2=.64 -> .64
    # t1: (2-1)^2=1,      clipped 1.2 -> .04          -> 1
    # t2: 0, |v-old| = .1 < .2 (not clipped)          -> 0
    loss, stats = value_loss(values, old, ret, mask, clip=0.2)
    torch.testing.assert_close(loss, torch.tensor(0.5 * (0.64 + 1.0) / 3))
    torch.testing.assert_close(stats["vf_clipfrac"], torch.tensor(2 / 3))
    loss_u, stats_u = value_loss(values, old, ret, mask, clip=None)
    torch.testing.assert_close(loss_u, torch.tensor(0.5 * (0.25 + 1.0) / 3))
    assert stats_u["vf_clipfrac"].item() == 0.0
    # masking: only t1 counts; NaN at pads doesn't leak
    v2 = _t([NAN, 2.0, 9.0]).requires_grad_()
    loss_m, _ = value_loss(v2, _t([NAN, 1.0, 0.0]), _t([0.0, 1.0, NAN]), torch.tensor([[0, 1, 0]]))
    torch.testing.assert_close(loss_m, torch.tensor(0.5))
    loss_m.backward()
    torch.testing.assert_close(v2.grad, _t([0.0, 1.0, 0.0]))


def test_entropy_uniform_and_onehot() -> None:
    V = 5
    mask = torch.tensor([[1, 1, 0], [0, 1, 1]])
    torch.testing.assert_close(entropy(torch.zeros(2, 3, V), mask), torch.tensor(math.log(V)))
    # garbage at pads, -inf banned tokens: a one-hot distribution has entropy 0
    logits = torch.full((1, 2, V), -float("inf"))
    logits[0, 0, 2] = 0.0
    logits[0, 1] = NAN
    torch.testing.assert_close(entropy(logits, torch.tensor([[1, 0]])), torch.tensor(0.0))
    # two valid tokens: uniform over 4 (log 4) and over 2 (log 2), after -inf masking
    l2 = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [3.0, 3.0, -float("inf"), -float("inf")]]])
    torch.testing.assert_close(entropy(l2, torch.ones(1, 2)), torch.tensor((math.log(4) + math.log(2)) / 2))


def test_explained_variance_by_hand() -> None:
    ret = _t([1.0, 2.0, 3.0, 4.0, 100.0])
    values = _t([1.0, 2.0, 3.0, 5.0, NAN])
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    # residual [0, 0, 0, -1]: var = .1875; var(returns) = 1.25 -> 1 - .15
    torch.testing.assert_close(explained_variance(values, ret, mask), torch.tensor(0.85))
    torch.testing.assert_close(explained_variance(ret, ret, torch.ones(1, 5)), torch.tensor(1.0))
    # constant returns (zero variance) -> 0.0 by convention; empty mask too
    assert explained_variance(values, torch.ones(1, 5), torch.ones(1, 5)).item() == 0.0
    assert explained_variance(values, ret, torch.zeros(1, 5)).item() == 0.0


@pytest.mark.parametrize(
    ("kl", "err"),
    [(6.6, 0.1), (5.4, -0.1), (100.0, 0.2), (0.0, -0.2), (6.0, 0.0)],
)
def test_adaptive_kl_controller_by_hand(kl: float, err: float) -> None:
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    ctl.update(kl, n_steps=256)
    assert ctl.value == pytest.approx(0.1 * (1 + err * 256 / 10000), rel=1e-12)
    ctl.update(torch.tensor(kl), n_steps=256)  # a 0-dim tensor is accepted too
    assert ctl.value == pytest.approx(0.1 * (1 + err * 256 / 10000) ** 2, rel=1e-6)
    assert isinstance(ctl.value, float)


def test_kl_controllers_state_dict_roundtrip_and_fixed() -> None:
    fixed = FixedKLController(0.05)
    fixed.update(123.0, 1000)
    assert fixed.value == 0.05
    ctl = AdaptiveKLController(0.2, target=1.0, horizon=100)
    ctl.update(2.0, 10)
    state = ctl.state_dict()
    assert state == {"value": pytest.approx(0.2 * 1.02), "target": 1.0, "horizon": 100.0}
    other = AdaptiveKLController(1.0, target=3.0, horizon=5)
    other.load_state_dict(state)
    assert other.state_dict() == state
    f2 = FixedKLController(1.0)
    f2.load_state_dict(fixed.state_dict())
    assert f2.value == 0.05
    with pytest.raises(ValueError):
        AdaptiveKLController(0.1, target=0.0, horizon=10)
