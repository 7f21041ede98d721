"""The core: forward, the hand-written backward against autodiff and finite differences, jit/vmap."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import full_loss, problem, rel_err
from jax.test_util import check_grads

import jlstm


def test_init_shapes_forget_bias_and_dtype(key):
    p = jlstm.init(key, 3, 5, forget_bias=2.5, dtype=jnp.float32)
    assert p.W.shape == (3, 20) and p.U.shape == (5, 20) and p.b.shape == (20,)
    assert all(a.dtype == jnp.float32 for a in p)
    np.testing.assert_array_equal(p.b[10:15], 2.5)
    np.testing.assert_array_equal(p.b[:10], 0.0)
    np.testing.assert_array_equal(p.b[15:], 0.0)
    bound = 1 / np.sqrt(5)
    assert float(jnp.max(jnp.abs(p.W))) <= bound and float(jnp.max(jnp.abs(p.U))) <= bound
    assert float(jnp.std(p.U)) > 0.3 * bound  # really random, not a constant
    assert p.input_size == 3 and p.hidden_size == 5


def test_cell_is_one_step_of_lstm(key):
    params, xs, c0 = problem(key, (2,), T=3)
    hs, final = jlstm.lstm(params, xs, c0)
    carry = c0
    for t in range(3):
        carry, h = jlstm.cell(params, carry, xs[:, t])
        np.testing.assert_allclose(h, hs[:, t], rtol=1e-12)
    np.testing.assert_allclose(carry.c, final.c, rtol=1e-12)


def test_cell_matches_the_equations_written_out(key):
    params, xs, c0 = problem(key, (), T=1, D=2, H=3)
    x, (h, c) = xs[0], c0
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    z = np.asarray(x @ params.W + h @ params.U + params.b)
    a, i, f, o = np.tanh(z[:3]), sig(z[3:6]), sig(z[6:9]), sig(z[9:])
    c_new = a * i + f * np.asarray(c)
    (h1, c1), out = jlstm.cell(params, c0, x)
    np.testing.assert_allclose(c1, c_new, rtol=1e-13)
    np.testing.assert_allclose(h1, np.tanh(c_new) * o, rtol=1e-13)
    np.testing.assert_array_equal(out, h1)


def test_lstm_scan_with_the_cell_as_the_docstring_says(key):
    params, xs, c0 = problem(key, (), T=4)
    (h, c), hs = jax.lax.scan(functools.partial(jlstm.cell, params), c0, xs)
    hs2, (h2, c2) = jlstm.lstm(params, xs, c0)
    np.testing.assert_allclose(hs, hs2, rtol=1e-12)
    np.testing.assert_allclose(c, c2, rtol=1e-12)


CASES = [
    dict(batch_shape=(), T=5, H=4),
    dict(batch_shape=(3,), T=5, H=4),
    dict(batch_shape=(2, 3), T=4, H=4),
    dict(batch_shape=(3,), T=1, H=4),
    dict(batch_shape=(3,), T=6, H=1),
    dict(batch_shape=(2,), T=3, H=2, D=1),
]


@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_manual_equals_autodiff_float64(key, case):
    params, xs, c0 = problem(key, **case)
    grad = jax.grad(full_loss, argnums=(0, 1, 2))
    g_manual = grad(params, xs, c0, "manual")
    g_auto = grad(params, xs, c0, "autodiff")
    assert rel_err(g_manual, g_auto) <= 1e-10
    # Every part is really non-zero, so the comparison means something.
    for leaf in jax.tree.leaves(g_manual):
        assert float(jnp.max(jnp.abs(leaf))) > 1e-6
    v1, v2 = full_loss(params, xs, c0, "manual"), full_loss(params, xs, c0, "autodiff")
    assert float(v1) == float(v2)


def test_manual_equals_autodiff_per_leaf(key):
    params, xs, c0 = problem(key, (4,), T=7, D=3, H=5)
    grad = jax.grad(full_loss, argnums=(0, 1, 2))
    for a, b in zip(jax.tree.leaves(grad(params, xs, c0, "manual")),
                    jax.tree.leaves(grad(params, xs, c0, "autodiff"))):  # fmt: skip
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


def test_only_final_carry_cotangent(key):
    # A loss on the final c alone must reach every parameter through the recurrence.
    params, xs, c0 = problem(key, (2,), T=4)
    loss = lambda p, mode: jnp.sum(jlstm.lstm(p, xs, c0, backward=mode)[1].c)  # noqa: E731
    assert rel_err(jax.grad(loss)(params, "manual"), jax.grad(loss)(params, "autodiff")) < 1e-11


def test_check_grads_reverse_mode(key):
    params, xs, c0 = problem(key, (2,), T=3, D=2, H=3)
    f = lambda p, x, c: full_loss(p, x, c, "manual")  # noqa: E731
    check_grads(f, (params, xs, c0), order=1, modes=("rev",), atol=1e-6, rtol=1e-6)


def test_check_grads_catches_a_wrong_backward(key, monkeypatch):
    # The finite-difference check is sharp enough to see a small error in one equation.
    from jlstm.core import backward

    orig = backward.backward_step

    def wrong(gates, c, c_prev, g_h, dh, dc):
        s = orig(gates, c, c_prev, g_h, dh, dc)
        return s._replace(delta_gates=s.delta_gates * 1.01)

    monkeypatch.setattr(backward, "backward_step", wrong)
    params, xs, c0 = problem(key, (2,), T=3, D=2, H=3)
    f = lambda p, x, c: full_loss(p, x, c, "manual")  # noqa: E731
    with pytest.raises(AssertionError):
        check_grads(f, (params, xs, c0), order=1, modes=("rev",), atol=1e-6, rtol=1e-6)


def test_jit_gives_the_same(key):
    params, xs, c0 = problem(key, (3,))
    g = jax.grad(full_loss, argnums=(0, 1, 2))
    a = g(params, xs, c0)
    b = jax.jit(g)(params, xs, c0)
    assert rel_err(a, b) < 1e-12


def test_vmap_equals_native_batch(key):
    params, xs, c0 = problem(key, (4,), T=5)
    native_hs, native_final = jlstm.lstm(params, xs, c0)
    vm_hs, vm_final = jax.vmap(lambda x, c: jlstm.lstm(params, x, c))(xs, c0)
    np.testing.assert_allclose(vm_hs, native_hs, rtol=1e-12)
    np.testing.assert_allclose(vm_final.c, native_final.c, rtol=1e-12)
    # Gradients too: per-example grads summed equal the batch grad.
    per_ex = jax.vmap(jax.grad(full_loss), in_axes=(None, 0, 0))(params, xs, c0)
    summed = jax.tree.map(lambda a: a.sum(0), per_ex)

    def looped(p):
        return sum(full_loss(p, xs[i], jlstm.LSTMState(c0.h[i], c0.c[i])) for i in range(4))

    batch = jax.grad(looped)(params)
    assert rel_err(summed, batch) < 1e-11


def test_manual_is_a_custom_vjp_and_autodiff_is_not(key):
    params, xs, c0 = problem(key, (2,))
    manual = str(jax.make_jaxpr(lambda p: full_loss(p, xs, c0, "manual"))(params))
    auto = str(jax.make_jaxpr(lambda p: full_loss(p, xs, c0, "autodiff"))(params))
    assert "custom_vjp_call" in manual
    assert "custom_vjp_call" not in auto
    # Under grad the manual path's backward is a reverse scan, and the autodiff one is JAX's transpose.
    gm = str(jax.make_jaxpr(jax.grad(lambda p: full_loss(p, xs, c0, "manual")))(params))
    assert "reverse=True" in gm


def test_train_step_traces_once(key):
    params, xs, _ = problem(key, (4,), T=5, dtype=jnp.float32)
    ys = jnp.zeros(xs.shape[:-1] + (4,), jnp.float32)
    traces = []

    def loss(p, batch):
        traces.append(1)
        return jlstm.l2_loss(jlstm.lstm(p, batch[0])[0], batch[1])

    opt = optax.adam(1e-2)
    step = jlstm.make_train_step(loss, opt)
    state = opt.init(params)
    losses = []
    for _ in range(5):
        params, state, m = step(params, state, (xs, ys))
        losses.append(float(m["loss"]))
    assert len(traces) == 1
    assert losses[-1] < losses[0]


def test_train_step_traces_once_with_chex(key):
    params, xs, _ = problem(key, (4,), T=5, dtype=jnp.float32)
    ys = jnp.zeros(xs.shape[:-1] + (4,), jnp.float32)

    @chex.assert_max_traces(n=1)
    def loss(p, batch):
        return jlstm.l2_loss(jlstm.lstm(p, batch[0])[0], batch[1])

    opt = optax.sgd(0.1)
    step = jlstm.make_train_step(loss, opt)
    state = opt.init(params)
    for _ in range(3):
        params, state, _ = step(params, state, (xs, ys))


@pytest.mark.parametrize("backward", ["manual", "autodiff"])
def test_float32_in_gives_float32_out(key, backward):
    params, xs, c0 = problem(key, (2,), dtype=jnp.float32)
    hs, (h, c) = jlstm.lstm(params, xs, c0, backward=backward)
    assert hs.dtype == h.dtype == c.dtype == jnp.float32
    g = jax.grad(full_loss, argnums=(0, 1, 2))(params, xs, c0, backward)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(g))
    hs0, _ = jlstm.lstm(params, xs)  # zero carry is float32 too
    assert hs0.dtype == jnp.float32


def test_float32_agrees_with_float64(key):
    T, D, H = 20, 3, 4
    params, xs, c0 = problem(key, (3,), T=T, D=D, H=H)
    g64 = jax.grad(full_loss)(params, xs, c0)
    p32, x32, c32 = jax.tree.map(lambda a: a.astype(jnp.float32), (params, xs, c0))
    # Full float32 products, as the test means: on a GPU the default is TF32 (a 10-bit mantissa), which
    # measured 3.5e-4 here.
    with jax.default_matmul_precision("highest"):
        g32 = jax.grad(full_loss)(p32, x32, c32)
    # The longest chain of rounded sums runs through all T steps, each a dot of D + H terms: the forward
    # error bound of such sums is n * eps with n = T (D + H) (Higham's gamma_n); the gates are
    # contractions here, so nothing amplifies it. Measured 1.4e-7 to 3.5e-7 over four seeds on the CPU.
    tol = T * (D + H) * float(jnp.finfo(jnp.float32).eps)
    assert rel_err(jax.tree.map(lambda a: a.astype(jnp.float64), g32), g64) < tol


def test_carry_broadcasts_from_a_single_state(key):
    params, xs, _ = problem(key, (3,))
    h0 = jnp.linspace(-0.5, 0.5, 4)
    c0 = jnp.linspace(0.3, -0.2, 4)
    hs, _ = jlstm.lstm(params, xs, (h0, c0))
    hs_full, _ = jlstm.lstm(params, xs, (jnp.tile(h0, (3, 1)), jnp.tile(c0, (3, 1))))
    np.testing.assert_allclose(hs, hs_full, rtol=1e-13)
    # The gradient of a shared initial state is the sum over the batch.
    g = jax.grad(lambda h: full_loss(params, xs, (h, c0)))(h0)
    g_full = jax.grad(lambda h: full_loss(params, xs, (h, jnp.tile(c0, (3, 1)))))(jnp.tile(h0, (3, 1)))
    np.testing.assert_allclose(g, g_full.sum(0), rtol=1e-12)


def test_zero_length_sequence(key):
    params, _, c0 = problem(key, (2,))
    xs = jnp.zeros((2, 0, 3))
    hs, final = jlstm.lstm(params, xs, c0)
    assert hs.shape == (2, 0, 4)
    np.testing.assert_array_equal(final.h, c0.h)
    g = jax.grad(lambda c: jnp.sum(jlstm.lstm(params, xs, c)[1].c))(c0)
    np.testing.assert_array_equal(g.c, 1.0)


def test_lstm_trace_agrees_with_autodiff(key):
    params, xs, c0 = problem(key, (2,), T=6)
    hs, _ = jlstm.lstm(params, xs, c0)
    g_hs = jnp.cos(hs)
    dparams, dxs, dcarry, tr = jlstm.lstm_trace(params, xs, g_hs, c0)
    f = lambda p, x, c: jnp.sum(jnp.sin(jlstm.lstm(p, x, c, backward="autodiff")[0]))  # noqa: E731
    want = jax.grad(f, argnums=(0, 1, 2))(params, xs, c0)
    assert rel_err((dparams, dxs, dcarry), want) < 1e-11
    np.testing.assert_allclose(tr.delta_x, dxs, rtol=1e-13)
    # delta out_t is dL/dh_t in total; autodiff through a perturbation of h_t at each step agrees.
    assert tr.delta_out.shape == (2, 6, 4) and tr.delta_gates.shape == (2, 6, 16)
    # Delta out_{t-1} at t feeds delta out_{t-1} = Delta_{t-1} + Delta out_{t-1}.
    np.testing.assert_allclose(tr.delta_out[:, :-1], g_hs[:, :-1] + tr.Delta_out_prev[:, 1:], rtol=1e-12)
    np.testing.assert_allclose(tr.Delta_out_prev[:, 0], dcarry.h, rtol=1e-12)
