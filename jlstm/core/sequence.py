"""``lstm()``: a ``lax.scan`` forward with the hand-written backward attached by ``jax.custom_vjp``."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax

from jlstm.core import checks as _checks
from jlstm.core.backward import Residuals, Trace, bptt, contractions, reverse_scan
from jlstm.core.cell import activate, matmul, state_dtype, step
from jlstm.core.params import LSTMParams, LSTMState


def _scan_forward(W, U, b, xs, h0, c0, mask):
    """Time-major forward. xs ``[T, B, D]``, h0/c0 ``[B, H]``, mask ``[T, B]`` or None.

    ``xs`` and ``h0`` are in the compute dtype, ``c0`` in its state dtype (``cell.state_dtype``); the
    parameters in any dtype (cast here: W, U to the compute dtype, b to the state dtype).

    Returns ``hs [T, B, H]``, ``hT`` (compute dtype), ``cT`` and the residuals the backward needs: the
    gates ``[T, B, 4H]`` and the state entering each step ``[T, B, H]`` (state dtype).
    """
    cd = xs.dtype
    sd = state_dtype(cd)
    W, U = W.astype(cd), U.astype(cd)
    # The input projection of every step, one contraction: [T, B, 4H], accumulated in the state dtype.
    zx = matmul(xs, W, sd) + b.astype(sd)[None, None]

    def body(carry, inp):
        h, c = carry
        zx_t, m = inp if mask is not None else (inp, None)
        gates = activate(zx_t + matmul(h, U, sd))  # only h @ U stays inside the loop
        h_new, c_new = step(gates, c)
        h_new = h_new.astype(cd)  # h is an operand of the next h @ U: compute dtype; c stays in sd
        if m is not None:
            m = m[:, None]
            h_new = jnp.where(m, h_new, h)  # padded steps leave the carry unchanged
            c_new = jnp.where(m, c_new, c)
            return (h_new, c_new), (jnp.where(m, h_new, 0), gates, c)
        return (h_new, c_new), (h_new, gates, c)

    (hT, cT), (hs, gates, c_prevs) = lax.scan(body, (h0, c0), zx if mask is None else (zx, mask))
    return hs, hT, cT, gates, c_prevs


def _autodiff(W, U, b, xs, h0, c0, mask):
    hs, hT, cT, _, _ = _scan_forward(W, U, b, xs, h0, c0, mask)
    return hs, hT, cT


# The parameters enter in their own dtypes (cast inside, to the compute dtype), so that dW, dU, db leave
# the hand-written pass accumulated in the state dtype and rounded once, to each parameter's dtype:
# float32 parameters computed in bfloat16 get float32 gradients. ``param_dtypes`` is static: the bwd
# must return cotangents of exactly the primal dtypes, which its residuals do not record.
@functools.partial(jax.custom_vjp, nondiff_argnums=(7, 8))
def _manual(W, U, b, xs, h0, c0, mask, remat, param_dtypes):
    return _autodiff(W, U, b, xs, h0, c0, mask)


def _manual_fwd(W, U, b, xs, h0, c0, mask, remat, param_dtypes):
    W, U = W.astype(xs.dtype), U.astype(xs.dtype)  # saved once in the compute dtype
    if remat is not None:
        return _remat_fwd(W, U, b, xs, h0, c0, mask, remat)
    hs, hT, cT, gates, c_prevs = _scan_forward(W, U, b, xs, h0, c0, mask)
    return (hs, hT, cT), Residuals(W, U, xs, h0, hs, gates, c_prevs, cT, mask)


def _manual_bwd(remat, param_dtypes, res, cts):
    g_hs, g_hT, g_cT = cts
    if remat is not None:
        dW, dU, db, dxs, dh0, dc0 = _remat_bwd(remat, res, g_hs, g_hT, g_cT)
    else:
        dW, dU, db, dxs, dh0, dc0 = bptt(res, g_hs, g_hT, g_cT)[0]
    dW, dU, db = (g.astype(dt) for g, dt in zip((dW, dU, db), param_dtypes))
    return dW, dU, db, dxs, dh0, dc0, None


_manual.defvjp(_manual_fwd, _manual_bwd)


def _chunked(a, k):
    """``[T, ...]`` -> ``[T / k, k, ...]`` (T a multiple of k)."""
    return a.reshape((a.shape[0] // k, k) + a.shape[1:])


def _pad_time(a, T_pad, value=0):
    pad = [(0, T_pad - a.shape[0])] + [(0, 0)] * (a.ndim - 1)
    return jnp.pad(a, pad, constant_values=value)


def _remat_fwd(W, U, b, xs, h0, c0, mask, k):
    """Forward that keeps only the carry entering every k-th step: residuals ``[T / k, B, 2H]`` instead
    of ``[T, B, 5H]``; the backward recomputes one chunk of k steps at a time (``[k, B, 5H]``).

    T is padded to a multiple of k with masked steps (the identity on the carry).
    """
    T = xs.shape[0]
    T_pad = -(-T // k) * k
    xs_p = _pad_time(xs, T_pad)
    mask_p = None
    if mask is not None or T_pad != T:
        mask_p = _pad_time(mask if mask is not None else jnp.ones(xs.shape[:2], bool), T_pad, False)

    def chunk(carry, inp):
        x_c, m_c = inp if mask_p is not None else (inp, None)
        hs, h, c, _, _ = _scan_forward(W, U, b, x_c, *carry, m_c)  # gates unused: dropped by XLA
        return (h, c), (hs, carry)

    inp = _chunked(xs_p, k) if mask_p is None else (_chunked(xs_p, k), _chunked(mask_p, k))
    (hT, cT), (hs, (h_starts, c_starts)) = lax.scan(chunk, (h0, c0), inp)
    hs = hs.reshape((T_pad,) + hs.shape[2:])[:T]
    return (hs, hT, cT), (W, U, b, xs_p, mask_p, h_starts, c_starts, T)


def _remat_bwd(k, res, g_hs, g_hT, g_cT):
    """Returns ``dW, dU, db`` in the state dtype (accumulated over chunks there), the rest in the
    primals' dtypes."""
    W, U, b, xs_p, mask_p, h_starts, c_starts, T = res
    T_pad = xs_p.shape[0]
    sd = c_starts.dtype
    g_hs_p = _pad_time(g_hs, T_pad)

    def chunk(carry, inp):
        dh, dc, dW, dU, db = carry
        if mask_p is not None:
            x_c, g_c, h_s, c_s, m_c = inp
        else:
            (x_c, g_c, h_s, c_s), m_c = inp, None
        hs, _, cT, gates, c_prevs = _scan_forward(W, U, b, x_c, h_s, c_s, m_c)  # recompute k steps
        (dh, dc), dgates = reverse_scan(U, gates, c_prevs, cT, m_c, g_c, dh, dc)
        h_prevs = jnp.concatenate([h_s[None], hs[:-1]], axis=0)
        dW_c, dU_c, db_c, dxs_c = contractions(W, x_c, h_prevs, dgates)
        return (dh, dc, dW + dW_c, dU + dU_c, db + db_c), dxs_c

    inp = (_chunked(xs_p, k), _chunked(g_hs_p, k), h_starts, c_starts)
    if mask_p is not None:
        inp = inp + (_chunked(mask_p, k),)
    zero = tuple(jnp.zeros(a.shape, sd) for a in (W, U, b))
    # dh stays in the state dtype across chunks: no rounding at chunk boundaries.
    carry0 = (g_hT.astype(sd), g_cT.astype(sd)) + zero
    (dh0, dc0, dW, dU, db), dxs = lax.scan(chunk, carry0, inp, reverse=True)
    dxs = dxs.reshape((-1,) + dxs.shape[2:])[:T]
    return dW, dU, db, dxs, dh0.astype(h_starts.dtype), dc0


def _reverse_time(xs: jax.Array, lengths: jax.Array | None) -> jax.Array:
    """Reverse ``[B, T, ...]`` along time; with lengths, each sequence within its own valid prefix."""
    if lengths is None:
        return jnp.flip(xs, axis=1)
    T = xs.shape[1]
    t = jnp.arange(T)[None, :]
    idx = jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)  # an involution: [B, T]
    idx = idx.reshape(idx.shape + (1,) * (xs.ndim - 2))
    return jnp.take_along_axis(xs, idx, axis=1)


def _check_compute_dtype(compute_dtype, where: str):
    """None, or a real floating dtype that JAX can run in (float64 only with jax_enable_x64)."""
    if compute_dtype is None:
        return None
    try:
        dt = jnp.dtype(compute_dtype)
    except TypeError:
        dt = None
    if dt is None or not jnp.issubdtype(dt, jnp.floating):
        got = dt.name if dt is not None else repr(compute_dtype)
        raise TypeError(
            f"{where}: compute_dtype must be None or a real floating dtype (jnp.bfloat16, jnp.float16, "
            f"jnp.float32, jnp.float64); got {got}."
        )
    if jax.dtypes.canonicalize_dtype(dt) != dt:
        raise ValueError(
            f"{where}: compute_dtype={dt.name} needs jax_enable_x64 (otherwise JAX computes in "
            f"{jax.dtypes.canonicalize_dtype(dt).name}); turn it on with "
            "jax.config.update('jax_enable_x64', True) or pass compute_dtype=None."
        )
    return dt


def _time_major(xs: jax.Array, lengths: jax.Array | None) -> tuple[jax.Array | None, jax.Array]:
    """``xs [B, T, D]`` -> ``(mask [T, B] or None, xs [T, B, D])`` with the padding zeroed, so that it
    never reaches dW, even if it holds NaN."""
    mask = None
    if lengths is not None:
        mask = jnp.arange(xs.shape[1])[:, None] < lengths[None, :]
        xs = jnp.where(mask.T[:, :, None], xs, 0)
    return mask, jnp.swapaxes(xs, 0, 1)


class _Prepared:
    """Inputs flattened to one batch axis: xs and h0 in the compute dtype, c0 in its state dtype; the
    parameters checked but left in their own dtypes (the computation casts them)."""

    def __init__(self, params, xs, carry, lengths, where, compute_dtype=None):
        params = _checks.check_params(params, where)
        D, H = params.input_size, params.hidden_size
        xs = _checks.check_xs(xs, D, where)
        self.batch_shape = tuple(xs.shape[:-2])
        self.T = xs.shape[-2]
        self.H = H
        B = math.prod(self.batch_shape)
        dtype = jnp.result_type(xs, *params) if compute_dtype is None else compute_dtype
        sd = state_dtype(dtype)
        if carry is None:
            h0, c0 = jnp.zeros((B, H), dtype), jnp.zeros((B, H), sd)
        else:
            h0, c0 = _checks.check_carry(carry, self.batch_shape, H, where)
            shape = self.batch_shape + (H,)
            h0, c0 = (jnp.broadcast_to(v.astype(t), shape).reshape(B, H) for v, t in ((h0, dtype), (c0, sd)))
        if lengths is not None:
            lengths = _checks.check_lengths(lengths, self.batch_shape, self.T, where).reshape(B)
        self.params = params
        self.param_dtypes = tuple(jnp.dtype(p.dtype) for p in params)
        self.xs = xs.astype(dtype).reshape(B, self.T, D)
        self.h0, self.c0, self.lengths, self.B = h0, c0, lengths, B

    def unflatten(self, hs, hT, cT):
        return hs.reshape(self.batch_shape + hs.shape[1:]), LSTMState(
            hT.reshape(self.batch_shape + (self.H,)), cT.reshape(self.batch_shape + (self.H,))
        )


def lstm(
    params: LSTMParams,
    xs: jax.Array,
    carry: LSTMState | tuple | None = None,
    *,
    lengths: jax.Array | None = None,
    reverse: bool = False,
    backward: str = "manual",
    remat: int | None = None,
    compute_dtype: jnp.dtype | None = None,
) -> tuple[jax.Array, LSTMState]:
    """Run an LSTM layer over a sequence.

    The forward is a ``lax.scan`` of the source's equations (see ``jlstm.cell``) after one contraction
    ``xs @ W + b`` for all steps. With ``backward="manual"`` its gradient is the hand-written
    back-propagation through time of ``jlstm.backward`` (attached with ``jax.custom_vjp``); with
    ``"autodiff"`` JAX differentiates the same forward. Both give the same numbers; the manual pass is
    faster and saves less.

    Args:
      params: ``LSTMParams`` with ``W [D, 4H]``, ``U [H, 4H]``, ``b [4H]``.
      xs: ``[..., T, D]``: any number of leading batch dims (none too), time second to last.
      carry: the initial ``(h0, c0)``, each ``[..., H]`` (broadcastable to the batch shape, so a single
        learned ``[H]`` state serves a whole batch); ``None`` means zeros.
      lengths: optional integer array with the batch shape of ``xs``: the number of valid steps of
        each sequence (right padding). Outputs at padded steps are zero; the final state is the state at
        each sequence's last valid step (the initial carry for length 0); padding gets zero gradient.
      reverse: run from the end of each sequence (its own last valid step, with ``lengths``); outputs
        stay aligned with the inputs.
      backward: ``"manual"`` (hand-written, default) or ``"autodiff"``.
      remat: ``None`` (default) saves the gates and states of every step for the backward
        (``[T, B, 5H]``). An int k keeps only the carry entering every k-th step and recomputes each
        chunk of k steps in the backward, so saved memory grows like ``T / k + k`` instead of ``T``, for
        about one extra forward pass of time; ``k ~ sqrt(T)`` minimises memory. Manual backward only.

      compute_dtype: ``None`` (default) computes in ``result_type(xs, *params)``; a floating dtype
        overrides it, e.g. ``jnp.bfloat16`` to run float32 parameters with bfloat16 products (the
        gradients still come back in float32, accumulated in float32).

    Dtypes (the precision policy; docs/performance.md, "Low precision"): the compute dtype is
    ``compute_dtype`` or ``result_type(xs, *params)``: float32 by default, float64 with
    ``jax_enable_x64``, float32 for bfloat16 ``xs`` with float32 params (promotion), bfloat16 or
    float16 when ``xs`` and params are. float32 and float64 compute everything in that dtype. Under a
    16-bit compute dtype the products ``xs @ W``, ``h @ U``, ``dgates @ U^T`` and the ``dW, dU, dxs``
    contractions take 16-bit operands and accumulate in float32; the gates, the cell state ``c`` and
    every backward carry are float32; ``hs`` and ``h`` are returned in the compute dtype and ``c`` in
    float32 (pass it back as the next carry unchanged); ``dW, dU, db`` are accumulated in float32 and
    returned in each parameter's own dtype.

    Returns:
      ``(hs, LSTMState(h, c))``: ``hs [..., T, H]`` and the final carry, each ``[..., H]``.
      Differentiable w.r.t. ``params``, ``xs`` and ``carry``, with cotangents on ``hs`` and on the
      final carry.

    Example:
      >>> params = jlstm.init(jax.random.key(0), input_size=3, hidden_size=5)
      >>> hs, (h, c) = jlstm.lstm(params, jnp.ones((8, 20, 3)))   # batch 8, T = 20
      >>> hs.shape, h.shape
      ((8, 20, 5), (8, 5))
    """
    where = "jlstm.lstm"
    _checks.check_backward(backward, where)
    if remat is not None and (isinstance(remat, bool) or not isinstance(remat, int) or remat < 1):
        raise ValueError(
            f"{where}: remat must be None or a positive int k (keep every k-th carry); got {remat!r}."
        )
    if remat is not None and backward != "manual":
        raise ValueError(f"{where}: remat applies to backward='manual' only; got backward={backward!r}.")
    compute_dtype = _check_compute_dtype(compute_dtype, where)
    p = _Prepared(params, xs, carry, lengths, where, compute_dtype)
    if p.T == 0:
        return p.unflatten(jnp.zeros((p.B, 0, p.H), p.xs.dtype), p.h0, p.c0)
    xs, lengths = p.xs, p.lengths
    if reverse:
        xs = _reverse_time(xs, lengths)
    mask, xs_tm = _time_major(xs, lengths)
    if backward == "manual":
        hs, hT, cT = _manual(*p.params, xs_tm, p.h0, p.c0, mask, remat, p.param_dtypes)
    else:
        hs, hT, cT = _autodiff(*p.params, xs_tm, p.h0, p.c0, mask)
    hs = jnp.swapaxes(hs, 0, 1)  # [B, T, H]
    if reverse:
        hs = _reverse_time(hs, lengths)
    return p.unflatten(hs, hT, cT)


def lstm_trace(
    params: LSTMParams,
    xs: jax.Array,
    g_hs: jax.Array,
    carry: LSTMState | tuple | None = None,
    g_final: LSTMState | tuple | None = None,
    *,
    lengths: jax.Array | None = None,
) -> tuple[LSTMParams, jax.Array, LSTMState, Trace]:
    """Run the hand-written backward and return its per-step quantities, to look inside BPTT.

    Args:
      params, xs, carry, lengths: as in ``lstm`` (forward direction).
      g_hs: ``[..., T, H]`` the loss's gradient w.r.t. ``hs`` (the source's ``Delta_t``).
      g_final: optional cotangents ``(g_h, g_c)`` on the final carry, each ``[..., H]``.

    Returns:
      ``(dparams, dxs, dcarry0, trace)`` where ``trace`` is a ``backward.Trace`` whose fields
      (``delta_out``, ``delta_state``, ``delta_gates``, ``delta_x``, ``Delta_out_prev``) are
      ``[..., T, H]`` (``[..., T, 4H]`` for the gates, ``[..., T, D]`` for ``delta_x``), named as in the
      source. ``Delta_out_prev[..., t, :]`` is ``Delta out_{t-1}``.
    """
    where = "jlstm.lstm_trace"
    p = _Prepared(params, xs, carry, lengths, where)
    dtype = p.xs.dtype
    g_hs = _checks._floating("g_hs", g_hs, where)
    if g_hs.shape != p.batch_shape + (p.T, p.H):
        raise ValueError(f"{where}: g_hs must be {p.batch_shape + (p.T, p.H)} like hs; got {g_hs.shape}.")
    sd = state_dtype(dtype)
    if g_final is None:
        g_hT, g_cT = jnp.zeros((p.B, p.H), dtype), jnp.zeros((p.B, p.H), sd)
    else:
        g_hT, g_cT = (
            jnp.broadcast_to(v.astype(t), p.batch_shape + (p.H,)).reshape(p.B, p.H)
            for v, t in zip(_checks.check_carry(g_final, p.batch_shape, p.H, where), (dtype, sd))
        )
    mask, xs_tm = _time_major(p.xs, p.lengths)
    W, U = p.params.W.astype(dtype), p.params.U.astype(dtype)
    hs, _, cT, gates, c_prevs = _scan_forward(W, U, p.params.b, xs_tm, p.h0, p.c0, mask)
    res = Residuals(W, U, xs_tm, p.h0, hs, gates, c_prevs, cT, mask)
    g_tm = jnp.swapaxes(g_hs.astype(dtype).reshape(p.B, p.T, p.H), 0, 1)
    grads, tr = bptt(res, g_tm, g_hT, g_cT, trace=True)

    def batch_major(a):
        return jnp.swapaxes(a, 0, 1).reshape(p.batch_shape + (p.T, a.shape[-1]))

    carry_shape = p.batch_shape + (p.H,)
    return (
        LSTMParams(*(g.astype(dt) for g, dt in zip((grads.W, grads.U, grads.b), p.param_dtypes))),
        batch_major(grads.xs),
        LSTMState(grads.h0.reshape(carry_shape), grads.c0.reshape(carry_shape)),
        Trace(*(batch_major(a) for a in tr)),
    )
