"""``jlstm.debug``: run-time checks for every kind of params, and float16's range named."""

import jax
import jax.numpy as jnp
import pytest
from test_check_cell import beta_backward, beta_forward, beta_params

import jlstm
from jlstm import debug


def _message(err):
    return err.get() or ""


def test_checked_lstm_checks_every_leaf_of_a_variants_params():
    params = jlstm.init(jax.random.key(0), 3, 4, peephole=True, layer_norm=True, proj_size=2)
    xs, carry = jnp.zeros((2, 5, 3)), (jnp.zeros((2, 2)), jnp.zeros((2, 4)))
    run = jax.jit(debug.checked_lstm)  # one signature: traced once for every case below
    err, (hs, _) = run(params, xs, carry)
    assert err.get() is None and hs.shape == (2, 5, 2)
    err, _ = run(params, xs.at[1, 4, 0].set(jnp.nan), carry)
    with pytest.raises(
        Exception, match=r"xs holds NaN or Inf; the first at index \[1 4 0\] of shape \(2, 5, 3\)"
    ):
        err.throw()
    extra = dict(params.extra, p_i=params.extra["p_i"].at[2].set(jnp.inf))
    bad = jlstm.CellParams(params.W, params.U, params.b, extra, params.spec)
    msg = _message(run(bad, xs, carry)[0])
    assert "params.extra['p_i'] holds NaN or Inf; the first at index [2] of shape (4,)" in msg
    carry = (carry[0], carry[1].at[0, 3].set(jnp.nan))
    assert "carry.c holds NaN or Inf; the first at index [0 3]" in _message(run(params, xs, carry)[0])


def test_checked_lstm_runs_a_user_cell():
    cell = jlstm.Cell("janet-beta", 2, beta_forward, beta_backward())
    params = beta_params(cell)
    xs = jax.random.normal(jax.random.key(1), (2, 5, 3))
    run = jax.jit(debug.checked_lstm)
    err, (hs, _) = run(params, xs)
    assert err.get() is None and hs.shape == (2, 5, 4) and bool(jnp.all(jnp.isfinite(hs)))
    assert "xs holds NaN or Inf; the first at index [0 2 1]" in _message(
        run(params, xs.at[0, 2, 1].set(jnp.nan))[0]
    )
    bad = jlstm.CellParams(
        params.W, params.U, params.b, {"beta": params.extra["beta"].at[1].set(jnp.nan)}, cell
    )
    assert "params.extra['beta'] holds NaN or Inf; the first at index [1]" in _message(run(bad, xs)[0])


def test_float32_inputs_beyond_float16s_range_are_named():
    params = jlstm.init(jax.random.key(0), 4, 5)
    xs = jnp.ones((2, 4, 4), jnp.float32).at[1, 2, 3].set(1e5)  # finite in float32, inf in float16
    msg = _message(jax.jit(lambda p, x: debug.checked_lstm(p, x, compute_dtype=jnp.float16))(params, xs)[0])
    assert "xs holds values beyond float16's range (largest finite 65504)" in msg
    assert "the first at index [1 2 3]" in msg and "Compute in bfloat16" in msg


def test_a_float16_overflow_inside_the_recurrence_says_so():
    # h = (o * tanh c) @ P with P = 2e4: |h| ~ 1e5 is fine in float32, inf once rounded to float16.
    p = jlstm.init(jax.random.key(0), 3, 8, proj_size=2)
    p = jlstm.CellParams(p.W * 0 + 10.0, p.U, p.b, {"P": jnp.full((8, 2), 2e4, jnp.float32)}, p.spec)
    xs = jnp.ones((1, 2, 3), jnp.float32)
    msg = _message(jax.jit(lambda p, x: debug.checked_lstm(p, x, compute_dtype=jnp.float16))(p, xs)[0])
    assert "non-finite inside the recurrence, first at step t = 0, from finite inputs under float16" in msg
    assert "a 16-bit value overflowed (float16's largest finite value is 65504)" in msg
    assert "Compute in bfloat16" in msg
    assert "Compute in float32" in debug._overflow_message(jnp.dtype(jnp.bfloat16))
    assert debug._overflow_message(jnp.dtype(jnp.float32)).endswith(
        "first at step t = {}."
    )  # no 16-bit advice


def test_checked_lstm_names_the_states_of_a_state_cell():
    from state_cells import TOY4, params_for

    params = params_for(TOY4, jax.random.key(0), 3, 4)
    xs = jnp.ones((2, 5, 3))
    carry = tuple(jnp.zeros((2, 4)) for _ in range(4))
    err, (ys, final) = jax.jit(debug.checked_lstm)(params, xs, carry)
    assert err.get() is None and final._fields == ("h", "c", "n", "m")
    bad = carry[:2] + (carry[2].at[1, 3].set(jnp.nan),) + carry[3:]
    err, _ = jax.jit(debug.checked_lstm)(params, xs, bad)
    with pytest.raises(Exception, match=r"carry.n holds NaN or Inf; the first at index \[1 3\]"):
        err.throw()
