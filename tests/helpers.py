"""Shared test helpers: random problems and a loss that touches every output."""

import jax
import jax.numpy as jnp

import jlstm


def problem(key, batch_shape=(), T=5, D=3, H=4, dtype=jnp.float64, carry=True):
    kp, kx, kh, kc = jax.random.split(key, 4)
    params = jlstm.init(kp, D, H, dtype=dtype)
    # Larger-than-default weights so gates are not all near 0.5 and errors would show.
    params = jax.tree.map(lambda a: 2.0 * a, params)
    xs = jax.random.normal(kx, batch_shape + (T, D), dtype)
    c0 = None
    if carry:
        c0 = jlstm.LSTMState(
            0.5 * jax.random.normal(kh, batch_shape + (H,), dtype),
            0.5 * jax.random.normal(kc, batch_shape + (H,), dtype),
        )
    return params, xs, c0


def full_loss(params, xs, carry, backward="manual", **kw):
    """Touches hs, the final h and the final c, with different weights so no path cancels."""
    hs, (h, c) = jlstm.lstm(params, xs, carry, backward=backward, **kw)
    w = jnp.sin(jnp.arange(hs.size, dtype=hs.dtype)).reshape(hs.shape)
    return jnp.sum(w * hs) + 0.5 * jnp.sum(hs**2) + jnp.sum(jnp.cos(h)) + 0.3 * jnp.sum(c**3)


def rel_err(a, b):
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    num = sum(float(jnp.sum((x - y) ** 2)) for x, y in zip(leaves_a, leaves_b))
    den = sum(float(jnp.sum(y**2)) for y in leaves_b)
    return (num / max(den, 1e-300)) ** 0.5
