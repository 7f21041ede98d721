"""Parameters and state of an LSTM layer, in the source document's gate order (a, i, f, o)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

GATE_ORDER: tuple[str, ...] = ("a", "i", "f", "o")
"""Gate blocks along the last axis of ``W``, ``U`` and ``b``, in the source's order: input activation
``a`` (tanh), input gate ``i``, forget gate ``f``, output gate ``o``."""


class LSTMParams(NamedTuple):
    """Weights of one LSTM layer; ``z = x @ W + h @ U + b``.

    Attributes:
      W: ``[D, 4H]`` input weights.
      U: ``[H, 4H]`` recurrent weights.
      b: ``[4H]`` bias.

    Columns ``[0:H]`` belong to the gate ``a``, ``[H:2H]`` to ``i``, ``[2H:3H]`` to ``f`` and
    ``[3H:4H]`` to ``o``. A NamedTuple is a pytree: combine two with ``jax.tree.map`` or
    ``optax.apply_updates``, never ``+`` (which concatenates tuples).
    """

    W: jax.Array
    U: jax.Array
    b: jax.Array

    @property
    def input_size(self) -> int:
        return self.W.shape[0]

    @property
    def hidden_size(self) -> int:
        return self.U.shape[0]


class LSTMState(NamedTuple):
    """The recurrent carry ``(h, c)``: output ``h`` (the source's ``out``) and cell ``c`` (``state``).

    Each is ``[..., H]``. The order is (h, c), as in PyTorch and Keras; Flax uses (c, h).
    """

    h: jax.Array
    c: jax.Array


def init(
    key: jax.Array,
    input_size: int,
    hidden_size: int,
    *,
    forget_bias: float = 1.0,
    dtype: jnp.dtype = jnp.float32,
) -> LSTMParams:
    """Initialise an LSTM layer.

    ``W`` and ``U`` are drawn from ``uniform(-1/sqrt(H), 1/sqrt(H))`` as in ``torch.nn.LSTM``; the bias
    is zero except the forget-gate block, which is ``forget_bias`` (1.0 by default, following
    Gers et al. 2000 and Jozefowicz et al. 2015, so that the cell remembers at the start of training).

    Args:
      key: a PRNG key.
      input_size: D, the feature size of the inputs.
      hidden_size: H, the size of ``h`` and ``c``.
      forget_bias: the initial bias of the forget gate.
      dtype: the dtype of the parameters.

    Returns:
      ``LSTMParams`` with ``W [D, 4H]``, ``U [H, 4H]``, ``b [4H]``.

    Example:
      >>> params = jlstm.init(jax.random.key(0), 3, 5)
      >>> params.W.shape, params.U.shape, params.b.shape
      ((3, 20), (5, 20), (20,))
    """
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"init: {name} must be a positive int; got {value!r}.")
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"init: dtype must be a floating dtype; got {dtype}.")
    H = hidden_size
    bound = 1.0 / float(H) ** 0.5
    k_w, k_u = jax.random.split(key)
    W = jax.random.uniform(k_w, (input_size, 4 * H), dtype, -bound, bound)
    U = jax.random.uniform(k_u, (H, 4 * H), dtype, -bound, bound)
    b = jnp.zeros((4 * H,), dtype).at[2 * H : 3 * H].set(forget_bias)
    return LSTMParams(W, U, b)


def split_gates(z: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Split ``[..., 4H]`` into the four ``[..., H]`` blocks (a, i, f, o)."""
    return tuple(jnp.split(z, 4, axis=-1))  # type: ignore[return-value]
