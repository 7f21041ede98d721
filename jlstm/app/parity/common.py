"""What every parity comparison shares: the row, the sizes, the loss, the inputs, and jlstm's side."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from jlstm.core.params import LSTMState
from jlstm.functional import lstm


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


#: name -> function ``(key, sizes) -> [ParityRow]`` running that library against jlstm; filled by ``library``.
LIBRARIES: dict[str, Callable[[jax.Array, Sizes], list[ParityRow]]] = {}


def library(name: str):
    """Register the decorated comparison under ``name`` (as ``parity_rows`` and ``jlstm parity`` name it)."""

    def register(fn):
        LIBRARIES[name] = fn
        return fn

    return register


def loss(hs, h, c):
    """Touches the outputs, the final h and the final c, with different weights so no path cancels."""
    w = jnp.sin(jnp.arange(hs.size, dtype=hs.dtype)).reshape(hs.shape)
    return jnp.sum(w * hs) + 0.5 * jnp.sum(hs**2) + jnp.sum(jnp.cos(h)) + 0.3 * jnp.sum(c**3)


def maxdiff(a, b) -> float:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    if len(la) != len(lb):
        raise ValueError(f"parity: {len(la)} arrays against {len(lb)}")
    return max(
        float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)))) for x, y in zip(la, lb)
    )


def dtype():
    return jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32


def dtype_name() -> str:
    return str(jnp.dtype(dtype()))


def inputs(key, s: Sizes, batch_carry_shape):
    kx, kh, kc = jax.random.split(key, 3)
    dt = dtype()
    xs = jax.random.normal(kx, (s.B, s.T, s.D), dt)
    h0 = 0.5 * jax.random.normal(kh, batch_carry_shape, dt)
    c0 = 0.5 * jax.random.normal(kc, batch_carry_shape, dt)
    return xs, h0, c0


@jax.jit
def _jlstm_single(params, xs, carry):
    def f(params, xs, carry):
        hs, (h, c) = lstm(params, xs, carry)
        return loss(hs, h, c), (hs, h, c)

    (_, out), grads = jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True)(params, xs, carry)
    return out, grads


def compare_single(params, xs, carry, lib_out, lib_grads):
    """jlstm against a single-layer library result: outputs ``(hs, h, c)``, grads ``(params, xs, carry)``
    with the library's parameter gradients already converted to jlstm's layout."""
    out, grads = _jlstm_single(params, xs, LSTMState(*carry))
    grads = (grads[0], grads[1], tuple(grads[2]))
    return maxdiff(out, lib_out), maxdiff(grads, (lib_grads[0], lib_grads[1], tuple(lib_grads[2])))
