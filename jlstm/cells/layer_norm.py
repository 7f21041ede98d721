"""The layer-normalised LSTM of Ba, Kiros & Hinton (2016), supplementary eqs. 20-22; haste ``LayerNormLSTM``.

    z   = LN(x W; gamma_x, beta_x) + LN(h_{t-1} U; gamma_h, beta_h) + b     (each over all G*H jointly)
    c_t = f * c_{t-1} + i * a                                             (the raw c is carried)
    h_t = o * tanh(LN(c_t; gamma_c, beta_c))

with ``LN(v) = gamma * (v - mean v) * rstd + beta``, ``rstd = (var v + eps)^(-1/2)`` (biased variance over
the feature axis), eps = 1e-5. Backward of one LN, with ``x^ = (v - mean v) * rstd`` and ``g = dy * gamma``:

    dv = rstd * (g - mean(g) - x^ * mean(g * x^))     dgamma = sum_b dy * x^     dbeta = sum_b dy
"""

from __future__ import annotations

import jax.numpy as jnp

EPS = 1e-5


def ln(v, gamma, beta):
    """``(LN(v), (x^, rstd))`` over the last axis."""
    mu = jnp.mean(v, axis=-1, keepdims=True)
    xc = v - mu
    rstd = 1 / jnp.sqrt(jnp.mean(xc * xc, axis=-1, keepdims=True) + EPS)
    xhat = xc * rstd
    return gamma[None] * xhat + beta[None], (xhat, rstd)


def ln_bwd(dy, saved, gamma):
    """``(dv, dgamma, dbeta)``; the parameters' gradients summed over the batch."""
    xhat, rstd = saved
    g = dy * gamma[None]
    dv = rstd * (g - jnp.mean(g, axis=-1, keepdims=True) - xhat * jnp.mean(g * xhat, axis=-1, keepdims=True))
    return dv, (dy * xhat).sum(0), dy.sum(0)
