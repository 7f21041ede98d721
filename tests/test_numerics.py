"""Numerical robustness: saturated gates, large weights, long sequences, low-precision inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import full_loss, problem, rel_err

import jlstm


@pytest.mark.parametrize("scale", [1e2, 1e4])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_huge_preactivations_give_finite_equal_gradients(key, scale, dtype):
    T, D, H = 8, 3, 4
    params, xs, c0 = problem(key, (3,), T=T, D=D, H=H, dtype=dtype)
    params = jax.tree.map(lambda a: a * scale, params)  # pre-activations of order `scale`
    z = jnp.einsum("btd,dg->btg", xs, params.W)
    assert float(jnp.max(jnp.abs(z))) > scale / 10
    hs, (h, c) = jlstm.lstm(params, xs, c0)
    assert bool(jnp.all(jnp.isfinite(hs))) and bool(jnp.all(jnp.isfinite(c)))
    g = jax.grad(full_loss, argnums=(0, 1, 2))
    with jax.default_matmul_precision("highest"):  # full float32 on a GPU too (TF32 by default there)
        gm, ga = g(params, xs, c0, "manual"), g(params, xs, c0, "autodiff")
    for a, b in zip(jax.tree.leaves(gm), jax.tree.leaves(ga)):
        assert bool(jnp.all(jnp.isfinite(a)))
        if dtype == jnp.float64:
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    if dtype == jnp.float32:
        # Saturated gates: the two derivative formulas round differently, and a leaf whose gradient
        # saturation has all but zeroed (|dW| ~ 1e-9, or exactly 0 in one formula) has no relative
        # accuracy, so the error is relative to the whole gradient. Its longest chain of rounded sums:
        # T steps of D + H terms, n * eps32 = 6.7e-6 (measured <= 5.7e-7 over 8 seeds at each scale).
        assert rel_err(gm, ga) < T * (D + H) * float(jnp.finfo(jnp.float32).eps)


def test_cell_state_grows_without_overflow_when_forget_gate_is_open(key):
    # f = 1, i = 1, a = 1: the cell state counts the steps; T = 10,000 runs and stays exact.
    D, H, T = 1, 2, 10_000
    W = jnp.zeros((D, 4 * H))
    b = jnp.concatenate([jnp.full(H, 50.0), jnp.full(2 * H, 50.0), jnp.full(H, 0.0)])
    params = jlstm.LSTMParams(W, jnp.zeros((H, 4 * H)), b)
    xs = jnp.zeros((T, D))
    hs, (h, c) = jax.jit(jlstm.lstm)(params, xs)
    np.testing.assert_allclose(c, T, rtol=1e-6)
    np.testing.assert_allclose(h, np.tanh(T) * 0.5, rtol=1e-6)
    g = jax.jit(jax.grad(lambda p: jnp.sum(jlstm.lstm(p, xs)[1].c)))(params)
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(g))
    # The rematerialising backward (every 100th carry kept) gives the same gradient.
    g_remat = jax.jit(jax.grad(lambda p: jnp.sum(jlstm.lstm(p, xs, remat=100)[1].c)))(params)
    for a, b in zip(jax.tree.leaves(g_remat), jax.tree.leaves(g)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
