"""Running a cell over a sequence: the batch-major public layout around the time-major machinery.

``run`` takes any ``Cell`` with its weights and a ``Prepared`` input; ``lstm`` is the source's LSTM
(``LSTMParams``) through it. ``jlstm.lstm`` (``jlstm.functional``) chooses the cell from the parameters.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jlstm.core import checks as _checks
from jlstm.core import machinery as _m
from jlstm.core import prepare as _prep
from jlstm.core.backward import Trace
from jlstm.core.cell import state_dtype
from jlstm.core.interface import Cell
from jlstm.core.params import LSTMParams, LSTMState
from jlstm.core.vanilla import VANILLA


class Weights(NamedTuple):
    """The cell's parameters as the machinery takes them: ``W [D, GH]``, ``U [R, GH]``, ``b [GH]`` (None
    when the cell adds it itself, inside ``theta``), ``theta`` the cell's own pointwise parameters."""

    W: jax.Array
    U: jax.Array
    b: jax.Array | None
    theta: dict


def _pad_steps(a, T_pad, value=0):
    return jnp.pad(a, [(0, T_pad - a.shape[0])] + [(0, 0)] * (a.ndim - 1), constant_values=value)


def run(
    cell: Cell,
    w: Weights,
    p: _prep.Prepared,
    *,
    reverse: bool = False,
    backward: str = "manual",
    remat: int | str | None = None,
    noise=None,
    mx: jax.Array | None = None,
    mh: jax.Array | None = None,
) -> tuple[jax.Array, LSTMState]:
    """Run ``cell`` over ``p.xs [B, T, D]``. ``noise``: a pytree of ``[T, B, ...]`` per-step arrays in
    processing order (after ``reverse``), or None. Returns ``(hs [..., T, R], LSTMState(h [..., R],
    c [..., H]))`` in the caller's batch shape."""
    if p.T == 0:
        return p.unflatten(jnp.zeros((p.B, 0, p.R), p.xs.dtype), p.h0, p.c0)
    xs, lengths = p.xs, p.lengths
    if reverse:
        xs = reverse_time(xs, lengths)
    mask, xs_tm = _prep.time_major(xs, lengths)
    T = p.T
    if remat == "auto":  # the chunk length from the size of what would be saved (None: save every step)
        remat = _prep.auto_remat(T, p.B, p.H, p.R, jnp.dtype(state_dtype(p.xs.dtype)).itemsize)
    k = int(remat) if remat is not None else (T if backward != "manual" else _prep.default_chunk(T, p.B))
    T_pad = -(-T // k) * k
    if T_pad != T:  # remat's chunks: pad with masked steps, the identity on the carry
        mask = _pad_steps(mask if mask is not None else jnp.ones((T, p.B), bool), T_pad, False)
        xs_tm = _pad_steps(xs_tm, T_pad)
        noise = jax.tree.map(lambda a: _pad_steps(a, T_pad), noise)
    dtypes = tuple(None if a is None else jnp.dtype(a.dtype) for a in (w.W, w.U, w.b))
    plan = _m.Plan(k, remat is not None, dtypes)
    inputs = _m.Inputs(*_m._chunks((mask, noise), k))
    ys, hT, cT = _m.scan_cell(
        cell, plan, w.theta, w.W, w.U, w.b, xs_tm, p.h0, p.c0, inputs, mx, mh, manual=backward == "manual"
    )
    hs = jnp.swapaxes(ys[:T], 0, 1)  # [B, T, R]
    if reverse:
        hs = reverse_time(hs, lengths)
    return p.unflatten(hs, hT, cT)


reverse_time = _prep.reverse_time


def lstm(
    params: LSTMParams,
    xs: jax.Array,
    carry: LSTMState | tuple | None = None,
    *,
    lengths: jax.Array | None = None,
    reverse: bool = False,
    backward: str = "manual",
    remat: int | str | None = None,
    compute_dtype: jnp.dtype | None = None,
) -> tuple[jax.Array, LSTMState]:
    """The source's LSTM over a sequence (``LSTMParams`` only; ``jlstm.lstm`` takes every cell).

    Args and returns as ``jlstm.lstm``.
    """
    where = "jlstm.lstm"
    _checks.check_backward(backward, where)
    remat = _prep.check_remat(remat, backward, where)
    compute_dtype = _prep.check_compute_dtype(compute_dtype, where)
    params = _checks.check_params(params, where)
    xs = _checks._floating("xs", xs, where)  # before result_type, which cannot read a list
    dtype = jnp.result_type(xs, *params) if compute_dtype is None else compute_dtype
    H = params.hidden_size
    p = _prep.prepare(xs, carry, lengths, D=params.input_size, H=H, R=H, dtype=dtype, where=where)
    return run(VANILLA, Weights(*params, {}), p, reverse=reverse, backward=backward, remat=remat)


def trace(cell: Cell, w: Weights, p: _prep.Prepared, g_hs, g_final, *, noise=None, mx=None, mh=None, where):
    """The hand-written backward of ``cell`` with its per-step quantities (see ``lstm_trace``).

    Returns ``(dW, dU, db, dtheta), dxs [..., T, D], dcarry0, Trace``; gradients in the state dtype."""
    dtype = p.xs.dtype
    sd = state_dtype(dtype)
    g_hs = _checks._floating("g_hs", g_hs, where)
    if g_hs.shape != p.batch_shape + (p.T, p.R):
        raise ValueError(f"{where}: g_hs must be {p.batch_shape + (p.T, p.R)} like hs; got {g_hs.shape}.")
    if g_final is None:
        g_hT, g_cT = jnp.zeros((p.B, p.R), dtype), jnp.zeros((p.B, p.H), sd)
    else:
        g_hT, g_cT = (
            jnp.broadcast_to(v.astype(t), p.batch_shape + (n,)).reshape(p.B, n)
            for v, t, n in zip(
                _checks.check_carry(g_final, p.batch_shape, p.H, where, p.R), (dtype, sd), (p.R, p.H)
            )
        )
    if p.T == 0:
        return _empty_trace(w, p, g_hT, g_cT)
    mask, xs_tm = _prep.time_major(p.xs, p.lengths)
    plan = _m.Plan(p.T, False, ())
    inputs = _m.Inputs(*_m._chunks((mask, noise), p.T))
    out, (ys, saved) = _m.forward(cell, plan, w.theta, w.W, w.U, w.b, xs_tm, p.h0, p.c0, inputs, mx, mh)
    W, U = w.W.astype(dtype), w.U.astype(dtype)
    res = (w.theta, W, U, w.b, xs_tm, out[2], inputs, mx, mh, ys, saved)
    g_tm = jnp.swapaxes(g_hs.astype(dtype).reshape(p.B, p.T, p.R), 0, 1)
    (dth, dW, dU, db, dxs, dh0, dc0), (_, dzx, delta_out, delta_state, dh_prev) = _m.backward(
        cell, plan, res, g_tm, g_hT, g_cT, trace=True
    )

    def batch_major(a):
        return jnp.swapaxes(a, 0, 1).reshape(p.batch_shape + (p.T, a.shape[-1]))

    dcarry = LSTMState(dh0.astype(dtype).reshape(p.batch_shape + (p.R,)), dc0.reshape(p.batch_shape + (p.H,)))
    tr = Trace(*(batch_major(a) for a in (delta_out, delta_state, dzx, dxs, dh_prev)))
    return (dW, dU, db, dth), batch_major(dxs), dcarry, tr


def _empty_trace(w: Weights, p: _prep.Prepared, g_hT, g_cT):
    """``trace`` of a sequence of no steps: no parameter gradient, and the final carry's cotangent is
    the initial carry's (the carry passes through unchanged)."""
    sd = g_cT.dtype
    zeros = lambda a: jnp.zeros(a.shape, sd)  # noqa: E731
    grads = (zeros(w.W), zeros(w.U), None if w.b is None else zeros(w.b), jax.tree.map(zeros, w.theta))
    widths = (p.R, p.H, w.W.shape[1], p.xs.shape[-1], p.R)
    tr = Trace(*(jnp.zeros(p.batch_shape + (0, n), sd) for n in widths))
    dcarry = LSTMState(g_hT.reshape(p.batch_shape + (p.R,)), g_cT.reshape(p.batch_shape + (p.H,)))
    return grads, jnp.zeros(p.batch_shape + (0, p.xs.shape[-1]), p.xs.dtype), dcarry, tr


def lstm_trace(
    params: LSTMParams,
    xs: jax.Array,
    g_hs: jax.Array,
    carry: LSTMState | tuple | None = None,
    g_final: LSTMState | tuple | None = None,
    *,
    lengths: jax.Array | None = None,
) -> tuple[LSTMParams, jax.Array, LSTMState, Trace]:
    """The source's LSTM's hand-written backward with its per-step quantities (``jlstm.lstm_trace``)."""
    where = "jlstm.lstm_trace"
    params = _checks.check_params(params, where)
    xs = _checks._floating("xs", xs, where)  # before result_type, which cannot read a list
    dtype = jnp.result_type(xs, *params)
    H = params.hidden_size
    p = _prep.prepare(xs, carry, lengths, D=params.input_size, H=H, R=H, dtype=dtype, where=where)
    (dW, dU, db, _), dxs, dcarry, tr = trace(VANILLA, Weights(*params, {}), p, g_hs, g_final, where=where)
    grads = LSTMParams(*(g.astype(a.dtype) for g, a in zip((dW, dU, db), params)))
    return grads, dxs, dcarry, tr
