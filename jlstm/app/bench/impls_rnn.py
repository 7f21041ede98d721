"""``jax.experimental.rnn``: the pure reference ``lstm_ref`` (any backend) and the cuDNN LSTM ``lstm``
(GPU only). Both take torch's (i, f, g, o) layout; cuDNN's weights are one flat vector
``[W_ih [4H, D], W_hh [4H, H], b_ih [4H], b_hh [4H]]``."""

from __future__ import annotations

import numpy as np

from jlstm.app.bench.problem import Problem, from_ifgo, to_ifgo
from jlstm.app.bench.registry import Impl, implementation, jax_impl, on_gpu


@implementation("lstm_ref")
def lstm_ref(prob: Problem, dt) -> Impl:
    """``jax.experimental.rnn.lstm_ref`` under ``jax.grad``."""
    import jax
    import jax.numpy as jnp
    from jax.experimental import rnn

    T, B, D, H = prob.shape
    w = tuple({0: jnp.asarray(a, dt)} for a in (to_ifgo(prob.W).T, to_ifgo(prob.U).T, to_ifgo(prob.b)))
    zb = {0: jnp.zeros((4 * H,), dt)}
    h0 = jnp.zeros((1, B, H), dt)
    lengths = jnp.full((B,), T, jnp.int32)
    xs, ys = jnp.asarray(prob.xs, dt), jnp.asarray(prob.ys, dt)

    def step(w, xs, ys):
        def loss(w):
            hs, _, _ = rnn.lstm_ref(xs, h0, h0, w[0], w[1], w[2], zb, lengths, D, H, 1, 0.0, False)
            return jnp.sum(hs * ys)

        return jax.value_and_grad(loss)(w)

    def to_jlstm(out):
        loss, (gw, gu, gb) = out
        return (
            float(loss),
            from_ifgo(np.asarray(gw[0]).T),
            from_ifgo(np.asarray(gu[0]).T),
            from_ifgo(np.asarray(gb[0])),
        )

    return jax_impl(step, (w, xs, ys), to_jlstm)


def cudnn_weights(prob: Problem, dt):
    """jlstm's ``(W, U, b)`` as cuDNN's flat weight vector (``b_hh`` zero, the bias in ``b_ih``)."""
    import jax.numpy as jnp

    parts = (to_ifgo(prob.W).T, to_ifgo(prob.U).T, to_ifgo(prob.b), np.zeros_like(prob.b))
    return jnp.asarray(np.concatenate([np.ravel(a) for a in parts]), dt)


def cudnn_impl(prob: Problem, dt, lstm_fn) -> Impl:
    """The training step through ``lstm_fn``, which has ``jax.experimental.rnn.lstm``'s signature."""
    import jax
    import jax.numpy as jnp
    from jax.experimental import rnn

    T, B, D, H = prob.shape
    h0 = jnp.zeros((1, B, H), dt)
    lengths = jnp.full((B,), T, jnp.int32)
    xs, ys = jnp.asarray(prob.xs, dt), jnp.asarray(prob.ys, dt)

    def step(w, xs, ys):
        def loss(w):
            hs, _, _ = lstm_fn(xs, h0, h0, w, lengths, D, H, 1, 0.0, False)
            return jnp.sum(hs * ys)

        return jax.value_and_grad(loss)(w)

    def to_jlstm(out):
        loss, g = out
        gw, gu, gb, _ = (np.asarray(d[0]) for d in rnn.unpack_lstm_weights(g, D, H, 1, False))
        return float(loss), from_ifgo(gw.T), from_ifgo(gu.T), from_ifgo(gb)  # d b_ih = d b

    return jax_impl(step, (cudnn_weights(prob, dt), xs, ys), to_jlstm)


@implementation("cudnn", available=on_gpu, requires="a GPU (jax.default_backend() == 'gpu')")
def cudnn(prob: Problem, dt) -> Impl:
    """``jax.experimental.rnn.lstm`` (cuDNN's LSTM) under ``jax.grad``."""
    from jax.experimental import rnn

    return cudnn_impl(prob, dt, rnn.lstm)
