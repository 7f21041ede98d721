"""jlstm against Flax's cells: linen's ``RNN(LSTMCell)``, ``RNN(OptimizedLSTMCell)`` and nnx's two cells."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jlstm import interop
from jlstm.app.parity.common import ParityRow, Sizes, compare_single, dtype, dtype_name, inputs, library, loss


@library("flax.linen")
def flax_linen_rows(key, s: Sizes) -> list[ParityRow]:
    import flax
    import flax.linen as nn

    rows = []
    for n, cell_type in enumerate((nn.LSTMCell, nn.OptimizedLSTMCell)):
        cell = cell_type(features=s.H, param_dtype=dtype(), bias_init=nn.initializers.normal(1.0))
        rnn = nn.RNN(cell, return_carry=True)
        xs, h0, c0 = inputs(jax.random.fold_in(key, n), s, (s.B, s.H))
        variables = rnn.init(jax.random.fold_in(key, 10 + n), xs, initial_carry=(c0, h0))

        def f(v, xs, carry, rnn=rnn):
            (c, h), hs = rnn.apply(v, xs, initial_carry=interop.to_flax_carry(carry))
            return loss(hs, h, c), (hs, h, c)

        (_, out), (gv, gx, gc) = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))(
            variables, xs, (h0, c0)
        )
        diffs = compare_single(
            interop.from_flax(variables), xs, (h0, c0), out, (interop.from_flax(gv), gx, gc)
        )
        rows.append(ParityRow(f"flax.linen {flax.__version__}", cell_type.__name__, dtype_name(), *diffs))
    return rows


@library("flax.nnx")
def flax_nnx_rows(key, s: Sizes) -> list[ParityRow]:
    import flax
    from flax import nnx

    rows = []
    for n, cell_type in enumerate((nnx.LSTMCell, nnx.OptimizedLSTMCell)):
        cell = cell_type(
            s.D, s.H, param_dtype=dtype(), bias_init=nnx.initializers.normal(1.0), rngs=nnx.Rngs(n)
        )
        graphdef, state = nnx.split(cell)
        xs, h0, c0 = inputs(jax.random.fold_in(key, n), s, (s.B, s.H))

        def f(state, xs, carry, graphdef=graphdef):
            m = nnx.merge(graphdef, state)
            flax_carry, steps = interop.to_flax_carry(carry), []
            for t in range(s.T):
                flax_carry, h = m(flax_carry, xs[:, t])
                steps.append(h)
            c, h = flax_carry
            hs = jnp.stack(steps, axis=1)
            return loss(hs, h, c), (hs, h, c)

        (_, out), (gs, gx, gc) = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))(
            state, xs, (h0, c0)
        )
        diffs = compare_single(interop.from_flax(cell), xs, (h0, c0), out, (interop.from_flax(gs), gx, gc))
        rows.append(ParityRow(f"flax.nnx {flax.__version__}", cell_type.__name__, dtype_name(), *diffs))
    return rows
