"""The forward equations for one step (source 002, "The forward components")."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jlstm.core.params import LSTMParams, LSTMState
from jlstm.core.precision import matmul, state_dtype

__all__ = ["activate", "cell", "matmul", "state_dtype", "step"]


def activate(z: jax.Array) -> jax.Array:
    """Pre-activations ``[..., 4H]`` -> gates ``[..., 4H]``: tanh on the ``a`` block, sigmoid on i, f, o.

    One elementwise pass over all 4H columns with a single transcendental, ``tanh(x) = 2 sigmoid(2x) - 1``
    on the ``a`` block, so that XLA emits one fusion and no concatenate (a slice-tanh, a slice-sigmoid
    and a concatenate cost three ops per step on the CPU).
    """
    is_a = lax.broadcasted_iota(jnp.int32, z.shape, z.ndim - 1) < z.shape[-1] // 4
    s = jax.nn.sigmoid(jnp.where(is_a, 2 * z, z))
    return jnp.where(is_a, 2 * s - 1, s)


def step(gates: jax.Array, c_prev: jax.Array) -> tuple[jax.Array, jax.Array]:
    """state_t = a_t * i_t + f_t * state_{t-1};  out_t = tanh(state_t) * o_t."""
    H = c_prev.shape[-1]
    a, i, f, o = (gates[..., k * H : (k + 1) * H] for k in range(4))
    c = a * i + f * c_prev
    h = jnp.tanh(c) * o
    return h, c


def cell(params: LSTMParams, carry: LSTMState | tuple, x: jax.Array) -> tuple[LSTMState, jax.Array]:
    """One LSTM step, the source's forward equations::

        a_t = tanh(W_a x_t + U_a out_{t-1} + b_a)      i_t = sigmoid(W_i x_t + U_i out_{t-1} + b_i)
        f_t = sigmoid(W_f x_t + U_f out_{t-1} + b_f)   o_t = sigmoid(W_o x_t + U_o out_{t-1} + b_o)
        state_t = a_t * i_t + f_t * state_{t-1}        out_t = tanh(state_t) * o_t

    Args:
      params: ``LSTMParams`` with ``W [D, 4H]``, ``U [H, 4H]``, ``b [4H]``.
      carry: ``(h, c)``, each ``[..., H]``.
      x: ``[..., D]``.

    Returns:
      ``(LSTMState(h, c), h)``, scan-shaped: ``lax.scan(partial(cell, params), carry, xs)`` runs a
      sequence ``xs [T, ..., D]``.

    Dtypes: as in ``jlstm.lstm``. The compute dtype is ``result_type(x, h, *params)``; when it is a 16-bit
    float the products take 16-bit operands and accumulate in float32, the gates and ``c`` are float32
    (``c`` is returned in float32) and ``h`` is returned in the compute dtype.
    """
    from jlstm.core.checks import check_cell_args

    h_prev, c_prev = check_cell_args(params, carry, x)
    cd = jnp.result_type(x, h_prev, *params)
    sd = state_dtype(cd)
    W, U = params.W.astype(cd), params.U.astype(cd)
    z = matmul(x.astype(cd), W, sd) + matmul(h_prev.astype(cd), U, sd)
    z = z + params.b.astype(sd).reshape((1,) * (z.ndim - 1) + (-1,))  # explicit: rank promotion may be off
    h, c = step(activate(z), c_prev.astype(sd))
    h = h.astype(cd)
    return LSTMState(h, c), h
