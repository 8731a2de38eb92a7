"""GAE and masked whitening: plain-Python oracle, identities, garbage isolation, hand cases."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from mmfuse.rl import compute_gae, masked_mean, masked_var, masked_whiten

METHODS = ("loop", "matrix")


def oracle_row(r, v, m, d, boot, gamma, lam):
    """Per-row reference with lists of floats: compact valid tokens, then backward recursion."""
    idx = [t for t in range(len(r)) if m[t]]
    adv = [0.0] * len(r)
    ret = [0.0] * len(r)
    next_v, next_a = (boot if boot is not None else 0.0), 0.0
    for t in reversed(idx):
        keep = 0.0 if d[t] else 1.0
        delta = r[t] + gamma * next_v * keep - v[t]
        a = delta + gamma * lam * keep * next_a
        adv[t], ret[t] = a, a + v[t]
        next_v, next_a = v[t], a
    return adv, ret


def oracle(r, v, m, d, boot, gamma, lam):
    rows = [
        oracle_row(r[b].tolist(), v[b].tolist(), m[b].tolist(), d[b].tolist(),
                   None if boot is None else float(boot[b]), gamma, lam)
        for b in range(r.shape[0])
    ]
    adv = torch.tensor([a for a, _ in rows], dtype=torch.float64)
    ret = torch.tensor([x for _, x in rows], dtype=torch.float64)
    return adv, ret


def random_case(B: int, T: int, seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    r = torch.randn(B, T, generator=g, dtype=dtype)
    v = torch.randn(B, T, generator=g, dtype=dtype)
    m = torch.rand(B, T, generator=g) > 0.3  # interior holes
    m[0] = True  # one full row
    m[1] = False  # one empty row
    m[2, 0] = False  # leading hole
    m[3, -1] = False  # trailing hole
    d = torch.rand(B, T, generator=g) < 0.2  # dones mid-row, some on masked slots
    d[4, :] = ~m[4]  # dones only on masked slots of row 4: must be ignored
    boot = torch.randn(B, generator=g, dtype=dtype)
    return r, v, m, d, boot


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("bootstrap", [True, False])
def test_against_oracle(method: str, bootstrap: bool) -> None:
    for seed, gamma, lam in itertools.product(range(3), (1.0, 0.9), (0.0, 0.5, 0.95, 1.0)):
        r, v, m, d, boot = random_case(6, 9, seed)
        lv = boot if bootstrap else None
        adv, ret = compute_gae(r, v, m, d, lv, gamma=gamma, lam=lam, method=method)
        eadv, eret = oracle(r, v, m, d, lv, gamma, lam)
        torch.testing.assert_close(adv, eadv, rtol=0, atol=1e-10)
        torch.testing.assert_close(ret, eret, rtol=0, atol=1e-10)


def test_mask_and_dones_accept_float_int() -> None:
    r, v, m, d, boot = random_case(6, 9, 7)
    ref = compute_gae(r, v, m, d, boot, gamma=0.9, lam=0.8)
    for cast in (torch.float32, torch.int64):
        out = compute_gae(r, v, m.to(cast), d.to(cast), boot, gamma=0.9, lam=0.8)
        for a, b in zip(out, ref):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("method", METHODS)
def test_lambda_zero_is_td_error(method: str) -> None:
    r, v, m, d, boot = random_case(6, 9, 1)
    gamma = 0.9
    adv, _ = compute_gae(r, v, m, d, boot, gamma=gamma, lam=0.0, method=method)
    for b in range(6):
        idx = [t for t in range(9) if m[b, t]]
        for i, t in enumerate(idx):
            v_next = float(v[b, idx[i + 1]]) if i + 1 < len(idx) else float(boot[b])
            v_next = 0.0 if d[b, t] else v_next
            assert float(adv[b, t]) == pytest.approx(float(r[b, t]) + gamma * v_next - float(v[b, t]), abs=1e-12)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("bootstrap", [True, False])
def test_lambda_one_is_return_minus_value(method: str, bootstrap: bool) -> None:
    r, v, m, d, boot = random_case(6, 9, 2)
    gamma = 0.9
    adv, ret = compute_gae(r, v, m, d, boot if bootstrap else None, gamma=gamma, lam=1.0, method=method)
    for b in range(6):
        idx = [t for t in range(9) if m[b, t]]
        for i, t in enumerate(idx):
            G, k, terminal = 0.0, 0, False
            for s in idx[i:]:  # discounted valid rewards up to the first done (inclusive) or the end
                G += gamma**k * float(r[b, s])
                k += 1
                if d[b, s]:
                    terminal = True
                    break
            if not terminal and bootstrap:
                G += gamma**k * float(boot[b])
            assert float(adv[b, t]) == pytest.approx(G - float(v[b, t]), abs=1e-10)
            assert float(ret[b, t]) == pytest.approx(G, abs=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_garbage_in_masked_slots_never_leaks(method: str) -> None:
    r, v, m, d, boot = random_case(6, 9, 3)
    clean = compute_gae(r, v, m, d, boot, gamma=0.9, lam=0.95, method=method)
    for junk in (float("nan"), float("inf"), -float("inf"), 1e9):
        r2 = torch.where(m, r, torch.full_like(r, junk))
        v2 = torch.where(m, v, torch.full_like(v, junk))
        adv, ret = compute_gae(r2, v2, m, d, boot, gamma=0.9, lam=0.95, method=method)
        for out, ref in zip((adv, ret), clean):
            assert torch.isfinite(out).all()
            torch.testing.assert_close(out, ref, rtol=0, atol=0)
            assert (out[~m] == 0).all()
            assert (out[1] == 0).all()  # row with no valid token


@pytest.mark.parametrize("method", METHODS)
def test_hand_case(method: str) -> None:
    r = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    v = torch.tensor([[0.5, 0.6, 0.7]], dtype=torch.float64)
    adv, ret = compute_gae(r, v, gamma=1.0, lam=0.95, method=method)
    # deltas: 0 + 0.6 - 0.5 = 0.1, 0 + 0.7 - 0.6 = 0.1, 1 + 0 - 0.7 = 0.3 (terminal end)
    a2 = 0.3
    a1 = 0.1 + 0.95 * a2  # 0.385
    a0 = 0.1 + 0.95 * a1  # 0.46575
    torch.testing.assert_close(adv, torch.tensor([[a0, a1, a2]], dtype=torch.float64))
    torch.testing.assert_close(adv, torch.tensor([[0.46575, 0.385, 0.3]], dtype=torch.float64))
    torch.testing.assert_close(ret, torch.tensor([[0.96575, 0.985, 1.0]], dtype=torch.float64))

    # bootstrap + a done: done at t=0 cuts both V_next and the carry
    lv = torch.tensor([2.0], dtype=torch.float64)
    dn = torch.tensor([[1, 0, 0]])
    adv, _ = compute_gae(r, v, dones=dn, last_value=lv, gamma=0.5, lam=0.5, method=method)
    d2 = 1.0 + 0.5 * 2.0 - 0.7  # 1.3
    d1 = 0.0 + 0.5 * 0.7 - 0.6  # -0.25
    d0 = 0.0 - 0.5  # -0.5, no bootstrap
    torch.testing.assert_close(adv, torch.tensor([[d0, d1 + 0.25 * d2, d2]], dtype=torch.float64))


@pytest.mark.parametrize("method", METHODS)
def test_hole_equals_compacted_row(method: str) -> None:
    r = torch.tensor([[0.2, 5.0, -0.3, 1.0]], dtype=torch.float64)
    v = torch.tensor([[0.5, -9.0, 0.6, 0.7]], dtype=torch.float64)
    m = torch.tensor([[1, 0, 1, 1]])
    lv = torch.tensor([0.4], dtype=torch.float64)
    adv, ret = compute_gae(r, v, m, last_value=lv, gamma=0.9, lam=0.7, method=method)
    cadv, cret = compute_gae(r[:, [0, 2, 3]], v[:, [0, 2, 3]], last_value=lv, gamma=0.9, lam=0.7, method=method)
    torch.testing.assert_close(adv[:, [0, 2, 3]], cadv, rtol=0, atol=1e-12)
    torch.testing.assert_close(ret[:, [0, 2, 3]], cret, rtol=0, atol=1e-12)
    assert adv[0, 1] == 0 and ret[0, 1] == 0


def test_dtype_device_shape_follow_values() -> None:
    r = torch.randn(2, 5, dtype=torch.float64)
    v = torch.randn(2, 5, dtype=torch.float32)
    for method in ("auto", *METHODS):
        adv, ret = compute_gae(r, v, method=method)
        assert adv.dtype == ret.dtype == torch.float32 and adv.shape == ret.shape == (2, 5)
    with pytest.raises(ValueError):
        compute_gae(r, v, method="bogus")


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_matrix_equals_loop_long(dtype: torch.dtype, tol: float) -> None:
    B, T = 4, 200
    g = torch.Generator().manual_seed(0)
    r = torch.randn(B, T, generator=g, dtype=dtype)
    v = torch.randn(B, T, generator=g, dtype=dtype)
    m = torch.rand(B, T, generator=g) > 0.25
    d = torch.rand(B, T, generator=g) < 0.02
    d[0] = False  # one long row without dones: carry over ~150 steps
    boot = torch.randn(B, generator=g, dtype=dtype)
    for gamma, lam in ((1.0, 1.0), (0.99, 0.95), (0.9, 0.5)):
        loop = compute_gae(r, v, m, d, boot, gamma=gamma, lam=lam, method="loop")
        mat = compute_gae(r, v, m, d, boot, gamma=gamma, lam=lam, method="matrix")
        auto = compute_gae(r, v, m, d, boot, gamma=gamma, lam=lam)  # T > 64 -> matrix
        for a, b, c in zip(loop, mat, auto):
            scale = a.abs().max().item()
            torch.testing.assert_close(b, a, rtol=tol, atol=tol * scale)
            torch.testing.assert_close(c, b, rtol=0, atol=0)
    if dtype == torch.float64:  # and both equal the oracle
        eadv, _ = oracle(r, v, m, d, boot, 0.99, 0.95)
        adv, _ = compute_gae(r, v, m, d, boot, gamma=0.99, lam=0.95, method="matrix")
        torch.testing.assert_close(adv, eadv, rtol=0, atol=1e-10)


# ----------------------------------------------------------------------------- whitening


def test_masked_mean_var_hand() -> None:
    x = torch.tensor([[1.0, 2.0, 99.0], [3.0, float("nan"), 4.0]], dtype=torch.float64)
    m = torch.tensor([[1, 1, 0], [1, 0, 1]])
    # valid: 1, 2, 3, 4 -> mean 2.5, squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5
    assert masked_mean(x, m).item() == pytest.approx(2.5)
    assert masked_mean(x, m).dim() == 0
    assert masked_var(x, m).item() == pytest.approx(5 / 4)
    assert masked_var(x, m, unbiased=True).item() == pytest.approx(5 / 3)
    assert masked_mean(x, torch.zeros_like(m)).item() == 0.0


def test_masked_whiten_hand() -> None:
    x = torch.tensor([[1.0, 2.0, 99.0], [3.0, float("nan"), 4.0]], dtype=torch.float64)
    m = torch.tensor([[1, 1, 0], [1, 0, 1]], dtype=torch.bool)
    out = masked_whiten(x, m)
    sd = math.sqrt(1.25 + 1e-8)
    exp = torch.tensor([[-1.5 / sd, -0.5 / sd, 0.0], [0.5 / sd, 0.0, 1.5 / sd]], dtype=torch.float64)
    torch.testing.assert_close(out, exp)
    assert (out[~m] == 0).all()
    sdu = math.sqrt(5 / 3 + 1e-8)
    centred = torch.tensor([-1.5, -0.5, 0.5, 1.5], dtype=torch.float64)
    torch.testing.assert_close(masked_whiten(x, m, unbiased=True)[m], centred / sdu)
    kept = masked_whiten(x, m, shift_mean=False)
    torch.testing.assert_close(kept[m], centred / sd + 2.5)
    assert (kept[~m] == 0).all()
    # whitened valid entries have mean 0, (biased) variance ~1
    assert masked_mean(out, m).abs().item() < 1e-12
    assert masked_var(out, m).item() == pytest.approx(1.0, abs=1e-6)


def test_masked_whiten_few_entries() -> None:
    x = torch.tensor([[5.0, float("nan"), 7.0]])
    one = torch.tensor([[0, 0, 1]])
    assert masked_whiten(x, one).tolist() == [[0.0, 0.0, 0.0]]  # centred only
    assert masked_whiten(x, one, shift_mean=False).tolist() == [[0.0, 0.0, 7.0]]  # unchanged
    assert masked_whiten(x, one, unbiased=True).tolist() == [[0.0, 0.0, 0.0]]
    none = torch.zeros_like(one)
    assert masked_whiten(x, none).tolist() == [[0.0, 0.0, 0.0]]
