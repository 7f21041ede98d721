"""The JAX implementations written here: jlstm's two backward passes and a plain ``lax.scan`` LSTM."""

from __future__ import annotations

from jlstm.app.bench.problem import Problem
from jlstm.app.bench.registry import Impl, flat_jlstm, implementation, jax_impl


def _jlstm(prob: Problem, dt, backward: str) -> Impl:
    import jax
    import jax.numpy as jnp

    import jlstm

    W, U, b, xs, ys = (jnp.asarray(a, dt) for a in (prob.W, prob.U, prob.b, prob.xs, prob.ys))

    def step(params, xs, ys):
        def loss(p):
            return jnp.sum(jlstm.lstm(p, xs, backward=backward)[0] * ys)

        return jax.value_and_grad(loss)(params)

    return jax_impl(step, (jlstm.LSTMParams(W, U, b), xs, ys), flat_jlstm)


@implementation("manual")
def manual(prob: Problem, dt) -> Impl:
    """``jlstm.lstm(..., backward="manual")``: the hand-written backward (custom_vjp)."""
    return _jlstm(prob, dt, "manual")


@implementation("autodiff")
def autodiff(prob: Problem, dt) -> Impl:
    """``jlstm.lstm(..., backward="autodiff")``: ``jax.grad`` through the same forward."""
    return _jlstm(prob, dt, "autodiff")


def plain_lstm(W, U, b, xs):
    """The LSTM as users write it: a ``lax.scan`` of the cell with the input projection inside."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    H = U.shape[0]

    def body(carry, x):
        h, c = carry
        z = x @ W + h @ U + b[None]
        a = jnp.tanh(z[:, :H])
        i = jax.nn.sigmoid(z[:, H : 2 * H])
        f = jax.nn.sigmoid(z[:, 2 * H : 3 * H])
        o = jax.nn.sigmoid(z[:, 3 * H :])
        c = a * i + f * c
        h = jnp.tanh(c) * o
        return (h, c), h

    zeros = jnp.zeros((xs.shape[0], H), xs.dtype)
    _, hs = lax.scan(body, (zeros, zeros), jnp.swapaxes(xs, 0, 1))
    return jnp.swapaxes(hs, 0, 1)


@implementation("plain")
def plain(prob: Problem, dt) -> Impl:
    """``plain_lstm`` under ``jax.grad``."""
    import jax
    import jax.numpy as jnp

    W, U, b, xs, ys = (jnp.asarray(a, dt) for a in (prob.W, prob.U, prob.b, prob.xs, prob.ys))

    def step(params, xs, ys):
        return jax.value_and_grad(lambda p: jnp.sum(plain_lstm(p[0], p[1], p[2], xs) * ys))(params)

    return jax_impl(step, ((W, U, b), xs, ys), flat_jlstm)
