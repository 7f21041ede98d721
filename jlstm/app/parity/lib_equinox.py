"""jlstm against ``eqx.nn.LSTMCell``, scanned over time and vmapped over the batch."""

from __future__ import annotations

import jax

from jlstm import interop
from jlstm.app.parity.common import ParityRow, Sizes, compare_single, dtype, dtype_name, inputs, library, loss


@library("equinox")
def equinox_rows(key, s: Sizes) -> list[ParityRow]:
    import equinox as eqx

    cell = eqx.nn.LSTMCell(s.D, s.H, dtype=dtype(), key=jax.random.fold_in(key, 1))
    xs, h0, c0 = inputs(key, s, (s.B, s.H))

    def f(args):
        cell, xs, (h0, c0) = args

        def step(hc, x):
            hc = cell(x, hc)
            return hc, hc[0]

        def seq(xs, h, c):  # the cell is unbatched: scan over time, vmap over the batch
            (h, c), hs = jax.lax.scan(step, (h, c), xs)
            return hs, h, c

        hs, h, c = jax.vmap(seq)(xs, h0, c0)
        return loss(hs, h, c), (hs, h, c)

    (_, out), (gcell, gx, gc) = eqx.filter_jit(eqx.filter_value_and_grad(f, has_aux=True))(
        (cell, xs, (h0, c0))
    )
    diffs = compare_single(
        interop.from_equinox(cell), xs, (h0, c0), out, (interop.from_equinox(gcell), gx, gc)
    )
    return [ParityRow(f"equinox {eqx.__version__}", "eqx.nn.LSTMCell", dtype_name(), *diffs)]
