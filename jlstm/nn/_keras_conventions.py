"""Keras's conventions, converted for the Keras layers and kept apart from them: ``keras.layers.LSTM``'s
arguments (those for the weights, and those refused), ``unit_forget_bias``, the seed generator's seeds as
PRNG keys, masks as lengths, a stack's flat ``[h, c]`` state list as per-layer carries, and the plain
values ``get_config`` saves (a user's cell as a token). No Keras import: the layers pass their Keras
objects in."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jlstm
from jlstm.core.interface import Cell
from jlstm.nn import _common as C
from jlstm.nn import _layout as L

#: The names ``get_config`` saves: the cell options (``_common.INIT_OPTIONS``), the per-layer options a
#: stack passes on to its layers, and each layer's own arguments.
CELL = ("peephole", "proj_size", "layer_norm", "cell_clip", "proj_clip", "variant")
STOCHASTIC = ("zoneout", "recurrent_dropout", "remat")
#: ``keras.layers.LSTM``'s arguments for its weights, by the weight they set (``kernel``, ...).
INITIALIZERS = {
    "kernel": "kernel_initializer",
    "recurrent_kernel": "recurrent_initializer",
    "bias": "bias_initializer",
}
REGULARIZERS = {
    "kernel": "kernel_regularizer",
    "recurrent_kernel": "recurrent_regularizer",
    "bias": "bias_regularizer",
}
CONSTRAINTS = {
    "kernel": "kernel_constraint",
    "recurrent_kernel": "recurrent_constraint",
    "bias": "bias_constraint",
}
WEIGHT_OBJECTS = (*INITIALIZERS.values(), *REGULARIZERS.values(), *CONSTRAINTS.values())
#: The weight arguments a stack passes on to its layers (``theta``: a user cell's own initial parameters).
WEIGHTS = ("use_bias", *WEIGHT_OBJECTS, "theta")
#: ``keras.layers.LSTM`` arguments that have no meaning for jlstm's layer: the values it accepts (the
#: first is Keras's default), and why another value is refused.
REFUSED = {
    "activation": (
        ("tanh",),
        "jlstm's cells compute tanh, with its hand-written derivative; for another activation write a "
        "jlstm.Cell and pass it as variant=cell (docs/variants.md, 'Your own cell')",
    ),
    "recurrent_activation": (
        ("sigmoid",),
        "jlstm's gates are sigmoids, with their hand-written derivative; for another gate function write a "
        "jlstm.Cell and pass it as variant=cell",
    ),
    "stateful": (
        (False,),
        "jlstm's layer keeps no state between batches: pass initial_state and read return_state instead",
    ),
    "unroll": ((False,), "jlstm runs a lax.scan with its own backward pass; there is nothing to unroll"),
    "use_cudnn": (("auto", False), "jlstm runs its own engine, never cuDNN"),
    "implementation": ((2, 1), "Keras's two implementations compute the same; jlstm has its own"),
}
LSTM_CONFIG = (
    "units",
    "return_sequences",
    "return_state",
    "go_backwards",
    "dropout",
    "recurrent_dropout",
    "zoneout",
    "unit_forget_bias",
    "use_bias",
    "backward",
    "remat",
    "seed",
)
STACKED_CONFIG = (
    "units",
    "num_layers",
    "bidirectional",
    "dropout",
    "return_sequences",
    "return_state",
    "unit_forget_bias",
    "backward",
    "seed",
)


def refuse(where: str, kwargs: dict, same) -> None:
    """Pop ``REFUSED``'s arguments from ``kwargs``: a value ``same`` (Keras's own comparison, e.g. of
    activations given by name or as functions) as an accepted one passes; any other is a ValueError."""
    for name, (accepted, why) in REFUSED.items():
        if name in kwargs:
            value = kwargs.pop(name)
            if not any(same(name, value, a) for a in accepted):
                raise ValueError(
                    f"{where}: {name}={value!r} is not supported ({why}); accepted: "
                    f"{', '.join(repr(a) for a in accepted)}."
                )


def forget_blocks(spec) -> dict:
    """``unit_forget_bias``'s starting bias by gate: 1 on the forget gate (CIFG, whose f = 1 - i: -1 on
    the input gate, as ``jlstm.init``); none for a user's cell, whose gates jlstm does not know."""
    if isinstance(spec, Cell):
        return {}
    if "f" in L.jlstm_gates(spec):
        return {"f": 1.0}
    return {"i": -1.0} if getattr(spec, "variant", None) == "CIFG" else {}


#: The user cells a config names, by token: a Cell holds Python functions, which a Keras config cannot
#: carry, so the config holds a token that this process resolves (``Bidirectional`` copies its layer
#: through its config).
_CELLS: dict[str, Cell] = {}


def cell_config(variant):
    """``variant`` for get_config: a name as it is, a user's ``jlstm.Cell`` as a token for this process."""
    if not isinstance(variant, Cell):
        return variant
    token = f"jlstm.Cell:{variant.name}:{id(variant)}"
    _CELLS.setdefault(token, variant)
    return token


def cell_from_config(where: str, variant):
    """The inverse of ``cell_config``; a token from another process is an error that says what to do."""
    if not (isinstance(variant, str) and variant.startswith("jlstm.Cell:")):
        return variant
    if variant not in _CELLS:
        raise ValueError(
            f"{where}: the config names a user's jlstm.Cell ({variant.split(':')[1]!r}) from another "
            "process; a cell's functions cannot be saved. Build the layer with variant=cell and load "
            "the weights (model.load_weights) instead."
        )
    return _CELLS[variant]


def theta_config(theta):
    """A user cell's ``theta`` for get_config: plain lists and dtypes, as JSON holds them."""
    if not theta:
        return None
    return {k: {"value": np.asarray(v).tolist(), "dtype": str(np.asarray(v).dtype)} for k, v in theta.items()}


def theta_from_config(theta):
    """The inverse of ``theta_config`` (arrays pass through)."""
    if not theta:
        return None
    decode = lambda v: np.asarray(v["value"], v["dtype"]) if isinstance(v, dict) else v  # noqa: E731
    return {k: decode(v) for k, v in theta.items()}


def key(seed_generator) -> jax.Array:
    return jax.random.wrap_key_data(jnp.asarray(seed_generator.next(), jnp.uint32))


def lengths(where: str, mask, batch):
    return None if mask is None else C.mask_to_lengths(where, mask, batch)


def rdropout_config(rd):
    """A ``jlstm.RecurrentDropout`` as a plain dict for get_config (floats pass through)."""
    return dict(rd._asdict()) if hasattr(rd, "_asdict") else rd


def rdropout_from_config(rd):
    """The inverse of ``rdropout_config``: a dict from a saved config back to a ``jlstm.RecurrentDropout``."""
    return jlstm.RecurrentDropout(**rd) if isinstance(rd, dict) else rd


def stack_carries(where: str, initial_state, num_layers: int, bidirectional: bool):
    """The flat ``[h, c]`` list per layer and direction -> one ``(h, c)`` per layer (pairs when
    bidirectional), as ``jlstm.stacked_lstm`` takes them; None stays None."""
    if initial_state is None:
        return None
    n_dir = 2 if bidirectional else 1
    if len(initial_state) != 2 * n_dir * num_layers:
        raise ValueError(
            f"{where}: initial_state must be the flat list [h, c] per layer and direction "
            f"({2 * n_dir * num_layers} arrays); got {len(initial_state)}."
        )
    pairs = [tuple(initial_state[2 * k : 2 * k + 2]) for k in range(n_dir * num_layers)]
    carries = [tuple(pairs[n_dir * n : n_dir * n + n_dir]) for n in range(num_layers)]
    return carries if bidirectional else [c[0] for c in carries]


def flat_states(finals, bidirectional: bool) -> list:
    """The final carries, one ``(h, c)`` per layer (pairs when bidirectional) -> the flat ``[h, c]`` list."""
    return [a for f in finals for s in (f if bidirectional else (f,)) for a in s]


def top_h(finals, bidirectional: bool) -> jax.Array:
    """The top layer's final ``h`` (both directions' concatenated): the output without return_sequences."""
    top = finals[-1] if bidirectional else (finals[-1],)
    return jnp.concatenate([s[0] for s in top], axis=-1)
