"""The sequence machinery for any pointwise ``Cell``: a two-level time loop under ``jax.custom_vjp``.

Time is cut into chunks of k steps. Forward: per chunk, the input projection ``xs @ W + b`` as one
product, then a ``lax.scan`` with only ``h @ U`` inside. Backward: per chunk in reverse, a reverse scan
of the cell's backward with only ``dzh @ U^T`` inside, then the chunk's contractions into ``dW``, ``dU``,
``db``, ``dxs``. So neither the projection nor the delta gates exist at full length ``[T, B, GH]``,
while the products stay large (``k * B`` rows). Without remat the forward saves the cell's residuals of
every step; with remat it saves only the carry entering each chunk and recomputes the chunk.

Time-major throughout: ``xs [T, B, D]``, ``h0 [B, R]``, ``c0 [B, H]``, ``mask [T, B]`` (True at valid
steps) or None, ``noise`` a pytree of ``[T, B, ...]`` or None, dropout masks ``mx [B, G', D]`` and
``mh [B, G', R]`` or None. ``xs``, ``h0`` and the weights' products are in the compute dtype; the cell
state, the pre-activations, every backward carry and every accumulation in its state dtype.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jlstm.core.cell import state_dtype
from jlstm.core.interface import Cell
from jlstm.core.products import outer, product, product_T


class Plan(NamedTuple):
    """Static choices of one call: the chunk length, whether chunks are recomputed, the primal dtypes of
    the parameters (the backward must return exactly those)."""

    k: int
    remat: bool
    param_dtypes: tuple


class Inputs(NamedTuple):
    """The non-differentiable, per-step inputs, chunked ``[n, k, ...]``."""

    mask: jax.Array | None
    noise: object


def _chunks(tree, k):
    return jax.tree.map(lambda a: a.reshape((a.shape[0] // k, k) + a.shape[1:]), tree)


def _unchunk(a):
    # Explicit sizes: a -1 cannot be resolved when the batch is empty (a.size == 0).
    return a.reshape((a.shape[0] * a.shape[1],) + a.shape[2:])


def chunk_forward(cell: Cell, theta, W, U, b, xs, h, c, mask, noise, mx, mh):
    """k steps from the carry ``(h, c)``. Returns ``(h, c), (ys [k, B, R], res, c_prevs [k, B, H])``.

    ``ys`` is zero at padded steps, where the carry passes unchanged."""
    cd = xs.dtype
    sd = state_dtype(cd)
    zx = product(xs, W, mx, sd)  # the chunk's input projection, one product
    if b is not None:
        zx = zx + b.astype(sd)[None, None]  # explicit: rank promotion may be off

    def body(carry, inp):
        h, c = carry
        zx_t, m, n = inp
        zh = product(h, U, mh, sd)  # only h @ U stays inside the loop
        h_new, c_new, res = cell.forward(theta, zx_t, zh, h, c, n)
        h_new = h_new.astype(cd)
        if m is None:
            return (h_new, c_new), (h_new, res, c)
        m = m[:, None]
        h_new, c_new = jnp.where(m, h_new, h), jnp.where(m, c_new, c)  # padding: the identity on the carry
        return (h_new, c_new), (jnp.where(m, h_new, 0), res, c)

    return lax.scan(body, (h, c), (zx, mask, noise))


def chunk_backward(cell: Cell, theta, U, U_T, res, c_prevs, c_end, g_ys, mask, noise, mh, dh, dc, dth, trace):
    """The reverse scan of the cell's backward over one chunk.

    Returns ``(dh, dc, dtheta)`` entering the chunk and, per step, ``dzx [k, B, GH]``, ``dzh`` (or None)
    and, with ``trace``, ``(delta_out, delta_state, Delta_out_prev)``."""
    cd, sd = U.dtype, c_end.dtype

    def body(carry, inp):
        dh, dc, c, dth = carry
        r, c_prev, g, m, n = inp
        g = g.astype(sd)
        dh_in, dc_in = dh, dc
        if m is not None:  # a padded step passes the carry's gradient through and produces nothing
            mm = m[:, None]
            g, dh_in, dc_in = jnp.where(mm, g, 0), jnp.where(mm, dh, 0), jnp.where(mm, dc, 0)
        s = cell.backward(theta, r, c_prev, c, g, dh_in, dc_in, n)
        dzx = s.dzx.astype(cd)  # the 16-bit operand of the products, under 16-bit compute
        dzh = dzx if s.dzh is None else s.dzh.astype(cd)
        # Delta out_{t-1} = U^T . delta gates_t (source 002; erratum: the gates of step t), plus any
        # direct path of the cell from h_{t-1} to h_t (zoneout).
        dh_prev = product_T(dzh, U, U_T, mh, sd)
        if s.dh_prev is not None:
            dh_prev = dh_prev + s.dh_prev
        dc_prev = s.dc_prev
        if m is not None:
            dh_prev, dc_prev = jnp.where(mm, dh_prev, dh), jnp.where(mm, dc_prev, dc)
        dth = jax.tree.map(jnp.add, dth, s.dtheta)
        out: tuple = (dzx, None if s.dzh is None else dzh)
        if trace:
            out = out + ((g + dh_in, s.delta_state, dh_prev),)
        return (dh_prev, dc_prev, c_prev, dth), out

    (dh, dc, _, dth), out = lax.scan(
        body, (dh, dc, c_end, dth), (res, c_prevs, g_ys, mask, noise), reverse=True
    )
    return (dh, dc, dth), out


def forward(cell: Cell, plan: Plan, theta, W, U, b, xs, h0, c0, inputs: Inputs, mx, mh):
    """The chunked forward. Returns ``(ys [T, B, R], hT, cT)`` and the residuals of every chunk."""
    W, U = W.astype(xs.dtype), U.astype(xs.dtype)

    def step(carry, inp):
        x_c, m_c, n_c = inp
        h, c = carry
        (h, c), (ys, res, c_prevs) = chunk_forward(cell, theta, W, U, b, x_c, h, c, m_c, n_c, mx, mh)
        saved = (carry,) if plan.remat else (carry, res, c_prevs)
        return (h, c), (ys, saved)

    (hT, cT), (ys, saved) = lax.scan(step, (h0, c0), (_chunks(xs, plan.k), inputs.mask, inputs.noise))
    return (_unchunk(ys), hT, cT), (ys, saved)


def _autodiff(cell, plan, theta, W, U, b, xs, h0, c0, inputs, mx, mh):
    return forward(cell, plan, theta, W, U, b, xs, h0, c0, inputs, mx, mh)[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _manual(cell, plan, theta, W, U, b, xs, h0, c0, inputs, mx, mh):
    return _autodiff(cell, plan, theta, W, U, b, xs, h0, c0, inputs, mx, mh)


def _manual_fwd(cell, plan, theta, W, U, b, xs, h0, c0, inputs, mx, mh):
    W, U = W.astype(xs.dtype), U.astype(xs.dtype)  # saved once in the compute dtype
    out, (ys, saved) = forward(cell, plan, theta, W, U, b, xs, h0, c0, inputs, mx, mh)
    return out, (theta, W, U, b, xs, out[2], inputs, mx, mh, ys, saved)


def backward(cell, plan, res, g_ys, g_hT, g_cT, *, trace=False):
    """All chunks in reverse. Returns ``(dtheta, dW, dU, db, dxs, dh0, dc0)`` (parameters' gradients in the
    state dtype) and, with ``trace``, the per-step trace ``[T, B, ...]``."""
    theta, W, U, b, xs, cT, inputs, mx, mh, ys, saved = res
    sd = cT.dtype
    U_T = lax.optimization_barrier(U.T)  # materialised once: the CPU runs a transposed layout 10-25 % slower
    zeros = lambda a: jnp.zeros(a.shape, sd)  # noqa: E731
    acc0 = (jax.tree.map(zeros, theta), zeros(W), zeros(U), None if b is None else zeros(b))

    def step(carry, inp):
        dh, dc, c_end, (dth, dW, dU, db) = carry
        x_c, g_c, m_c, n_c, ys_c, sv = inp
        (h_s, c_s) = sv[0]
        if plan.remat:  # recompute the chunk's residuals from the carry that entered it
            _, (ys_c, r_c, cp_c) = chunk_forward(cell, theta, W, U, b, x_c, h_s, c_s, m_c, n_c, mx, mh)
        else:
            r_c, cp_c = sv[1], sv[2]
        (dh, dc, dth), out = chunk_backward(
            cell, theta, U, U_T, r_c, cp_c, c_end, g_c, m_c, n_c, mh, dh, dc, dth, trace
        )
        dzx, dzh = out[0], (out[0] if out[1] is None else out[1])
        h_prevs = jnp.concatenate([h_s[None], ys_c[:-1]], axis=0)  # out_{t-1} (unused at padded steps)
        # delta W = sum_t x_t (x) delta gates_t;  delta U = sum_t out_{t-1} (x) delta gates_t
        dW, dU = dW + outer(x_c, dzx, mx, sd), dU + outer(h_prevs, dzh, mh, sd)
        if db is not None:
            db = db + jnp.sum(dzx, axis=(0, 1), dtype=sd)  # delta b = sum_t delta gates_t
        dxs = product_T(dzx, W, W.T, mx, sd).astype(xs.dtype)  # delta x_t = W^T . delta gates_t
        per_step = (dxs, dzx) + out[2] if trace else dxs
        return (dh, dc, c_s, (dth, dW, dU, db)), per_step

    k = plan.k
    inp = (_chunks(xs, k), _chunks(g_ys, k), inputs.mask, inputs.noise, ys, saved)
    carry0 = (g_hT.astype(sd), g_cT.astype(sd), cT, acc0)
    (dh0, dc0, _, (dth, dW, dU, db)), per_step = lax.scan(step, carry0, inp, reverse=True)
    per_step = jax.tree.map(_unchunk, per_step)
    dxs = per_step[0] if trace else per_step
    grads = (dth, dW, dU, db, dxs, dh0, dc0)
    return (grads, per_step) if trace else grads


def _manual_bwd(cell, plan, res, cts):
    g_ys, g_hT, g_cT = cts
    dth, dW, dU, db, dxs, dh0, dc0 = backward(cell, plan, res, g_ys, g_hT, g_cT)
    theta, h_dtype = res[0], res[9].dtype
    dth = jax.tree.map(lambda g, p: g.astype(p.dtype), dth, theta)
    dt_W, dt_U, dt_b = plan.param_dtypes
    db = None if db is None else db.astype(dt_b)
    return dth, dW.astype(dt_W), dU.astype(dt_U), db, dxs, dh0.astype(h_dtype), dc0, None, None, None


_manual.defvjp(_manual_fwd, _manual_bwd)


def scan_cell(
    cell: Cell, plan: Plan, theta, W, U, b, xs, h0, c0, inputs: Inputs, mx=None, mh=None, *, manual=True
):
    """``(ys [T, B, R], hT [B, R], cT [B, H])`` of ``cell`` over time-major inputs (T a multiple of
    ``plan.k``; ``inputs`` chunked by it). ``manual=False`` lets JAX differentiate the same forward."""
    fn = _manual if manual else _autodiff
    return fn(cell, plan, theta, W, U, b, xs, h0, c0, inputs, mx, mh)
