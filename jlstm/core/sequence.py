"""Running a cell over a sequence: the batch-major public layout around the time-major machinery.

``run`` takes any ``Cell`` with its weights and a ``Prepared`` input and returns ``(ys, final state)``;
``trace`` runs the hand-written backward and returns its per-step quantities. Every public function
(``jlstm.lstm``, ``lstm_trace``, ``cell``, the stacks, TBPTT, the layers) reaches the engine here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jlstm.core import checks as _checks
from jlstm.core import machinery as _m
from jlstm.core import prepare as _prep
from jlstm.core.backward import Trace
from jlstm.core.interface import Cell
from jlstm.core.machinery import Dropout, Weights
from jlstm.core.precision import state_dtype
from jlstm.core.state import as_state_cell

__all__ = ["Dropout", "Weights", "reverse_time", "run", "trace"]

NO_DROPOUT = Dropout()


def _pad_steps(a, T_pad, value=0):
    return jnp.pad(a, [(0, T_pad - a.shape[0])] + [(0, 0)] * (a.ndim - 1), constant_values=value)


def _plan(p: _prep.Prepared, w: Weights, remat, backward: str) -> _m.Plan:
    """The chunk length (remat's, else ``default_chunk``'s; one chunk for autodiff) and the dtypes."""
    T = p.T
    if remat == "auto":  # the chunk length from the size of what would be saved (None: save every step)
        remat = _prep.auto_remat(T, p.B, p.H, p.R, jnp.dtype(state_dtype(p.xs.dtype)).itemsize)
    k = int(remat) if remat is not None else (T if backward != "manual" else _prep.default_chunk(T, p.B))
    dtypes = tuple(None if a is None else jnp.dtype(a.dtype) for a in (w.W, w.U, w.b))
    return _m.Plan(k, remat is not None, dtypes)


def run(
    cell: Cell,
    w: Weights,
    p: _prep.Prepared,
    *,
    reverse: bool = False,
    backward: str = "manual",
    remat: int | str | None = None,
    noise=None,
    drop: Dropout = NO_DROPOUT,
):
    """Run ``cell`` over ``p.xs [B, T, D]``. ``noise``: a pytree of ``[T, B, ...]`` per-step arrays in
    processing order (after ``reverse``), or None. Returns ``(ys [..., T, R], final state)`` in the
    caller's batch shape, the state as ``p.state_type``."""
    cell = as_state_cell(cell)
    if p.T == 0:
        return p.unflatten(jnp.zeros((p.B, 0, p.R), p.xs.dtype), p.state0)
    xs, lengths = p.xs, p.lengths
    if reverse:
        xs = reverse_time(xs, lengths)
    mask, xs_tm = _prep.time_major(xs, lengths)
    plan = _plan(p, w, remat, backward)
    T_pad = -(-p.T // plan.k) * plan.k
    if T_pad != p.T:  # remat's chunks: pad with masked steps, the identity on the state
        mask = _pad_steps(mask if mask is not None else jnp.ones((p.T, p.B), bool), T_pad, False)
        xs_tm = _pad_steps(xs_tm, T_pad)
        noise = jax.tree.map(lambda a: _pad_steps(a, T_pad), noise)
    per_step = _m.PerStep(mask, noise)
    ys, final = _m.scan_cell(cell, plan, w, xs_tm, p.state0, per_step, drop, manual=backward == "manual")
    ys = jnp.swapaxes(ys[: p.T], 0, 1)  # [B, T, R]
    if reverse:
        ys = reverse_time(ys, lengths)
    return p.unflatten(ys, final)


reverse_time = _prep.reverse_time


def _final_cotangents(p: _prep.Prepared, cell: Cell, g_final, where: str) -> tuple:
    """``g_final`` (None: zeros) as ``[B, width]`` arrays in the state dtype."""
    sd = state_dtype(p.xs.dtype)
    if g_final is None:
        return tuple(jnp.zeros(v.shape, sd) for v in p.state0)
    sizes = tuple(v.shape[-1] for v in p.state0)
    given = _checks.check_state(g_final, cell, p.batch_shape, sizes, where, arg="g_final")
    return tuple(
        jnp.broadcast_to(v.astype(sd), p.batch_shape + (n,)).reshape(p.B, n) for v, n in zip(given, sizes)
    )


def trace(cell: Cell, w: Weights, p: _prep.Prepared, g_hs, g_final, *, noise=None, drop=NO_DROPOUT, where):
    """The hand-written backward of ``cell`` with its per-step quantities (see ``lstm_trace``).

    Returns ``(Weights of gradients, dxs [..., T, D], d_state0, Trace)``; gradients in the state dtype.
    """
    cell = as_state_cell(cell)
    g_hs = _checks._floating("g_hs", g_hs, where)
    if g_hs.shape != p.batch_shape + (p.T, p.R):
        raise ValueError(f"{where}: g_hs must be {p.batch_shape + (p.T, p.R)} like hs; got {g_hs.shape}.")
    g_fin = _final_cotangents(p, cell, g_final, where)
    if p.T == 0:
        return _empty_trace(w, p, g_fin)
    mask, xs_tm = _prep.time_major(p.xs, p.lengths)
    plan = _m.Plan(p.T, False, ())
    (_, final), res = _m.forward(cell, plan, w, xs_tm, p.state0, _m.PerStep(mask, noise), drop)
    g_tm = jnp.swapaxes(g_hs.astype(p.xs.dtype).reshape(p.B, p.T, p.R), 0, 1)
    (grads, dxs, d0), (_, dzx, delta_out, delta_state, dh_prev) = _m.backward(
        cell, plan, res, g_tm, g_fin, trace=True
    )

    def batch_major(a):
        return jnp.swapaxes(a, 0, 1).reshape(p.batch_shape + (p.T, a.shape[-1]))

    d0 = tuple(v.astype(s.dtype) for v, s in zip(d0, p.state0))
    tr = Trace(*(batch_major(a) for a in (delta_out, delta_state, dzx, dxs, dh_prev)))
    return grads, batch_major(dxs), p.unflatten(jnp.zeros((p.B, 0, 0)), d0)[1], tr


def _empty_trace(w: Weights, p: _prep.Prepared, g_fin: tuple):
    """``trace`` of a sequence of no steps: no parameter gradient, and the final state's cotangent is
    the initial state's (the state passes through unchanged)."""
    sd = state_dtype(p.xs.dtype)
    zeros = lambda a: jnp.zeros(a.shape, sd)  # noqa: E731
    grads = Weights(zeros(w.W), zeros(w.U), None if w.b is None else zeros(w.b), jax.tree.map(zeros, w.theta))
    widths = (p.R, p.H, w.W.shape[1], p.xs.shape[-1], p.R)
    tr = Trace(*(jnp.zeros(p.batch_shape + (0, n), sd) for n in widths))
    d0 = tuple(v.astype(s.dtype) for v, s in zip(g_fin, p.state0))
    return (
        grads,
        jnp.zeros(p.batch_shape + (0, p.xs.shape[-1]), p.xs.dtype),
        p.unflatten(jnp.zeros((p.B, 0, 0)), d0)[1],
        tr,
    )
