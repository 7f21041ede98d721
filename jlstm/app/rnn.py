"""The tanh RNN that the gradient-flow study sets beside the LSTM: ``h_t = tanh(x_t W + h_{t-1} U + b)``."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from jlstm.app.tasks import dense


def rnn_init(key: jax.Array, input_size: int, hidden_size: int) -> dict:
    """A vanilla tanh RNN ``h_t = tanh(x_t W + h_{t-1} U + b)`` initialised like ``jlstm.init``."""
    bound = 1.0 / math.sqrt(hidden_size)
    kw, ku = jax.random.split(key)
    return {
        "W": jax.random.uniform(kw, (input_size, hidden_size), jnp.float32, -bound, bound),
        "U": jax.random.uniform(ku, (hidden_size, hidden_size), jnp.float32, -bound, bound),
        "b": jnp.zeros((hidden_size,), jnp.float32),
    }


def rnn(params: dict, xs: jax.Array, eps: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Run the tanh RNN over ``xs [B, T, D]``; returns ``hs [B, T, H]`` and ``h_T [B, H]``.

    ``eps [B, T, H]``, if given, is added to each ``h_t`` (zero in value; its gradient is dL/dh_t).
    """
    B, T, _ = xs.shape
    H = params["U"].shape[0]
    zx = jnp.swapaxes(dense({"w": params["W"], "b": params["b"]}, xs), 0, 1)  # [T, B, H]
    e = jnp.zeros((T, B, H), zx.dtype) if eps is None else jnp.swapaxes(eps, 0, 1)

    def body(h, inp):
        z, e_t = inp
        h = jnp.tanh(z + h @ params["U"]) + e_t
        return h, h

    hT, hs = lax.scan(body, jnp.zeros((B, H), zx.dtype), (zx, e))
    return jnp.swapaxes(hs, 0, 1), hT
