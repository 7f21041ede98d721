"""Property: every public sequence function, on any input, gives the float64 reference or a clean error.

Each argument is drawn good or bad in one of the ways users get it wrong (rank, batch dims including 0,
T including 0, dtypes, Python lists, carries, lengths, concrete lengths inside ``jit``). When every
argument is good the call must run and equal an independent numpy float64 LSTM (and its hand-written
gradient must equal autodiff at 1e-10); when any is bad it must raise a ``ValueError`` or ``TypeError``
whose message starts with the function's name and names one of the bad arguments. No other exception
may escape. ``derandomize``: CI sees the same examples on every machine.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jlstm

D, H = 3, 2
KEY = jax.random.key(0)
PARAMS = jax.tree.map(lambda a: 2.0 * a, jlstm.init(KEY, D, H, dtype=jnp.float64))
LAYER2 = jlstm.init(jax.random.key(1), H, H, dtype=jnp.float64)

XS_KINDS = ["good", "good", "float32", "bfloat16", "list", "int32", "complex64", "wrong_D", "rank1"]
XS_BAD = {"int32", "complex64", "wrong_D", "rank1"}
CARRY_KINDS = ["none", "good", "single", "list", "wide_h", "triple", "wrong_batch", "int"]
CARRY_BAD = {"wide_h", "triple", "wrong_batch", "int"}
LENGTH_KINDS = ["none", "good", "list", "jit_list", "too_long", "negative", "float", "wrong_shape"]


def _sig(z):
    return 1.0 / (1.0 + np.exp(-z))


def reference(W, U, b, xs, h0, c0, lengths, reverse):
    """The source's LSTM in numpy float64, one sequence at a time: ``(hs [..., T, H], h, c)``."""
    W, U, b = (np.asarray(a, np.float64) for a in (W, U, b))
    xs = np.asarray(xs).astype(np.float64)  # the values given (bfloat16 ones too), in float64
    batch, T = xs.shape[:-2], xs.shape[-2]
    n = math.prod(batch)
    x = xs.reshape(n, T, xs.shape[-1])
    h = np.broadcast_to(np.asarray(h0, np.float64), batch + (H,)).reshape(n, H).copy()
    c = np.broadcast_to(np.asarray(c0, np.float64), batch + (H,)).reshape(n, H).copy()
    L = np.full(n, T) if lengths is None else np.asarray(lengths).reshape(n)
    hs = np.zeros((n, T, H))
    for s in range(n):
        steps = range(L[s])
        for t in reversed(steps) if reverse else steps:
            z = x[s, t] @ W + h[s] @ U + b
            a, i, f, o = np.tanh(z[:H]), _sig(z[H : 2 * H]), _sig(z[2 * H : 3 * H]), _sig(z[3 * H :])
            c[s] = a * i + f * c[s]
            h[s] = o * np.tanh(c[s])
            hs[s, t] = h[s]
    return hs.reshape(batch + (T, H)), h.reshape(batch + (H,)), c.reshape(batch + (H,))


def make_xs(kind, batch, T):
    shape = batch + (T, D)
    base = np.sin(np.arange(math.prod(shape)) + 1.0).reshape(shape)
    if kind == "rank1":
        return jnp.ones((D,))
    if kind == "wrong_D":
        return jnp.ones(batch + (T, D + 1))
    if kind == "list":
        return base.tolist()
    dtype = {"good": jnp.float64, "int32": jnp.int32, "complex64": jnp.complex64}.get(kind, kind)
    return jnp.asarray(base, dtype)


def make_carry(kind, batch):
    h, c = 0.3 * np.cos(np.arange(H) + 0.5), 0.4 * np.sin(np.arange(H) + 0.5)
    full = lambda v: jnp.asarray(np.broadcast_to(v, batch + (H,)))  # noqa: E731
    return {
        "none": None,
        "good": jlstm.LSTMState(full(h), full(c)),
        "single": (jnp.asarray(h), jnp.asarray(c)),  # one state broadcast over the batch
        "list": [h.tolist(), c.tolist()],
        "wide_h": (jnp.zeros(batch + (H + 1,)), full(c)),
        "triple": (full(h),) * 3,
        "wrong_batch": (jnp.zeros(batch + (5, H)), jnp.zeros(batch + (5, H))),
        "int": (jnp.zeros(batch + (H,), jnp.int32), full(c)),
    }[kind]


def make_lengths(kind, batch, T, seed):
    good = np.random.default_rng(seed).integers(0, T + 1, size=batch)
    return {
        "none": None,
        "good": jnp.asarray(good, jnp.int32),
        "list": good.tolist(),
        "jit_list": good.tolist(),
        "too_long": (good + T + 1).tolist(),  # a Python list: known at trace time, so always checked
        "negative": np.asarray(good - T - 1),
        "float": jnp.asarray(good, jnp.float32),
        "wrong_shape": jnp.zeros(batch + (2,), jnp.int32),
    }[kind]


def bad_arguments(fn, xs_kind, carry_kind, lengths_kind, batch, T):
    bad = set()
    # A nested list cannot hold an empty axis: [] reads as shape (0,), which has no time or feature axis.
    empty_list = xs_kind == "list" and math.prod(batch) * T == 0
    if xs_kind in XS_BAD or empty_list:
        bad.add("xs" if fn != "cell" else "x")
    if carry_kind in CARRY_BAD:
        bad.add("carr")  # carry, carries[0], carry.h
    has_rows = math.prod(batch) > 0  # the range of no lengths at all cannot be wrong
    if lengths_kind in ("float", "wrong_shape") or (lengths_kind in ("too_long", "negative") and has_rows):
        bad.add("lengths")
    if lengths_kind in ("list", "jit_list", "too_long") and 0 in batch[:-1]:  # [] loses the axes after it
        bad.add("lengths")
    return bad


def call(fn, xs, carry, lengths, reverse, lengths_kind):
    """Run ``fn`` as a user would; returns ``(hs, h, c)`` of the (top) layer."""
    if fn == "cell":
        (h, c), out = jlstm.cell(PARAMS, carry if carry is not None else (jnp.zeros(H),) * 2, xs)
        return out[..., None, :], h, c
    if fn == "stacked":
        hs, finals = jlstm.stacked_lstm([PARAMS, LAYER2], xs, [carry, None], lengths=lengths)
        return hs, *finals[1]
    params = jlstm.CellParams(*PARAMS, {}, jlstm.CellSpec()) if fn == "lstm_cellparams" else PARAMS
    if fn == "lstm_trace":
        g = jnp.ones(np.shape(xs)[:-1] + (H,)) if np.ndim(xs) >= 2 else jnp.ones((H,))
        grads, dxs, dcarry, trace = jlstm.lstm_trace(params, xs, g, carry, lengths=lengths)
        hs, (h, c) = jlstm.lstm(params, xs, carry, lengths=lengths)
        return hs, h, c
    run = lambda xs, carry: jlstm.lstm(params, xs, carry, lengths=lengths, reverse=reverse)  # noqa: E731
    if lengths_kind in ("jit_list", "too_long"):  # concrete lengths, a constant of the traced function
        run = jax.jit(run)
    hs, (h, c) = run(xs, carry)
    return hs, h, c


def expected(fn, xs, carry, lengths, reverse):
    h0, c0 = (np.zeros(H), np.zeros(H)) if carry is None else carry
    if fn == "cell":
        hs, h, c = reference(*PARAMS, np.asarray(xs)[..., None, :], h0, c0, None, False)
        return hs, h, c
    reverse = reverse and fn in ("lstm", "lstm_cellparams")
    hs, h, c = reference(*PARAMS, xs, h0, c0, lengths, reverse)
    if fn == "stacked":
        hs, h, c = reference(*LAYER2, hs, np.zeros(H), np.zeros(H), lengths, False)
    return hs, h, c


def check_gradients(xs, carry, lengths, reverse):
    """The hand-written backward equals autodiff (float64) for every input that has one."""

    def loss(p, xs, carry, mode):
        hs, (h, c) = jlstm.lstm(p, xs, carry, lengths=lengths, reverse=reverse, backward=mode)
        return jnp.sum(jnp.sin(hs)) + jnp.sum(h * h) + jnp.sum(c**3)

    xs = jnp.asarray(xs, jnp.float64)
    carry = None if carry is None else tuple(jnp.asarray(v, jnp.float64) for v in carry)
    argnums = (0, 1) if carry is None else (0, 1, 2)
    gm = jax.grad(loss, argnums)(PARAMS, xs, carry, "manual")
    ga = jax.grad(loss, argnums)(PARAMS, xs, carry, "autodiff")
    for a, b in zip(jax.tree.leaves(gm), jax.tree.leaves(ga)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    fn=st.sampled_from(["lstm", "lstm", "lstm_cellparams", "lstm_trace", "cell", "stacked"]),
    batch=st.lists(st.sampled_from([0, 1, 2, 3]), min_size=0, max_size=2).map(tuple),
    T=st.sampled_from([0, 1, 3]),
    xs_kind=st.sampled_from(XS_KINDS),
    carry_kind=st.sampled_from(CARRY_KINDS),
    lengths_kind=st.sampled_from(LENGTH_KINDS),
    reverse=st.booleans(),
    seed=st.integers(0, 3),
)
def test_public_functions_give_the_reference_or_a_clean_error(
    fn, batch, T, xs_kind, carry_kind, lengths_kind, reverse, seed
):
    if fn == "cell":
        lengths_kind, T = "none", 1  # one step: no time axis, no lengths
    where = {"cell": "jlstm.cell", "stacked": "jlstm.stacked_lstm", "lstm_trace": "jlstm.lstm_trace"}
    name = where.get(fn, "jlstm.lstm")
    xs = make_xs(xs_kind, batch, T)
    if fn == "cell" and xs_kind != "rank1":
        xs = xs[..., 0, :] if not isinstance(xs, list) else np.asarray(xs)[..., 0, :].tolist()
    carry = make_carry(carry_kind, batch)
    lengths = make_lengths(lengths_kind, batch, T, seed)
    bad = bad_arguments(fn, xs_kind, carry_kind, lengths_kind, batch, T)
    try:
        hs, h, c = call(fn, xs, carry, lengths, reverse, lengths_kind)
    except (ValueError, TypeError) as e:
        msg = str(e)
        assert bad, f"a valid input was refused: {msg}"
        assert msg.startswith(f"{name}: "), msg
        assert any(arg in msg for arg in bad), (bad, msg)
        return
    assert not bad, f"{sorted(bad)} bad, yet {fn} ran"
    want = expected(fn, xs, carry, lengths, reverse)
    for got, ref in zip((hs, h, c), want):
        assert got.shape == ref.shape, (got.shape, ref.shape)
        np.testing.assert_allclose(np.asarray(got, np.float64), ref, rtol=1e-12, atol=1e-13)
    if fn == "lstm" and T > 0 and math.prod(batch) > 0 and lengths_kind != "jit_list":
        check_gradients(xs, carry, lengths, reverse)
