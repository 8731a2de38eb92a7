"""Multi-task loss weightings: exact values on hand-made losses and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from mmfuse.objectives.multitask import (
    LossWeighting,
    build_weighting,
    gradient_cosines,
    list_weightings,
    pcgrad_project,
    weighting_options,
)

T = torch.tensor


def losses(**kw: float) -> dict[str, torch.Tensor]:
    return {k: T(v) for k, v in kw.items()}


# ---------------------------------------------------------------- registry / building
@pytest.mark.parametrize("name", list_weightings())
def test_every_weighting_builds_and_gives_finite_total(name: str) -> None:
    torch.manual_seed(0)
    w = build_weighting(name, ["a", "b", "c"])
    assert isinstance(w, LossWeighting) and w.grads in ("none", "last", "all")
    total, weights = w(dict(zip("ab", torch.rand(2) + 0.1)))
    assert total.ndim == 0 and torch.isfinite(total)
    assert set(weights) == {"a", "b"} and all(math.isfinite(v) for v in weights.values())


def test_expected_strategies_registered() -> None:
    assert {"static", "uncertainty", "dwa", "gradnorm", "pcgrad"} <= set(list_weightings())
    assert weighting_options("gradnorm") == {"alpha": 1.5, "lr": 0.025}
    assert weighting_options("dwa") == {"temperature": 2.0}


def test_unknown_name_lists_known() -> None:
    with pytest.raises(KeyError, match="uncertainty"):
        build_weighting("nope", ["a"])


def test_unknown_option_names_valid_ones() -> None:
    with pytest.raises(TypeError, match="temperature"):
        build_weighting("dwa", ["a"], temp=1.0)


# ---------------------------------------------------------------- static
def test_static_sums_exactly_over_present_tasks() -> None:
    w = build_weighting("static", ["a", "b", "c"], {"a": 2.0, "b": 0.5})
    total, weights = w(losses(a=1.5, b=3.0, c=0.25))
    assert total.item() == 2.0 * 1.5 + 0.5 * 3.0 + 0.25
    assert weights == {"a": 2.0, "b": 0.5, "c": 1.0}
    total, weights = w(losses(b=3.0))  # a batch carrying one task only
    assert total.item() == 1.5 and weights == {"b": 0.5}


def test_unknown_task_is_keyerror_naming_known() -> None:
    w = build_weighting("static", ["a", "b"])
    with pytest.raises(KeyError, match=r"\['a', 'b'\]"):
        w(losses(a=1.0, zzz=2.0))
    with pytest.raises(KeyError, match="known tasks"):
        build_weighting("static", ["a"], {"b": 1.0})


# ---------------------------------------------------------------- uncertainty
def test_uncertainty_total_and_log_var_gradients() -> None:
    w = build_weighting("uncertainty", ["a", "b", "c"], {"a": 7.0})  # static weights ignored
    s = T([0.5, -1.0, 2.0])
    with torch.no_grad():
        w.log_vars.copy_(s)
    L = {"a": T(2.0), "c": T(0.3)}
    total, weights = w(L)
    expected = math.exp(-0.5) * 2.0 + 0.5 + math.exp(-2.0) * 0.3 + 2.0
    assert total.item() == pytest.approx(expected, abs=1e-6)
    assert weights == pytest.approx({"a": math.exp(-0.5), "c": math.exp(-2.0)}, abs=1e-6)
    total.backward()
    grad = [1 - math.exp(-0.5) * 2.0, 0.0, 1 - math.exp(-2.0) * 0.3]  # d/ds (e^-s L + s); absent -> 0
    torch.testing.assert_close(w.log_vars.grad, T(grad), atol=1e-6, rtol=0)


# ---------------------------------------------------------------- dwa
def test_dwa_weights_and_state_dict_roundtrip() -> None:
    w = build_weighting("dwa", ["a", "b", "c"], temperature=2.0)
    assert w(losses(a=1.0, b=1.0))[1] == {"a": 1.0, "b": 1.0}  # epoch 1
    w.epoch_end({"a": 1.0, "b": 2.0, "c": 4.0})
    assert w.current_weights() == {"a": 1.0, "b": 1.0, "c": 1.0}  # epoch 2
    w.epoch_end({"a": 0.5, "b": 2.0, "c": 6.0})
    r = [0.5, 1.0, 1.5]
    z = sum(math.exp(x / 2.0) for x in r)
    expected = {t: 3 * math.exp(x / 2.0) / z for t, x in zip("abc", r)}
    got = w.current_weights()
    assert got == pytest.approx(expected, abs=1e-6) and sum(got.values()) == pytest.approx(3.0)
    total, weights = w(losses(a=1.0, c=2.0))
    assert total.item() == pytest.approx(expected["a"] + 2 * expected["c"], abs=1e-6)
    assert set(weights) == {"a", "c"}

    fresh = build_weighting("dwa", ["a", "b", "c"])
    fresh.load_state_dict(w.state_dict())
    assert fresh.current_weights() == pytest.approx(expected, abs=1e-6)


def test_dwa_task_missing_from_an_epoch_gets_weight_one() -> None:
    w = build_weighting("dwa", ["a", "b", "c"], temperature=1.0)
    w.epoch_end({"a": 1.0, "b": 1.0, "c": 1.0})
    w.epoch_end({"a": 2.0, "b": 1.0})  # c missing: weight 1, softmax over a, b with K = 2
    z = math.exp(2.0) + math.exp(1.0)
    assert w.current_weights() == pytest.approx({"a": 2 * math.exp(2) / z, "b": 2 * math.exp(1) / z, "c": 1.0})


# ---------------------------------------------------------------- gradnorm
def test_gradnorm_one_step_by_hand() -> None:
    w = build_weighting("gradnorm", ["a", "b"], alpha=1.5, lr=0.025)
    assert w.grads == "last"
    L = losses(a=2.0, b=4.0)
    total, weights = w(L)
    assert total.item() == 6.0 and weights == {"a": 1.0, "b": 1.0}
    # ||g_a|| = 3 (the list is concatenated: [2,2,1] and [0]), ||g_b|| = 1
    grads = {"a": [T([[2.0, 2.0]]), T([1.0])], "b": [T([[1.0, 0.0]]), None]}
    w.observe(L, grads)
    # first step: L(0) = L, so L~ = 1, r = 1; G = (3, 1), Gbar = 2 = target
    # dL_grad/dw = sign(G - target) * ||g|| = (+3, -1)
    pre = [1 - 0.025 * 3, 1 + 0.025 * 1]  # (0.925, 1.025)
    post = [2 * x / sum(pre) for x in pre]
    torch.testing.assert_close(w.task_weights, T(post), atol=1e-6, rtol=0)
    assert w.last_grad_loss == pytest.approx(2.0)
    assert w.task_weights.sum().item() == pytest.approx(2.0)
    assert w.task_weights[0] < w.task_weights[1]  # larger gradient norm -> smaller weight

    # second step: a's loss fell to 1 (L~ = 0.5), b's stayed (L~ = 1): r = (2/3, 4/3)
    w1 = w.task_weights.clone()
    L2 = losses(a=1.0, b=4.0)
    grads2 = {"a": [T([[1.0, 0.0]]), None], "b": [T([[1.0, 0.0]]), None]}
    w.observe(L2, grads2)
    G = w1 * 1.0
    target = G.mean() * T([2 / 3, 4 / 3]) ** 1.5
    pre2 = w1 - 0.025 * torch.sign(G - target) * 1.0
    torch.testing.assert_close(w.task_weights, pre2 * 2 / pre2.sum(), atol=1e-6, rtol=0)
    assert w(L2)[0].requires_grad is False  # weights are constants to the model loss


def test_gradnorm_weights_are_not_module_parameters() -> None:
    w = build_weighting("gradnorm", ["a", "b"])
    assert list(w.parameters()) == [] and "task_weights" in w.state_dict()


# ---------------------------------------------------------------- pcgrad_project
def test_pcgrad_two_conflicting_vectors() -> None:
    g1, g2 = T([1.0, 0.0]), T([-1.0, 1.0])
    for shuffle in (False, True):
        p1, p2 = pcgrad_project([g1, g2], generator=torch.Generator().manual_seed(0), shuffle=shuffle)
        torch.testing.assert_close(p1, T([0.5, 0.5]), atol=1e-6, rtol=0)
        torch.testing.assert_close(p2, T([0.0, 1.0]), atol=1e-6, rtol=0)
    assert g1.tolist() == [1.0, 0.0] and g2.tolist() == [-1.0, 1.0]  # inputs untouched


def test_pcgrad_three_tasks_by_hand() -> None:
    g = [T([1.0, 0.0]), T([1.0, 1.0]), T([-1.0, 0.5])]
    out = pcgrad_project(g, shuffle=False)
    # task 0: g1 ok; vs g2: dot -1, ||g2||²=1.25 -> [1,0] + 0.8*[-1,0.5] = [0.2, 0.4]
    # task 1: g0 ok; vs g2: dot -0.5 -> [1,1] + 0.4*[-1,0.5] = [0.6, 1.2]
    # task 2: vs g0: dot -1 -> [0, 0.5]; vs g1 (original): dot 0.5 >= 0 -> unchanged
    for o, e in zip(out, ([0.2, 0.4], [0.6, 1.2], [0.0, 0.5])):
        torch.testing.assert_close(o, T(e), atol=1e-6, rtol=0)


def test_pcgrad_nonconflicting_exact_zero_and_shapes() -> None:
    g = [torch.rand(2, 3, 4), torch.rand(2, 3, 4), torch.zeros(2, 3, 4)]
    before = [x.clone() for x in g]
    out = pcgrad_project(g, generator=torch.Generator().manual_seed(1))
    for o, x in zip(out, before):
        assert o.shape == x.shape and o.dtype == x.dtype and torch.equal(o, x)
    assert all(torch.equal(a, b) for a, b in zip(g, before))
    o1, o2 = pcgrad_project([T([1.0, 2.0]), T([0.0, 0.0])])  # zero g_j: skipped, no NaN
    assert torch.equal(o1, T([1.0, 2.0])) and torch.equal(o2, T([0.0, 0.0]))


# ---------------------------------------------------------------- pcgrad combine
def test_pcgrad_combine_matches_manual() -> None:
    w = build_weighting("pcgrad", ["a", "b"], {"a": 2.0, "b": 1.0}, seed=3)
    assert w.grads == "all"
    grads = {"a": [T([[0.5]]), T([0.0]), None], "b": [T([[-1.0]]), None, None]}
    out = w.combine({"a": grads["a"], "b": [T([[-1.0]]), T([1.0]), None]})
    # weighted flats: a = [1, 0], b = [-1, 1] -> projected [0.5, 0.5] + [0, 1] = [0.5, 1.5]
    assert out is not None and out[2] is None
    torch.testing.assert_close(out[0], T([[0.5]]), atol=1e-6, rtol=0)
    torch.testing.assert_close(out[1], T([1.5]), atol=1e-6, rtol=0)
    out = w.combine(grads)  # b's None on param 1 counts as zeros: flats [1, 0], [-1, 0]
    torch.testing.assert_close(out[0], T([[0.0]]), atol=1e-6, rtol=0)
    torch.testing.assert_close(out[1], T([0.0]), atol=1e-6, rtol=0)
    total, weights = w(losses(a=1.0, b=3.0))
    assert total.item() == 5.0 and weights == {"a": 2.0, "b": 1.0}


def test_base_hooks_are_noops() -> None:
    w = build_weighting("static", ["a"])
    assert w.grads == "none" and w.combine({"a": [T([1.0])]}) is None
    w.observe(losses(a=1.0), {}), w.epoch_end({"a": 1.0})


# ---------------------------------------------------------------- gradient_cosines
def test_gradient_cosines_by_hand() -> None:
    grads = {
        "a": [T([1.0, 0.0]), T([5.0])],
        "b": [T([1.0, 1.0]), None],  # param 1 skipped for every pair with b
        "c": [T([0.0, 0.0]), T([-2.0])],
    }
    cos = gradient_cosines(grads)
    assert list(cos) == [("a", "b"), ("a", "c"), ("b", "c")]
    assert cos[("a", "b")] == pytest.approx(1 / math.sqrt(2))
    assert cos[("a", "c")] == pytest.approx(-10 / (math.sqrt(26) * 2))
    assert cos[("b", "c")] == 0.0
