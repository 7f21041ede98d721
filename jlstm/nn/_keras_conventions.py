"""Keras's conventions, converted for the Keras layers and kept apart from them: the seed generator's
seeds as PRNG keys, masks as lengths, a stack's flat ``[h, c]`` state list as per-layer carries, and the
plain values ``get_config`` saves. No Keras import: the layers pass their Keras objects in."""

from __future__ import annotations

import jax
import jax.numpy as jnp

import jlstm
from jlstm.nn import _common as C

#: The names ``get_config`` saves: the cell options (``_common.INIT_OPTIONS``), the per-layer options a
#: stack passes on to its layers, and each layer's own arguments.
CELL = ("peephole", "proj_size", "layer_norm", "cell_clip", "proj_clip", "variant")
STOCHASTIC = ("zoneout", "recurrent_dropout", "remat")
LSTM_CONFIG = (
    "units",
    "return_sequences",
    "return_state",
    "go_backwards",
    "dropout",
    "recurrent_dropout",
    "zoneout",
    "unit_forget_bias",
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
