"""Keras 3 ``LSTM`` / ``LSTMCell``: jlstm's own layout (``kernel [D, 4H]``) with gate blocks i, f, c, o.

No keras import is needed: a layer is read through its ``weights`` and ``cell`` attributes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jlstm.core.params import LSTMParams
from jlstm.interop._common import _array, _layout, _np, _params, _zeros_like_bias

KERAS_GATES = ("i", "f", "a", "o")  # keras: i, f, c, o


def from_keras(layer_or_weights) -> LSTMParams:
    """Keras 3 ``LSTM`` weights -> ``LSTMParams``.

    Keras computes ``z = x @ kernel + h @ recurrent_kernel + bias`` with blocks **i, f, c, o** (``c`` is
    the tanh candidate, jlstm's ``a``): the same layout as jlstm, only the blocks are reordered. The carry
    ``[h, c]`` (``initial_state``, ``return_state``) has jlstm's order.

    Args:
      layer_or_weights: a ``keras.layers.LSTM`` or ``keras.layers.LSTMCell`` (its activations must be
        the default tanh/sigmoid), or its ``get_weights()``: ``[kernel [D, 4H], recurrent_kernel [H, 4H],
        bias [4H]]`` (the bias absent when ``use_bias=False``).

    Returns:
      ``LSTMParams``.

    Example:
      >>> layer = keras.layers.LSTM(4, return_sequences=True); layer.build((None, None, 3))
      >>> params = jlstm.interop.from_keras(layer)
    """
    where = "jlstm.interop.from_keras"
    obj = layer_or_weights
    if hasattr(obj, "get_weights"):
        cell = getattr(obj, "cell", obj)
        for attr, want in (("activation", "tanh"), ("recurrent_activation", "sigmoid")):
            fn = getattr(cell, attr, None)
            if fn is not None and getattr(fn, "__name__", want) != want:
                raise ValueError(
                    f"{where}: the layer's {attr} is {fn.__name__}; jlstm computes the standard LSTM with "
                    f"{attr}={want!r}."
                )
        if not getattr(obj, "built", True):
            raise ValueError(f"{where}: the layer has no weights yet; build it or call it on an input first.")
        weights = list(obj.weights)  # not get_weights(), whose numpy() conversion warns under numpy 2
    elif isinstance(obj, Sequence):
        weights = list(obj)
    else:
        raise TypeError(
            f"{where}: layer_or_weights must be a keras LSTM layer or [kernel, recurrent_kernel, bias]; got "
            f"{type(obj).__name__}."
        )
    if len(weights) not in (2, 3):
        raise ValueError(
            f"{where}: expected [kernel, recurrent_kernel, bias] (or without bias); "
            f"got {len(weights)} arrays."
        )
    R = _np(weights[1])
    H = R.shape[-1] // 4 if R.ndim == 2 else -1
    U = _array(where, "recurrent_kernel", R, (H, 4 * H), "[H, 4H]")
    W = _array(where, "kernel", weights[0], (None, 4 * H), "[D, 4H]")
    b = _array(where, "bias", weights[2], (4 * H,), "[4H]") if len(weights) == 3 else _zeros_like_bias(U)
    return _params(W, U, b, KERAS_GATES)


def to_keras(params: LSTMParams) -> list[np.ndarray]:
    """``LSTMParams`` -> ``[kernel, recurrent_kernel, bias]`` (numpy; gates i, f, c, o) for set_weights."""
    return list(_layout(params, "jlstm.interop.to_keras", KERAS_GATES))
