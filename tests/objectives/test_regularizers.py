"""L2 and L2-SP penalties: hand computations on a tiny network."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmfuse.objectives.regularizers import default_exclude, l2_penalty, l2_sp, select_parameters, snapshot


def tiny() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))


def sq(t: torch.Tensor) -> float:
    return float(t.detach().double().square().sum())


def test_default_selects_only_linear_weight_matrices() -> None:
    m = tiny()
    names = [n for n, _ in select_parameters(m.named_parameters())]
    assert names == ["0.weight", "2.weight"]
    expected = sq(m[0].weight) + sq(m[2].weight)
    assert l2_penalty(m.named_parameters()).item() == pytest.approx(expected, rel=1e-6)
    assert l2_penalty(dict(m.named_parameters()), lam=0.1).item() == pytest.approx(0.1 * expected, rel=1e-6)


def test_default_exclude_rule() -> None:
    w2 = torch.zeros(2, 2)
    assert default_exclude("x.bias", torch.zeros(2)) and default_exclude("scale", torch.zeros(()))
    assert default_exclude("enc.LayerNorm.weight", w2) and default_exclude("h.ln_1.weight", w2)
    assert default_exclude("a.norm1.weight", w2) and not default_exclude("fc.weight", w2)


def test_string_and_callable_exclude() -> None:
    m = tiny()
    everything = sum(sq(p) for p in m.parameters())
    # substring: drops "1.weight"/"1.bias" (the LayerNorm); glob: drops every bias
    got = l2_penalty(m.named_parameters(), exclude=["1.", "*.bias"], lam=2.0).item()
    assert got == pytest.approx(2.0 * (sq(m[0].weight) + sq(m[2].weight)), rel=1e-6)
    got = l2_penalty(m.named_parameters(), exclude="2.").item()  # a single string works too
    assert got == pytest.approx(everything - sq(m[2].weight) - sq(m[2].bias), rel=1e-6)
    got = l2_penalty(m.named_parameters(), exclude=lambda n, p: False).item()
    assert got == pytest.approx(everything, rel=1e-6)


def test_frozen_skipped_and_gradient_is_2_lam_theta() -> None:
    m = tiny()
    m[2].weight.requires_grad_(False)
    loss = l2_penalty(m.named_parameters(), lam=0.5)
    assert loss.item() == pytest.approx(0.5 * sq(m[0].weight), rel=1e-6)
    loss.backward()
    torch.testing.assert_close(m[0].weight.grad, 2 * 0.5 * m[0].weight.detach())
    assert m[0].bias.grad is None and m[1].weight.grad is None and m[2].weight.grad is None


def test_nothing_selected_is_zero() -> None:
    out = l2_penalty([("b", nn.Parameter(torch.ones(3)))])
    assert out.shape == () and out.item() == 0.0


def test_l2_sp_zero_at_start_then_grows() -> None:
    m = tiny()
    ref = snapshot(m.named_parameters())
    assert ref["0.weight"] is not m[0].weight and not ref["0.weight"].requires_grad
    assert l2_sp(m.named_parameters(), ref, lam=3.0).item() == 0.0
    n = m[0].weight.numel()  # 12
    with torch.no_grad():
        m[0].weight.add_(0.1)
    assert l2_sp(m.named_parameters(), ref, lam=3.0).item() == pytest.approx(3.0 * n * 0.01, rel=1e-5)
    with torch.no_grad():
        m[0].weight.add_(0.1)  # 0.2 from the start
        m[0].bias.add_(0.2)  # biases are pulled back too (no default exclusion for L2-SP)
    assert l2_sp(m.named_parameters(), ref, lam=3.0).item() == pytest.approx(3.0 * (n + 4) * 0.04, rel=1e-5)
    got = l2_sp(m.named_parameters(), ref, lam=3.0, exclude=["bias"]).item()
    assert got == pytest.approx(3.0 * n * 0.04, rel=1e-5)
    # only names in the reference count (e.g. a new head)
    assert l2_sp(m.named_parameters(), {"2.weight": ref["2.weight"]}).item() == 0.0
    l2_sp(m.named_parameters(), ref).backward()
    torch.testing.assert_close(m[0].bias.grad, torch.full((4,), 0.4))


def test_l2_sp_shape_mismatch() -> None:
    m = tiny()
    with pytest.raises(ValueError, match="0.weight"):
        l2_sp(m.named_parameters(), {"0.weight": torch.zeros(2, 2)})
