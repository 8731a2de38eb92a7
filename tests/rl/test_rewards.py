"""KL reward shaping and the reward-function registry, against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from mmfuse.metrics.vqa import normalize_answer, vqa_accuracy
from mmfuse.rl.rewards import (
    REWARDS,
    get_reward,
    list_rewards,
    register_reward,
    shape_token_rewards,
)

NAN = float("nan")


def _full(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


# --- shape_token_rewards ---------------------------------------------------------------------------

def test_k1_hand_values_and_score_on_last_token() -> None:
    logp, ref = _full([-1.0, -2.0, -3.0]), _full([-1.5, -2.0, -2.0])
    kl, r = shape_token_rewards(torch.tensor([2.0]), logp, ref, torch.ones(1, 3), kl_coef=0.1)
    torch.testing.assert_close(kl, _full([0.5, 0.0, -1.0]))
    torch.testing.assert_close(r, _full([-0.05, 0.0, 0.1 + 2.0]))


def test_k3_hand_values() -> None:
    logp, ref = _full([-1.0, -2.0, -3.0]), _full([-1.5, -2.0, -2.0])
    kl, r = shape_token_rewards(torch.tensor([0.0]), logp, ref, torch.ones(1, 3), 0.5, estimator="k3")
    # d = ref - logp = [-0.5, 0, 1]; k3 = e^d - 1 - d
    want = _full([math.exp(-0.5) - 0.5, 0.0, math.e - 2.0])
    torch.testing.assert_close(kl, want)
    torch.testing.assert_close(r, -0.5 * want)
    assert (kl >= 0).all()


def test_score_lands_on_last_valid_token_pad_and_holes() -> None:
    mask = torch.tensor([[1, 1, 0], [1, 0, 1], [0, 0, 0], [1, 1, 1]])
    zeros = torch.zeros(4, 3)
    kl, r = shape_token_rewards(torch.tensor([1.0, 2.0, 3.0, 4.0]), zeros, zeros, mask, kl_coef=0.1)
    assert (kl == 0).all()
    # row 0: trailing pad -> t=1; row 1: interior hole -> t=2; row 2: no valid token -> no score
    torch.testing.assert_close(r, _full([0, 1, 0], [0, 0, 2], [0, 0, 0], [0, 0, 4]))


def test_bool_mask_and_kl_coef_scaling() -> None:
    logp, ref = _full([0.3, 0.1, 9.0]), _full([0.1, 0.2, 0.0])
    mask = torch.tensor([[True, True, False]])
    for coef in (0.0, 0.05, 2.0):
        kl, r = shape_token_rewards(torch.tensor([1.0]), logp, ref, mask, coef)
        torch.testing.assert_close(kl, _full([0.2, -0.1, 0.0]))
        torch.testing.assert_close(r, _full([-coef * 0.2, coef * 0.1 + 1.0, 0.0]))


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_garbage_in_masked_slots_does_not_leak(estimator: str) -> None:
    logp = _full([-1.0, NAN, -float("inf")], [-0.5, -0.7, NAN]).requires_grad_()
    ref = _full([-1.2, float("inf"), NAN], [NAN, -0.6, 3.0])
    mask = torch.tensor([[1, 0, 0], [0, 1, 0]])
    kl, r = shape_token_rewards(torch.tensor([1.0, -1.0]), logp, ref, mask, 0.1, estimator=estimator)
    assert torch.isfinite(kl).all() and torch.isfinite(r).all()
    assert (kl[mask == 0] == 0).all() and (r[mask == 0] == 0).all()
    r.sum().backward()
    assert torch.isfinite(logp.grad).all()
    assert (logp.grad[mask == 0] == 0).all()
    if estimator == "k1":
        torch.testing.assert_close(r, _full([-0.02 + 1.0, 0.0, 0.0], [0.0, 0.01 - 1.0, 0.0]))


def test_bad_estimator_and_shapes() -> None:
    x = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="k1.*k3"):
        shape_token_rewards(torch.zeros(1), x, x, torch.ones(1, 2), 0.1, estimator="k2")
    with pytest.raises(ValueError, match="score"):
        shape_token_rewards(torch.zeros(2), x, x, torch.ones(1, 2), 0.1)
    with pytest.raises(ValueError, match="ref_logprobs"):
        shape_token_rewards(torch.zeros(1), x, torch.zeros(1, 3), torch.ones(1, 2), 0.1)


# --- reward registry -------------------------------------------------------------------------------

def test_vqa_accuracy_reward_matches_official_scorer() -> None:
    gts = [["2"] * 3 + ["1"] * 7, ["yes"] * 10, ["2"] * 3 + ["3"] * 7, ["red", "blue"], []]
    preds = ["2", "yes", "two", "Red.", "anything"]
    got = get_reward("vqa_accuracy")(preds, {"answers": gts})
    assert got.dtype == torch.float32 and got.shape == (5,)
    official = [vqa_accuracy(normalize_answer(p), g) for p, g in zip(preds[:4], gts[:4])]
    torch.testing.assert_close(got[:4], torch.tensor(official, dtype=torch.float32))
    # by hand: 3 of 10 -> 0.9 (leave-one-out); unanimous 10 x "yes" -> 1; "two" -> "2"; no GT -> 0
    torch.testing.assert_close(got, torch.tensor([0.9, 1.0, 0.9, 1 / 6, 0.0]))


def test_default_reward_is_vqa_accuracy() -> None:
    assert get_reward() is get_reward("vqa_accuracy") is get_reward(None)
    assert {"vqa_accuracy", "exact_match"} <= set(list_rewards())


def test_exact_match_uses_majority_normalised_answer() -> None:
    gts = [["blue", "Red", "blue", "red."], ["red", "blue", "blue", "red"], ["2"] * 3 + ["1"] * 7, []]
    em = get_reward("exact_match")
    # row 0: "blue" x2 vs "red" x2 (after normalising) -> tie -> first given ("blue")
    got = em(["the blue", "red", "two", "x"], {"answers": gts})
    torch.testing.assert_close(got, torch.tensor([1.0, 1.0, 0.0, 0.0]))
    got = em(["RED", "blue", "1", ""], {"answers": gts})
    torch.testing.assert_close(got, torch.tensor([0.0, 0.0, 1.0, 0.0]))


def test_user_callable_passes_through_and_registration() -> None:
    def const(preds: list[str], batch: dict) -> torch.Tensor:
        return torch.full((len(preds),), 0.5)

    assert get_reward(const) is const
    name = "test_rl_len_reward"
    if name not in REWARDS:
        register_reward(name)(lambda preds, batch: torch.tensor([float(len(p)) for p in preds]))
    assert name in list_rewards()
    torch.testing.assert_close(get_reward(name)(["ab", ""], {"answers": [[], []]}), torch.tensor([2.0, 0.0]))


def test_unknown_reward_lists_known_ones() -> None:
    with pytest.raises(KeyError, match="exact_match.*vqa_accuracy"):
        get_reward("vqa_acc")
    with pytest.raises(TypeError):
        get_reward(3)  # type: ignore[arg-type]


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="predictions"):
        get_reward("vqa_accuracy")(["a", "b"], {"answers": [["a"]]})
