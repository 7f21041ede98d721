"""The low-precision policy: 16-bit products accumulated in float32, float32 gates and cell state.

Bounds were measured over 6 seeds on this file's problem (T=200, B=4, D=8, H=16, weights twice the
init scale) and are asserted with a margin of 2-3x; see docs/performance.md, "Low precision".
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import problem, rel_err

import jlstm

LOWP = [jnp.bfloat16, jnp.float16]
T, B, D, H = 200, 4, 8, 16
# dtype -> (max |hs - hs_f32| on the same rounded inputs, the same against the unrounded float32
# inputs, relative gradient error manual vs autodiff and manual vs float32). Measured maxima over 6
# seeds: bfloat16 8.3e-3, 4.1e-2, 1.3e-2, 2.2e-2; float16 8.0e-4, 6.6e-3, 1.3e-3, 1.0e-3. The rounding
# of h to 16 bits each step dominates (u = 2^-8 = 3.9e-3 bfloat16, 2^-11 = 4.9e-4 float16); a flipped
# rounding (another machine's float32 summation order) moves them little: seed 0 with h0 moved by one
# 16-bit ulp, 20 ways, stays within 0.4 of the bounds. Other seeds can be chaotic (40 seeds: up to 4x).
BOUNDS = {jnp.bfloat16: (2e-2, 1e-1, 5e-2, 5e-2), jnp.float16: (2e-3, 2e-2, 5e-3, 5e-3)}


@pytest.fixture(autouse=True)
def _full_float32_products():
    """The float32 references at full float32 on a GPU too (its default, TF32, has float16's 10-bit
    mantissa); the 16-bit products are exact in float32 either way."""
    with jax.default_matmul_precision("highest"):
        yield


def _cast(tree, dtype):
    return jax.tree.map(lambda a: a.astype(dtype), tree)


def _problem(dtype, seed=0):
    """The float32 problem and its copy rounded to ``dtype``."""
    p32 = problem(jax.random.key(seed), (B,), T=T, D=D, H=H, dtype=jnp.float32)
    return p32, _cast(p32, dtype)


def _loss(params, xs, carry, backward="manual", **kw):
    """Touches hs, h and c (as helpers.full_loss), computed in float32 whatever the compute dtype."""
    hs, (h, c) = jlstm.lstm(params, xs, carry, backward=backward, **kw)
    hs, h = hs.astype(jnp.float32), h.astype(jnp.float32)
    w = jnp.sin(jnp.arange(hs.size, dtype=jnp.float32)).reshape(hs.shape)
    return jnp.sum(w * hs) + 0.5 * jnp.sum(hs**2) + jnp.sum(jnp.cos(h)) + 0.3 * jnp.sum(c**3)


_fwd = jax.jit(lambda p, xs, carry: jlstm.lstm(p, xs, carry))
_grad = jax.jit(jax.grad(_loss, argnums=(0, 1, 2)), static_argnames="backward")


@pytest.mark.parametrize("dtype", LOWP, ids=lambda d: d.__name__)
def test_dtypes_follow_the_policy_and_values_are_finite(dtype):
    _, (params, xs, carry) = _problem(dtype)
    hs, (h, c) = _fwd(params, xs, carry)
    assert hs.dtype == h.dtype == dtype  # outputs in the compute dtype
    assert c.dtype == jnp.float32  # the cell state stays float32
    assert hs.shape == (B, T, H) and bool(jnp.all(jnp.isfinite(hs))) and bool(jnp.all(jnp.isfinite(c)))
    for backward in ("manual", "autodiff"):
        g_params, g_xs, g_carry = _grad(params, xs, carry, backward=backward)
        # Every cotangent has its primal's dtype (the user's carry was 16-bit, c included).
        primals = jax.tree.leaves((params, xs, carry))
        for got, want in zip(jax.tree.leaves((g_params, g_xs, g_carry)), primals):
            assert got.dtype == want.dtype and got.shape == want.shape
            assert bool(jnp.all(jnp.isfinite(got))) and float(jnp.max(jnp.abs(got))) > 0


@pytest.mark.parametrize("dtype", LOWP, ids=lambda d: d.__name__)
def test_error_against_float32_is_bounded(dtype):
    hs_same, hs_orig, _, _ = BOUNDS[dtype]
    p32, plow = _problem(dtype)
    hs, (_, c) = _fwd(*plow)
    hs_r, (_, c_r) = _fwd(*_cast(plow, jnp.float32))  # float32 on the very same (rounded) numbers
    hs_o, _ = _fwd(*p32)  # float32 on the unrounded numbers: adds the rounding of the inputs
    err_same = float(jnp.max(jnp.abs(hs.astype(jnp.float32) - hs_r)))
    err_orig = float(jnp.max(jnp.abs(hs.astype(jnp.float32) - hs_o)))
    assert err_same < hs_same, err_same
    assert err_orig < hs_orig, err_orig
    assert float(jnp.max(jnp.abs(c - c_r))) < hs_same
    # Not trivially equal: the 16-bit run really computed something different from float32.
    assert err_same > 0


@pytest.mark.parametrize("dtype", LOWP, ids=lambda d: d.__name__)
def test_manual_and_autodiff_gradients_agree_and_match_float32(dtype):
    _, _, m_vs_a, m_vs_f32 = BOUNDS[dtype]
    _, plow = _problem(dtype)
    g_manual = _cast(_grad(*plow, backward="manual"), jnp.float32)
    g_auto = _cast(_grad(*plow, backward="autodiff"), jnp.float32)
    g_f32 = _grad(*_cast(plow, jnp.float32), backward="manual")
    assert rel_err(g_manual, g_auto) < m_vs_a
    assert rel_err(g_manual, g_f32) < m_vs_f32
    assert rel_err(g_auto, g_f32) < m_vs_f32


@pytest.mark.parametrize("dtype", LOWP, ids=lambda d: d.__name__)
def test_remat_follows_the_same_policy(dtype):
    _, (params, xs, carry) = _problem(dtype)
    lengths = jnp.array([200, 13, 0, 150])
    grad = jax.grad(_loss, argnums=(0, 1, 2))
    g = grad(params, xs, carry, lengths=lengths)
    g_remat = grad(params, xs, carry, lengths=lengths, remat=16)
    assert jax.tree.map(lambda a: a.dtype, g_remat) == jax.tree.map(lambda a: a.dtype, g)
    # The same arithmetic (the remat forward recomputes chunk by chunk): equal on this CPU (bfloat16 0,
    # float16 1.9e-8), but where float32 sums run in another order a 16-bit rounding of h can flip,
    # and one flip moves the gradient by up to 2.6e-3 (bfloat16) / 2.2e-4 (float16); a few flips are
    # what manual vs autodiff (the same math in another order) is bounded for.
    assert rel_err(_cast(g_remat, jnp.float32), _cast(g, jnp.float32)) < BOUNDS[dtype][2]


def test_float16_large_preactivations_do_not_overflow():
    """|x . W| ~ 1e5 > float16's largest 65504: a float16 product overflows, a float32 sum does not."""
    params, xs, carry = problem(jax.random.key(1), (B,), T=20, D=D, H=H, dtype=jnp.float32)
    params = params._replace(W=jnp.sign(params.W) * 300.0)
    xs = jnp.sign(xs) * 300.0
    p16, xs16, c16 = _cast((params, xs, carry), jnp.float16)
    # The premise: float16 products (as in a float16 everything LSTM) overflow here.
    assert not bool(jnp.all(jnp.isfinite(xs16 @ p16.W)))
    hs, (h, c) = jlstm.lstm(p16, xs16, c16)
    hs32, (_, c32) = jlstm.lstm(params, xs, carry)
    assert c.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(c))) and bool(jnp.all(jnp.isfinite(hs)))
    # Saturated gates are exactly 0 or 1 in both runs, so the states agree closely: the unsaturated
    # gates see h rounded to float16 (u = 4.9e-4) each step; measured 2.7e-4 (<= 3.6e-4 over 6 seeds).
    np.testing.assert_allclose(c, c32, atol=2e-2)
    g = jax.grad(_loss, argnums=(0, 1))(p16, xs16, c16)
    assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(g))


def test_a_float32_carry_beyond_float16_range_survives():
    """The initial c enters in float32 under float16 compute: 1e5 stays 1e5 (float16 would give inf)."""
    _, (params, xs, carry) = _problem(jnp.float16)
    c0 = jnp.full((B, H), 1e5, jnp.float32)
    hs, (h, c) = jlstm.lstm(params, xs[:, :3], (carry.h, c0))
    assert bool(jnp.all(jnp.isfinite(c))) and bool(jnp.all(jnp.isfinite(hs)))
    # Three steps change c by at most |a * i| <= 1 each (f <= 1 can only shrink it, by at most 3e5).
    assert float(jnp.max(c)) > 1e4


def test_float32_params_with_bfloat16_xs_compute_in_float32(key):
    params, xs, carry = problem(key, (B,), T=7, D=D, H=H, dtype=jnp.float32)
    xs16 = xs.astype(jnp.bfloat16)
    hs, (h, c) = jlstm.lstm(params, xs16, carry)
    want, (h_w, c_w) = jlstm.lstm(params, xs16.astype(jnp.float32), carry)
    assert hs.dtype == h.dtype == c.dtype == jnp.float32  # result_type promotes to float32
    np.testing.assert_array_equal(hs, want)
    g_xs = jax.grad(lambda x: jnp.sum(jlstm.lstm(params, x, carry)[0]))(xs16)
    assert g_xs.dtype == jnp.bfloat16


def test_compute_dtype_bfloat16_on_float32_params():
    p32, _ = _problem(jnp.bfloat16)
    params, xs, carry = p32
    hs, (h, c) = jlstm.lstm(params, xs, carry, compute_dtype=jnp.bfloat16)
    assert hs.dtype == h.dtype == jnp.bfloat16 and c.dtype == jnp.float32
    hs_f32, _ = jlstm.lstm(params, xs, carry)
    assert 0 < float(jnp.max(jnp.abs(hs.astype(jnp.float32) - hs_f32))) < BOUNDS[jnp.bfloat16][1]
    g_manual = jax.grad(_loss)(params, xs, carry, compute_dtype=jnp.bfloat16)
    g_auto = jax.grad(_loss)(params, xs, carry, "autodiff", compute_dtype=jnp.bfloat16)
    g_f32 = jax.grad(_loss)(params, xs, carry)
    assert all(a.dtype == jnp.float32 for a in g_manual)  # float32 master weights get float32 gradients
    assert rel_err(g_manual, g_f32) < BOUNDS[jnp.bfloat16][3]
    assert rel_err(g_manual, g_auto) < BOUNDS[jnp.bfloat16][2]
    # Accumulated in float32 and never rounded to bfloat16 on the way out.
    assert bool(jnp.any(g_manual.U != g_manual.U.astype(jnp.bfloat16).astype(jnp.float32)))


def test_compute_dtype_float32_is_the_default_exactly(key):
    params, xs, carry = problem(key, (3,), T=6, dtype=jnp.float32)
    a = jax.grad(_loss, argnums=(0, 1, 2))(params, xs, carry)
    b = jax.grad(_loss, argnums=(0, 1, 2))(params, xs, carry, compute_dtype="float32")
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("bad", [jnp.int32, "complex64", "no-such-dtype", 3])
def test_compute_dtype_must_be_a_real_float(key, bad):
    params, xs, _ = problem(key, (2,), T=3, dtype=jnp.float32)
    with pytest.raises(TypeError, match="jlstm.lstm: compute_dtype must be None or a real floating dtype"):
        jlstm.lstm(params, xs, compute_dtype=bad)


def test_compute_dtype_float64_needs_x64(key):
    params, xs, _ = problem(key, (2,), T=3, dtype=jnp.float32)
    with jax.enable_x64(False):
        with pytest.raises(ValueError, match="compute_dtype=float64 needs jax_enable_x64"):
            jlstm.lstm(params, xs, compute_dtype=jnp.float64)


def test_compute_dtype_is_keyword_only(key):
    params, xs, _ = problem(key, (2,), T=3, dtype=jnp.float32)
    with pytest.raises(TypeError):
        jlstm.lstm(params, xs, None, jnp.bfloat16)  # a fourth positional argument


@pytest.mark.parametrize("dtype", LOWP, ids=lambda d: d.__name__)
def test_cell_follows_the_policy_and_is_one_step_of_lstm(dtype):
    _, (params, xs, carry) = _problem(dtype)
    hs, (h_T, c_T) = jlstm.lstm(params, xs[:, :2], carry)
    state = carry
    for t in range(2):
        state, h = jlstm.cell(params, state, xs[:, t])
        assert h.dtype == dtype and state.c.dtype == jnp.float32
        # Equal up to float32 rounding (XLA fuses the scan's and the cell's arithmetic differently):
        # h is 16-bit, one ulp of bfloat16 is <= 2^-7 = 7.8e-3 relative (measured equal here).
        np.testing.assert_allclose(h.astype(jnp.float32), hs[:, t].astype(jnp.float32), rtol=1e-2, atol=1e-6)
    # c is float32: 2 steps of D + H exact 16-bit products summed, n * eps32 = 5.7e-6 (measured 2.4e-7).
    np.testing.assert_allclose(state.c, c_T, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", LOWP, ids=lambda d: d.__name__)
def test_lstm_trace_matches_the_manual_gradient(dtype):
    _, (params, xs, carry) = _problem(dtype)
    xs = xs[:, :20]
    g_hs = jnp.ones((B, 20, H), dtype)
    dparams, dxs, dcarry, trace = jlstm.lstm_trace(params, xs, g_hs, carry)
    g = jax.grad(lambda p, x: jnp.sum(jlstm.lstm(p, x, carry)[0].astype(jnp.float32)), argnums=(0, 1))
    g_params, g_xs = g(params, xs)
    assert [a.dtype for a in dparams] == [dtype] * 3 and dxs.dtype == dtype
    for a, b in zip(jax.tree.leaves((dparams, dxs)), jax.tree.leaves((g_params, g_xs))):
        np.testing.assert_array_equal(a, b)
    assert trace.delta_state.dtype == jnp.float32


def test_tbptt_with_bfloat16_compute_keeps_a_float32_state():
    key = jax.random.key(3)
    params = jlstm.init(key, 3, 4, dtype=jnp.bfloat16)
    xs = jax.random.normal(key, (2, 12, 3), jnp.bfloat16)
    ys = jnp.zeros((2, 12, 4), jnp.bfloat16)

    def chunk_loss(p, batch, carry):
        hs, final = jlstm.lstm(p, batch[0], carry)
        return jlstm.l2_loss(hs.astype(jnp.float32), batch[1].astype(jnp.float32)), final

    c0 = jlstm.LSTMState(jnp.zeros((2, 4), jnp.bfloat16), jnp.zeros((2, 4), jnp.bfloat16))
    loss, grads, final = jlstm.tbptt_value_and_grad(chunk_loss, params, (xs, ys), c0, chunk=4)
    assert final.c.dtype == jnp.float32 and final.h.dtype == jnp.bfloat16
    assert all(g.dtype == jnp.bfloat16 for g in grads)
    # Against the same computation in float32: bfloat16 rounding of h only (u = 3.9e-3; measured loss
    # 9e-4, gradients 3e-3 over seeds 3-6), so 5u and 13u.
    p32 = jax.tree.map(lambda a: a.astype(jnp.float32), params)
    c32 = jax.tree.map(lambda a: a.astype(jnp.float32), c0)
    loss32, grads32, _ = jlstm.tbptt_value_and_grad(
        chunk_loss, p32, (xs.astype(jnp.float32), ys.astype(jnp.float32)), c32, chunk=4
    )
    assert abs(float(loss) - float(loss32)) < 2e-2 * abs(float(loss32))
    for g, g32 in zip(grads, grads32):
        assert float(jnp.linalg.norm(g.astype(jnp.float32) - g32)) < 5e-2 * float(jnp.linalg.norm(g32))
