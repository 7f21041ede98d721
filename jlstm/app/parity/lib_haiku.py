"""jlstm against ``hk.LSTM`` unrolled by ``hk.dynamic_unroll``."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jlstm import interop
from jlstm.app.parity.common import ParityRow, Sizes, compare_single, dtype_name, inputs, library, loss


@library("haiku")
def haiku_rows(key, s: Sizes) -> list[ParityRow]:
    import haiku as hk

    xs, h0, c0 = inputs(key, s, (s.B, s.H))

    def unroll(xs, carry):
        hs, st = hk.dynamic_unroll(hk.LSTM(s.H), jnp.swapaxes(xs, 0, 1), hk.LSTMState(*carry))
        return jnp.swapaxes(hs, 0, 1), st

    f_hk: Any = hk.without_apply_rng(hk.transform(unroll))  # Any: haiku's stubs lose init/apply here
    params = f_hk.init(jax.random.fold_in(key, 1), xs, (h0, c0))
    lin = params["lstm/linear"]  # haiku initialises b to zero: randomise it so the bias path is tested
    params = {
        "lstm/linear": {
            "w": lin["w"],
            "b": jax.random.normal(jax.random.fold_in(key, 2), lin["b"].shape, lin["b"].dtype),
        }
    }

    def f(params, xs, carry):
        hs, st = f_hk.apply(params, xs, carry)
        return loss(hs, st.hidden, st.cell), (hs, st.hidden, st.cell)

    (_, out), (gp, gx, gc) = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))(
        params, xs, (h0, c0)
    )
    diffs = compare_single(
        interop.from_haiku(params), xs, (h0, c0), out, (interop.from_haiku(gp, forget_bias=0.0), gx, gc)
    )
    return [ParityRow(f"dm-haiku {hk.__version__}", "hk.LSTM", dtype_name(), *diffs)]
