"""The gates and activations of Greff et al.'s ablations ("LSTM: A Search Space Odyssey", 2017).

Each variant changes the peephole LSTM in one place (``spec.VARIANTS`` lists the gates each keeps):

    NIG  i = 1           NFG  f = 1           NOG  o = 1            CIFG f = 1 - i
    NIAF a = z^a (no tanh on the block input)  NOAF h = o * c (no tanh on the cell output)

Backward, per gate, ``delta z^g = delta g * (the activation's derivative)``:

    delta z^a = delta a * (1 - a^2)   (NIAF: delta a)        delta z^{i,f,o} = delta g * g * (1 - g)
    CIFG: delta i = delta c * (a - c_{t-1}) and delta c_{t-1} = delta c * (1 - i)
    NFG: delta c_{t-1} = delta c
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def gates(z: dict, variant) -> tuple[jax.Array, jax.Array | float, jax.Array | float]:
    """Block input and input/forget gates ``(a, i, f)`` from the pre-activations by name (1.0 for a gate
    the variant removes)."""
    a = z["a"] if variant == "NIAF" else jnp.tanh(z["a"])
    i: jax.Array | float = jax.nn.sigmoid(z["i"]) if "i" in z else 1.0
    f: jax.Array | float
    if "f" in z:
        f = jax.nn.sigmoid(z["f"])
    else:
        f = 1 - i if variant == "CIFG" else 1.0
    return a, i, f


def output_gate(z: dict):
    return jax.nn.sigmoid(z["o"]) if "o" in z else 1.0


def output_activation(n, variant):
    """``tanh(n)``, or ``n`` itself for NOAF."""
    return n if variant == "NOAF" else jnp.tanh(n)


def output_activation_bwd(d_s, s, variant):
    return d_s if variant == "NOAF" else d_s * (1 - s * s)


def cell_update_bwd(ds, a, i, f, c_prev, present, variant):
    """From ``delta c_t`` (``ds``): ``delta z`` of a, i, f (by name, present gates only) and the part of
    ``delta c_{t-1}`` through the cell update ``c_t = a * i + f * c_{t-1}``."""
    dz = {"a": ds * i * (1 if variant == "NIAF" else 1 - a * a)}
    d_i = ds * a
    if variant == "CIFG":  # f = 1 - i
        d_i = ds * (a - c_prev)
    if "i" in present:
        dz["i"] = d_i * i * (1 - i)
    if "f" in present:
        dz["f"] = ds * c_prev * f * (1 - f)
    return dz, ds * f
