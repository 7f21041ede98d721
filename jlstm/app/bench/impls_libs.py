"""The JAX libraries' LSTMs: Flax's ``OptimizedLSTMCell`` under ``nn.RNN`` and Equinox's ``LSTMCell``."""

from __future__ import annotations

import numpy as np

from jlstm.app.bench.problem import TO_IFGO, Problem, from_ifgo, to_ifgo
from jlstm.app.bench.registry import Impl, implementation, jax_impl


@implementation("flax")
def flax(prob: Problem, dt) -> Impl:
    """``flax.linen.RNN(OptimizedLSTMCell)``."""
    import jax
    import jax.numpy as jnp
    from flax import linen as nn

    T, B, D, H = prob.shape
    model = nn.RNN(nn.OptimizedLSTMCell(H, param_dtype=dt, dtype=dt))
    cell = {}
    for k, g in enumerate("ifgo"):
        col = slice(TO_IFGO[k] * H, (TO_IFGO[k] + 1) * H)
        cell[f"i{g}"] = {"kernel": jnp.asarray(prob.W[:, col], dt)}
        cell[f"h{g}"] = {"kernel": jnp.asarray(prob.U[:, col], dt), "bias": jnp.asarray(prob.b[col], dt)}
    xs, ys = jnp.asarray(prob.xs, dt), jnp.asarray(prob.ys, dt)

    def step(v, xs, ys):
        return jax.value_and_grad(lambda v: jnp.sum(model.apply(v, xs) * ys))(v)

    def to_jlstm(out):
        loss, g = out
        c = g["params"]["cell"]
        order = "gifo"  # jlstm's a, i, f, o
        return (
            float(loss),
            np.concatenate([np.asarray(c[f"i{k}"]["kernel"]) for k in order], -1),
            np.concatenate([np.asarray(c[f"h{k}"]["kernel"]) for k in order], -1),
            np.concatenate([np.asarray(c[f"h{k}"]["bias"]) for k in order], -1),
        )

    return jax_impl(step, ({"params": {"cell": cell}}, xs, ys), to_jlstm)


@implementation("equinox")
def equinox(prob: Problem, dt) -> Impl:
    """``equinox.nn.LSTMCell`` under ``vmap`` (batch) and ``lax.scan`` (time)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    T, B, D, H = prob.shape
    cell0 = eqx.nn.LSTMCell(D, H, key=jax.random.key(0), dtype=dt)
    weights = (to_ifgo(prob.W).T, to_ifgo(prob.U).T, to_ifgo(prob.b))
    cell0 = eqx.tree_at(
        lambda m: (m.weight_ih, m.weight_hh, m.bias), cell0, tuple(jnp.asarray(a, dt) for a in weights)
    )
    xs, ys = jnp.asarray(prob.xs, dt), jnp.asarray(prob.ys, dt)

    def step(cell, xs, ys):
        def loss(cell):
            def body(carry, x_t):  # x_t [B, D]
                carry = jax.vmap(cell)(x_t, carry)
                return carry, carry[0]

            zeros = jnp.zeros((xs.shape[0], H), xs.dtype)
            _, hs = jax.lax.scan(body, (zeros, zeros), jnp.swapaxes(xs, 0, 1))
            return jnp.sum(jnp.swapaxes(hs, 0, 1) * ys)

        return eqx.filter_value_and_grad(loss)(cell)

    def to_jlstm(out):
        loss, g = out
        return (
            float(loss),
            from_ifgo(np.asarray(g.weight_ih).T),
            from_ifgo(np.asarray(g.weight_hh).T),
            from_ifgo(np.asarray(g.bias)),
        )

    return jax_impl(step, (cell0, xs, ys), to_jlstm)
