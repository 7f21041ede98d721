"""jlstm against ``keras.layers.LSTM`` on Keras 3's JAX backend (``stateless_call`` under ``jax.grad``)."""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp

from jlstm import interop
from jlstm.app.parity.common import ParityRow, Sizes, compare_single, dtype, dtype_name, inputs, library, loss


@library("keras")
def keras_rows(key, s: Sizes) -> list[ParityRow]:
    if "keras" not in sys.modules and os.environ.get("KERAS_BACKEND") != "jax":
        raise ImportError("set KERAS_BACKEND=jax before keras is imported (jax.grad needs the JAX backend)")
    import keras

    if keras.backend.backend() != "jax":
        raise ImportError(f"keras runs on {keras.backend.backend()!r}; jax.grad needs KERAS_BACKEND=jax")
    keras.utils.set_random_seed(int(jax.random.randint(key, (), 0, 2**31 - 1)))
    layer = keras.layers.LSTM(
        s.H, return_sequences=True, return_state=True, dtype=dtype_name(), bias_initializer="random_normal"
    )
    xs, h0, c0 = inputs(key, s, (s.B, s.H))
    with jax.numpy_rank_promotion("allow"):  # keras relies on numpy broadcasting
        layer.build((s.B, s.T, s.D))
        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]

        def f(trainable, xs, carry):
            (hs, h, c), _ = layer.stateless_call(trainable, non_trainable, xs, initial_state=list(carry))
            return loss(hs, h, c), (hs, h, c)

        (_, out), (gw, gx, gc) = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))(
            trainable, xs, (h0, c0)
        )
    out_diff, grad_diff = compare_single(
        interop.from_keras(layer), xs, (h0, c0), out, (interop.from_keras(gw), gx, gc)
    )
    note = "keras computes tanh in float32 on JAX" if dtype() == jnp.float64 else ""
    name = f"keras {keras.__version__} (jax)"
    return [ParityRow(name, "LSTM", dtype_name(), out_diff, grad_diff, note=note)]
