"""The sequence machinery for any pointwise ``Cell`` and any recurrent state: a two-level time loop
under ``jax.custom_vjp``.

Time is cut into chunks of k steps. Forward: per chunk, the input projection ``xs @ W + b`` as one
product, then a ``lax.scan`` with only the recurrent product ``zh = s_rec @ U`` inside. Backward: per
chunk in reverse, a reverse scan of the cell's backward with only ``dzh @ U^T`` inside, then the chunk's
contractions into ``dW``, ``dU``, ``db``, ``dxs``. So neither the projection nor the delta gates exist at
full length ``[T, B, GH]``, while the products stay large (``k * B`` rows). Without remat the forward
saves the cell's residuals of every step; with remat it saves only the state entering each chunk and
recomputes the chunk.

Time-major throughout: ``xs [T, B, D]``, the state a tuple of ``[B, width]`` arrays in the cell's order
(``jlstm.core.state``), per-step inputs ``PerStep(mask [T, B] or None, noise)``, dropout masks
``Dropout(mx [B, G', D], mh [B, G', R])`` or None. Dtypes follow ``jlstm.core.precision``.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jlstm.core.interface import Cell
from jlstm.core.precision import state_dtype
from jlstm.core.products import outer, product, product_T, rec_outer, rec_product, rec_product_T
from jlstm.core.state import dtypes as state_dtypes


class Plan(NamedTuple):
    """Static choices of one call: the chunk length, whether chunks are recomputed, the primal dtypes of
    ``W``, ``U``, ``b`` (the backward returns exactly those)."""

    k: int
    remat: bool
    param_dtypes: tuple


class Weights(NamedTuple):
    """``W [D, GH]``, ``U [R, GH]`` (or block-diagonal ``[heads, R / heads, GH / heads]``), ``b [GH]``
    (None when the cell adds it itself, inside ``theta``), ``theta`` the cell's own parameters."""

    W: jax.Array
    U: jax.Array
    b: jax.Array | None
    theta: Any


class PerStep(NamedTuple):
    """The non-differentiable per-step inputs, ``[T, B, ...]`` (chunked ``[n, k, B, ...]`` inside)."""

    mask: jax.Array | None
    noise: Any


class Dropout(NamedTuple):
    """Dropout masks on the products' inputs, fixed over time: ``mx`` on ``x``, ``mh`` on the recurrent
    state (None for none)."""

    mx: jax.Array | None = None
    mh: jax.Array | None = None


class Saved(NamedTuple):
    """What the forward keeps of one chunk: the state entering it and, without remat, the cell's
    residuals and the previous value of every state but the output (the output's are the ``ys``)."""

    state_in: tuple
    res: Any
    prevs: tuple | None


class Residuals(NamedTuple):
    """Everything the backward reads: the weights as product operands, the inputs, the final state, the
    outputs and the saved chunks (each ``[n, ...]``)."""

    w: Weights
    xs: jax.Array
    per_step: PerStep
    drop: Dropout
    final: tuple
    ys: jax.Array
    saved: Saved


def _chunks(tree, k):
    return jax.tree.map(lambda a: a.reshape((a.shape[0] // k, k) + a.shape[1:]), tree)


def _unchunk(a):
    # Explicit sizes: a -1 cannot be resolved when the batch is empty (a.size == 0).
    return a.reshape((a.shape[0] * a.shape[1],) + a.shape[2:])


def chunk_forward(cell: Cell, w: Weights, xs, per_step: PerStep, state: tuple, drop: Dropout):
    """k steps from ``state``. Returns ``state, (ys [k, B, R], res, prevs)``; ``ys`` is zero at padded
    steps, where the state passes unchanged."""
    cd = xs.dtype
    sd = state_dtype(cd)
    dts = state_dtypes(cell, cd)
    zx = product(xs, w.W, drop.mx, sd)  # the chunk's input projection, one product
    if w.b is not None:
        zx = zx + w.b.astype(sd)[None, None]  # explicit: rank promotion may be off

    def body(prev, inp):
        zx_t, m, n = inp
        zh = rec_product(prev[cell.recurrent], w.U, cell.num_gates, drop.mh, sd)  # the loop's one product
        new, res = cell.forward(w.theta, zx_t, zh, prev, n)
        new = tuple(v.astype(dt) for v, dt in zip(new, dts))
        kept = tuple(p for j, p in enumerate(prev) if j != cell.output)
        if m is None:
            return new, (new[cell.output], res, kept)
        m = m[:, None]
        new = tuple(jnp.where(m, v, p) for v, p in zip(new, prev))  # padding: the identity on the state
        return new, (jnp.where(m, new[cell.output], 0), res, kept)

    return lax.scan(body, state, (zx, per_step.mask, per_step.noise))


def prev_states(cell: Cell, state_in: tuple, ys, kept: tuple) -> tuple:
    """Every state's value before each step of a chunk, ``[k, B, width]``: the output's from the ``ys``
    (out_{t-1}; wrong only at padded steps, which contribute nothing), the others as saved."""
    others = iter(kept)
    y_prev = jnp.concatenate([state_in[cell.output][None], ys[:-1]], axis=0)
    return tuple(y_prev if j == cell.output else next(others) for j in range(len(state_in)))


def chunk_backward(cell: Cell, w: Weights, U_T, chunk, drop: Dropout, carry, trace: bool):
    """The reverse scan of the cell's backward over one chunk. ``chunk``: ``(res, prevs, state_end,
    g_ys, per_step)``; ``carry``: ``(d_state, dtheta)`` entering from the chunk's end.

    Returns ``(d_state, dtheta)`` at the chunk's start and, per step, ``dzx [k, B, GH]``, ``dzh`` (or
    None) and, with ``trace``, ``(delta_out, delta_state, Delta_out_prev)``."""
    res, prevs, state_end, g_ys, per_step = chunk
    cd, rec, out = w.U.dtype, cell.recurrent, cell.output
    sd = state_dtype(cd)

    def body(carry, inp):
        d, new, dth = carry
        r, prev, g, m, n = inp
        g = g.astype(sd)
        d_in = d
        if m is not None:  # a padded step passes the state's gradient through and produces nothing
            mm = m[:, None]
            g, d_in = jnp.where(mm, g, 0), tuple(jnp.where(mm, v, 0) for v in d)
        s = cell.backward(w.theta, r, prev, new, g, d_in, n)
        dzx = s.dzx.astype(cd)  # the 16-bit operand of the products, under 16-bit compute
        dzh = dzx if s.dzh is None else s.dzh.astype(cd)
        # Delta out_{t-1} = U^T . delta gates_t (source 002; erratum: the gates of step t), plus the
        # cell's direct paths from each previous state (zoneout, a GRU's z * h_{t-1}).
        d_prev = tuple(jnp.zeros_like(v) if dp is None else dp.astype(sd) for v, dp in zip(d, s.d_prev))
        d_rec = rec_product_T(dzh, w.U, U_T, cell.num_gates, drop.mh, sd)
        d_prev = d_prev[:rec] + (d_prev[rec] + d_rec,) + d_prev[rec + 1 :]
        if m is not None:
            d_prev = tuple(jnp.where(mm, v, dv) for v, dv in zip(d_prev, d))
        dth = jax.tree.map(jnp.add, dth, s.dtheta)
        step_out: tuple = (dzx, None if s.dzh is None else dzh)
        if trace:
            ds = jnp.zeros(g.shape[:-1] + (0,), sd) if s.delta_state is None else s.delta_state
            step_out = step_out + ((g + d_in[out], ds, d_prev[rec]),)
        return (d_prev, prev, dth), step_out

    d, dth = carry
    (d, _, dth), per = lax.scan(
        body, (d, state_end, dth), (res, prevs, g_ys, per_step.mask, per_step.noise), reverse=True
    )
    return (d, dth), per


def forward(cell: Cell, plan: Plan, w: Weights, xs, state0: tuple, per_step: PerStep, drop: Dropout):
    """The chunked forward. Returns ``(ys [T, B, R], final state)`` and the ``Residuals``."""
    w = w._replace(W=w.W.astype(xs.dtype), U=w.U.astype(xs.dtype))  # saved once in the compute dtype

    def step(state, inp):
        x_c, ps_c = inp
        new, (ys, res, kept) = chunk_forward(cell, w, x_c, ps_c, state, drop)
        saved = Saved(state, None, None) if plan.remat else Saved(state, res, kept)
        return new, (ys, saved)

    per_step = _chunks(per_step, plan.k)
    final, (ys, saved) = lax.scan(step, state0, (_chunks(xs, plan.k), per_step))
    return (_unchunk(ys), final), Residuals(w, xs, per_step, drop, final, ys, saved)


class _Loop(NamedTuple):
    """The backward's static context: the cell, the plan, the weights and ``U^T``, the masks."""

    cell: Cell
    plan: Plan
    w: Weights
    U_T: jax.Array
    drop: Dropout


def chunk_grads(loop: _Loop, inp, state_end, carry, trace: bool):
    """One chunk of the backward: its reverse scan, then its contractions into the accumulators."""
    cell, w, U_T, drop = loop.cell, loop.w, loop.U_T, loop.drop
    d, (dth, dW, dU, db) = carry
    x_c, g_c, ps_c, ys_c, sv = inp
    sd = dW.dtype
    res, kept = sv.res, sv.prevs
    if loop.plan.remat:  # recompute the chunk's residuals from the state that entered it
        _, (ys_c, res, kept) = chunk_forward(cell, w, x_c, ps_c, sv.state_in, drop)
    prevs = prev_states(cell, sv.state_in, ys_c, kept)
    (d, dth), per = chunk_backward(cell, w, U_T, (res, prevs, state_end, g_c, ps_c), drop, (d, dth), trace)
    dzx, dzh = per[0], (per[0] if per[1] is None else per[1])
    # delta W = sum_t x_t (x) delta gates_t;  delta U = sum_t s_rec,{t-1} (x) delta gates_t
    dW = dW + outer(x_c, dzx, drop.mx, sd)
    dU = dU + rec_outer(prevs[cell.recurrent], dzh, w.U, cell.num_gates, drop.mh, sd)
    if db is not None:
        db = db + jnp.sum(dzx, axis=(0, 1), dtype=sd)  # delta b = sum_t delta gates_t
    dxs = product_T(dzx, w.W, w.W.T, drop.mx, sd).astype(x_c.dtype)  # delta x_t = W^T . delta gates_t
    per_step = (dxs, dzx) + per[2] if trace else dxs
    return (d, (dth, dW, dU, db)), per_step


def backward(cell: Cell, plan: Plan, res: Residuals, g_ys, g_final: tuple, *, trace=False):
    """All chunks in reverse. Returns ``(Weights of gradients, dxs, d_state0)`` (the parameters'
    gradients in the state dtype) and, with ``trace``, the per-step trace ``[T, B, ...]``."""
    w = res.w
    sd = state_dtype(res.xs.dtype)
    U_T = lax.optimization_barrier(w.U.T) if w.U.ndim == 2 else w.U  # once: a transposed layout is slower
    zeros = lambda a: jnp.zeros(a.shape, sd)  # noqa: E731
    acc0 = (jax.tree.map(zeros, w.theta), zeros(w.W), zeros(w.U), None if w.b is None else zeros(w.b))
    loop = _Loop(cell, plan, w, U_T, res.drop)

    def step(carry, inp):
        d, state_end, acc = carry
        new_carry, per_step = chunk_grads(loop, inp, state_end, (d, acc), trace)
        return (new_carry[0], inp[-1].state_in, new_carry[1]), per_step

    inp = (_chunks(res.xs, plan.k), _chunks(g_ys, plan.k), res.per_step, res.ys, res.saved)
    carry0 = (tuple(g.astype(sd) for g in g_final), res.final, acc0)
    (d0, _, (dth, dW, dU, db)), per_step = lax.scan(step, carry0, inp, reverse=True)
    per_step = jax.tree.map(_unchunk, per_step)
    dxs = per_step[0] if trace else per_step
    grads = (Weights(dW, dU, db, dth), dxs, d0)
    return (grads, per_step) if trace else grads


def _autodiff(cell, plan, w, xs, state0, per_step, drop):
    return forward(cell, plan, w, xs, state0, per_step, drop)[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _manual(cell, plan, w, xs, state0, per_step, drop):
    return _autodiff(cell, plan, w, xs, state0, per_step, drop)


def _manual_fwd(cell, plan, w, xs, state0, per_step, drop):
    return forward(cell, plan, w, xs, state0, per_step, drop)


def _manual_bwd(cell, plan, res: Residuals, cts):
    g_ys, g_final = cts
    g, dxs, d0 = backward(cell, plan, res, g_ys, g_final)
    dt_W, dt_U, dt_b = plan.param_dtypes
    dth = jax.tree.map(lambda a, p: a.astype(p.dtype), g.theta, res.w.theta)
    db = None if g.b is None else g.b.astype(dt_b)
    d0 = tuple(v.astype(s.dtype) for v, s in zip(d0, res.final))
    return Weights(g.W.astype(dt_W), g.U.astype(dt_U), db, dth), dxs, d0, None, None


_manual.defvjp(_manual_fwd, _manual_bwd)


def scan_cell(
    cell: Cell, plan: Plan, w: Weights, xs, state0: tuple, per_step: PerStep, drop: Dropout, *, manual=True
):
    """``(ys [T, B, R], final state)`` of a state ``cell`` (``jlstm.core.state.as_state_cell``) over
    time-major inputs, T a multiple of ``plan.k``. ``manual=False`` lets JAX differentiate the same
    forward."""
    fn = _manual if manual else _autodiff
    return fn(cell, plan, w, xs, state0, per_step, drop)
