"""Projection, LSTMP (Sak et al. 2014; ``torch.nn.LSTM(proj_size=P)``): ``r_t = (o_t * tanh c_t) @ P``.

``P [H, R]``, no bias, R < H. The output and the recurrent input are ``r_t`` (so ``U`` is ``[R, 4H]``); the
cell state stays ``[H]``. Backward: ``dP = sum_b m_t^T delta r_t``, ``delta m_t = delta r_t P^T``.
"""

from __future__ import annotations

import jax.numpy as jnp


def project(m, theta: dict):
    """``r = m @ P`` (``m`` itself without projection)."""
    return m @ theta["P"].astype(m.dtype) if "P" in theta else m


def project_bwd(d_r, m, theta: dict, grads: dict):
    """Returns ``delta m``; records ``dP``."""
    if "P" not in theta:
        return d_r
    grads["P"] = jnp.matmul(m.T, d_r)
    return d_r @ theta["P"].astype(d_r.dtype).T
