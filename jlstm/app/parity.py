"""Parity with the LSTMs of other libraries: same weights (converted by ``jlstm.interop``), same inputs,
then the largest absolute difference of the outputs (sequence and final state) and of the gradients
(weights, inputs and initial state) between each library's own forward/backward and jlstm's.

Used by ``jlstm parity`` and ``experiments/parity.py``; every library import happens here, on demand.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from jlstm import interop
from jlstm.core.params import LSTMState
from jlstm.core.sequence import lstm
from jlstm.stacked import stacked_lstm

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParityRow:
    """One line of the table. ``out_diff``/``grad_diff`` are NaN when the library could not run."""

    library: str
    config: str
    dtype: str
    out_diff: float
    grad_diff: float
    note: str = ""


@dataclass(frozen=True)
class Sizes:
    T: int = 5
    B: int = 2
    D: int = 3
    H: int = 4


def _loss(hs, h, c):
    """Touches the outputs, the final h and the final c, with different weights so no path cancels."""
    w = jnp.sin(jnp.arange(hs.size, dtype=hs.dtype)).reshape(hs.shape)
    return jnp.sum(w * hs) + 0.5 * jnp.sum(hs**2) + jnp.sum(jnp.cos(h)) + 0.3 * jnp.sum(c**3)


def _maxdiff(a, b) -> float:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    if len(la) != len(lb):
        raise ValueError(f"parity: {len(la)} arrays against {len(lb)}")
    return max(
        float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)))) for x, y in zip(la, lb)
    )


def _dtype():
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def _inputs(key, s: Sizes, batch_carry_shape):
    kx, kh, kc = jax.random.split(key, 3)
    dt = _dtype()
    xs = jax.random.normal(kx, (s.B, s.T, s.D), dt)
    h0 = 0.5 * jax.random.normal(kh, batch_carry_shape, dt)
    c0 = 0.5 * jax.random.normal(kc, batch_carry_shape, dt)
    return xs, h0, c0


@jax.jit
def _jlstm_single(params, xs, carry):
    def f(params, xs, carry):
        hs, (h, c) = lstm(params, xs, carry)
        return _loss(hs, h, c), (hs, h, c)

    (_, out), grads = jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True)(params, xs, carry)
    return out, grads


def _compare_single(params, xs, carry, lib_out, lib_grads):
    """jlstm against a single-layer library result: outputs ``(hs, h, c)``, grads ``(params, xs, carry)``
    with the library's parameter gradients already converted to jlstm's layout."""
    out, grads = _jlstm_single(params, xs, LSTMState(*carry))
    grads = (grads[0], grads[1], tuple(grads[2]))
    return _maxdiff(out, lib_out), _maxdiff(grads, (lib_grads[0], lib_grads[1], tuple(lib_grads[2])))


# ------------------------------------------------------------------------------------------- libraries


def _torch(key, s: Sizes) -> list[ParityRow]:
    import torch

    torch.set_num_threads(1)
    tdt = torch.float64 if _dtype() == jnp.float64 else torch.float32
    rows = []
    for n, (layers_n, bi) in enumerate(((1, False), (2, True))):
        torch.manual_seed(n)
        m = torch.nn.LSTM(s.D, s.H, num_layers=layers_n, bidirectional=bi, batch_first=True).to(tdt)
        dirs = 2 if bi else 1
        xs, h0, c0 = _inputs(jax.random.fold_in(key, n), s, (layers_n * dirs, s.B, s.H))
        tx, th, tc = (torch.tensor(np.asarray(a)).requires_grad_() for a in (xs, h0, c0))
        out, (hn, cn) = m(tx, (th, tc))
        w = torch.sin(torch.arange(out.numel(), dtype=tdt)).reshape(out.shape)
        loss = (w * out).sum() + 0.5 * (out**2).sum() + torch.cos(hn).sum() + 0.3 * (cn**3).sum()
        loss.backward()

        layers = interop.from_torch(m)
        carries = interop.from_torch_state((h0, c0), bidirectional=bi)

        def f(layers, xs, carries, bi=bi):
            hs, finals = stacked_lstm(layers, xs, carries, bidirectional=bi)
            flat = [st for layer in finals for st in (layer if bi else (layer,))]
            h, c = (jnp.stack([st[k] for st in flat]) for k in (0, 1))
            return _loss(hs, h, c), (hs, h, c)

        (_, jout), (g_layers, g_xs, g_carries) = jax.jit(
            jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True)
        )(layers, xs, carries)
        g_sd = interop.to_torch(g_layers)  # d/d bias lands in bias_ih; torch's bias_hh.grad is the same
        lib_g = [p.grad for name, p in m.named_parameters()]
        our_g = [g_sd[name.replace("bias_hh", "bias_ih")] for name, _ in m.named_parameters()]
        g_h0, g_c0 = interop.to_torch_state(g_carries)
        out_diff = _maxdiff(jout, (out.detach(), hn.detach(), cn.detach()))
        grad_diff = _maxdiff(
            (our_g, g_xs, g_h0, g_c0), ([g.detach() for g in lib_g], tx.grad, th.grad, tc.grad)
        )
        config = f"{layers_n} layer{'s' if layers_n > 1 else ''}, {'bi' if bi else 'uni'}directional"
        rows.append(
            ParityRow(f"torch {torch.__version__}", config, str(jnp.dtype(_dtype())), out_diff, grad_diff)
        )
    return rows


def _flax_linen(key, s: Sizes) -> list[ParityRow]:
    import flax
    import flax.linen as nn

    rows = []
    for n, cell_type in enumerate((nn.LSTMCell, nn.OptimizedLSTMCell)):
        cell = cell_type(features=s.H, param_dtype=_dtype(), bias_init=nn.initializers.normal(1.0))
        rnn = nn.RNN(cell, return_carry=True)
        xs, h0, c0 = _inputs(jax.random.fold_in(key, n), s, (s.B, s.H))
        variables = rnn.init(jax.random.fold_in(key, 10 + n), xs, initial_carry=(c0, h0))

        def f(v, xs, carry, rnn=rnn):
            (c, h), hs = rnn.apply(v, xs, initial_carry=interop.to_flax_carry(carry))
            return _loss(hs, h, c), (hs, h, c)

        (_, out), (gv, gx, gc) = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))(
            variables, xs, (h0, c0)
        )
        diffs = _compare_single(
            interop.from_flax(variables), xs, (h0, c0), out, (interop.from_flax(gv), gx, gc)
        )
        rows.append(
            ParityRow(f"flax.linen {flax.__version__}", cell_type.__name__, str(jnp.dtype(_dtype())), *diffs)
        )
    return rows


def _flax_nnx(key, s: Sizes) -> list[ParityRow]:
    import flax
    from flax import nnx

    rows = []
    for n, cell_type in enumerate((nnx.LSTMCell, nnx.OptimizedLSTMCell)):
        cell = cell_type(
            s.D, s.H, param_dtype=_dtype(), bias_init=nnx.initializers.normal(1.0), rngs=nnx.Rngs(n)
        )
        graphdef, state = nnx.split(cell)
        xs, h0, c0 = _inputs(jax.random.fold_in(key, n), s, (s.B, s.H))

        def f(state, xs, carry, graphdef=graphdef):
            m = nnx.merge(graphdef, state)
            flax_carry, hs = interop.to_flax_carry(carry), []
            for t in range(s.T):
                flax_carry, h = m(flax_carry, xs[:, t])
                hs.append(h)
            c, h = flax_carry
            hs = jnp.stack(hs, axis=1)
            return _loss(hs, h, c), (hs, h, c)

        (_, out), (gs, gx, gc) = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))(
            state, xs, (h0, c0)
        )
        diffs = _compare_single(interop.from_flax(cell), xs, (h0, c0), out, (interop.from_flax(gs), gx, gc))
        rows.append(
            ParityRow(f"flax.nnx {flax.__version__}", cell_type.__name__, str(jnp.dtype(_dtype())), *diffs)
        )
    return rows


def _keras(key, s: Sizes) -> list[ParityRow]:
    import sys

    if "keras" not in sys.modules and os.environ.get("KERAS_BACKEND") != "jax":
        raise ImportError("set KERAS_BACKEND=jax before keras is imported (jax.grad needs the JAX backend)")
    import keras

    if keras.backend.backend() != "jax":
        raise ImportError(f"keras runs on {keras.backend.backend()!r}; jax.grad needs KERAS_BACKEND=jax")
    keras.utils.set_random_seed(int(jax.random.randint(key, (), 0, 2**31 - 1)))
    layer = keras.layers.LSTM(
        s.H,
        return_sequences=True,
        return_state=True,
        dtype=str(jnp.dtype(_dtype())),
        bias_initializer="random_normal",
    )
    xs, h0, c0 = _inputs(key, s, (s.B, s.H))
    with jax.numpy_rank_promotion("allow"):  # keras relies on numpy broadcasting
        layer.build((s.B, s.T, s.D))
        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]

        def f(trainable, xs, carry):
            (hs, h, c), _ = layer.stateless_call(trainable, non_trainable, xs, initial_state=list(carry))
            return _loss(hs, h, c), (hs, h, c)

        (_, out), (gw, gx, gc) = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))(
            trainable, xs, (h0, c0)
        )
    diffs = _compare_single(interop.from_keras(layer), xs, (h0, c0), out, (interop.from_keras(gw), gx, gc))
    note = "keras computes tanh in float32 on JAX" if _dtype() == jnp.float64 else ""
    return [
        ParityRow(f"keras {keras.__version__} (jax)", "LSTM", str(jnp.dtype(_dtype())), *diffs, note=note)
    ]


def _haiku(key, s: Sizes) -> list[ParityRow]:
    import haiku as hk

    xs, h0, c0 = _inputs(key, s, (s.B, s.H))

    def unroll(xs, carry):
        hs, st = hk.dynamic_unroll(hk.LSTM(s.H), jnp.swapaxes(xs, 0, 1), hk.LSTMState(*carry))
        return jnp.swapaxes(hs, 0, 1), st

    f_hk = hk.without_apply_rng(hk.transform(unroll))
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
        return _loss(hs, st.hidden, st.cell), (hs, st.hidden, st.cell)

    (_, out), (gp, gx, gc) = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))(
        params, xs, (h0, c0)
    )
    diffs = _compare_single(
        interop.from_haiku(params), xs, (h0, c0), out, (interop.from_haiku(gp, forget_bias=0.0), gx, gc)
    )
    return [ParityRow(f"dm-haiku {hk.__version__}", "hk.LSTM", str(jnp.dtype(_dtype())), *diffs)]


def _equinox(key, s: Sizes) -> list[ParityRow]:
    import equinox as eqx

    cell = eqx.nn.LSTMCell(s.D, s.H, dtype=_dtype(), key=jax.random.fold_in(key, 1))
    xs, h0, c0 = _inputs(key, s, (s.B, s.H))

    def f(args):
        cell, xs, (h0, c0) = args

        def step(hc, x):
            hc = cell(x, hc)
            return hc, hc[0]

        def seq(xs, h, c):  # the cell is unbatched: scan over time, vmap over the batch
            (h, c), hs = jax.lax.scan(step, (h, c), xs)
            return hs, h, c

        hs, h, c = jax.vmap(seq)(xs, h0, c0)
        return _loss(hs, h, c), (hs, h, c)

    (_, out), (gcell, gx, gc) = eqx.filter_jit(eqx.filter_value_and_grad(f, has_aux=True))(
        (cell, xs, (h0, c0))
    )
    diffs = _compare_single(
        interop.from_equinox(cell), xs, (h0, c0), out, (interop.from_equinox(gcell), gx, gc)
    )
    return [ParityRow(f"equinox {eqx.__version__}", "eqx.nn.LSTMCell", str(jnp.dtype(_dtype())), *diffs)]


LIBRARIES: dict[str, Callable[[jax.Array, Sizes], list[ParityRow]]] = {
    "torch": _torch,
    "flax.linen": _flax_linen,
    "flax.nnx": _flax_nnx,
    "keras": _keras,
    "haiku": _haiku,
    "equinox": _equinox,
}


def parity_rows(
    libraries: Sequence[str] | None = None, *, seed: int = 0, sizes: Sizes = Sizes()
) -> list[ParityRow]:
    """Run every library against jlstm and return one row per configuration.

    Each library draws its own weights, runs its own forward and computes its own gradients (torch
    autograd; ``jax.grad`` for the JAX libraries) of a loss touching the outputs and the final state;
    jlstm does the same after ``jlstm.interop`` converted the weights. Enable ``jax_enable_x64`` first
    for a float64 comparison (float32 otherwise). Keras needs ``KERAS_BACKEND=jax`` set before it is
    imported.

    Args:
      libraries: names from ``LIBRARIES`` (default: all). A library that is not installed gives a row
        with NaN differences and the reason in ``note``.
      seed: the seed of the inputs and of the JAX libraries' weights.
      sizes: ``T, B, D, H``.

    Returns:
      A list of ``ParityRow``.
    """
    names = list(LIBRARIES) if libraries is None else list(libraries)
    unknown = [n for n in names if n not in LIBRARIES]
    if unknown:
        raise ValueError(f"parity_rows: libraries must be among {list(LIBRARIES)}; got unknown {unknown}.")
    key = jax.random.key(seed)
    rows: list[ParityRow] = []
    for k, name in enumerate(names):
        try:
            rows.extend(LIBRARIES[name](jax.random.fold_in(key, k), sizes))
        except ImportError as e:
            log.warning("parity: %s skipped: %s", name, e)
            rows.append(ParityRow(name, "-", str(jnp.dtype(_dtype())), math.nan, math.nan, f"skipped: {e}"))
    return rows


def format_table(rows: Sequence[ParityRow]) -> str:
    """The rows as a Markdown table: library, configuration, dtype, max |diff| of outputs and of gradients."""
    head = ("library", "layers / directions", "dtype", "max |d outputs|", "max |d gradients|", "note")
    body = [(r.library, r.config, r.dtype, f"{r.out_diff:.2e}", f"{r.grad_diff:.2e}", r.note) for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, body)])


__all__ = ["LIBRARIES", "ParityRow", "Sizes", "format_table", "parity_rows"]
