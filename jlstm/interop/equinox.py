"""Equinox ``eqx.nn.LSTMCell``: torch's layout (``weight_ih [4H, D]``, gate blocks i, f, g, o) with one
bias. ``equinox`` is imported only by ``to_equinox``, which builds a cell.
"""

from __future__ import annotations

import jax.numpy as jnp

from jlstm.core.params import LSTMParams
from jlstm.interop._common import _array, _layout, _np, _params, _zeros_like_bias

EQUINOX_GATES = ("i", "f", "a", "o")  # equinox: i, f, g, o


def from_equinox(cell) -> LSTMParams:
    """``eqx.nn.LSTMCell`` -> ``LSTMParams``.

    Equinox computes ``[i; f; g; o] = weight_ih @ x + weight_hh @ h + bias`` (``weight_ih [4H, D]``,
    ``weight_hh [4H, H]``, blocks i, f, g, o), so ``W = weight_ih^T``, ``U = weight_hh^T``. Its carry
    ``(h, c)`` has jlstm's order.

    Example:
      >>> cell = eqx.nn.LSTMCell(3, 4, key=key)
      >>> params = jlstm.interop.from_equinox(cell)
    """
    where = "jlstm.interop.from_equinox"
    if type(cell).__name__ != "LSTMCell" or not all(
        hasattr(cell, a) for a in ("weight_ih", "weight_hh", "bias")
    ):
        raise TypeError(f"{where}: cell must be an eqx.nn.LSTMCell; got {type(cell).__name__}.")
    Whh = _np(cell.weight_hh)
    H = Whh.shape[-1] if Whh.ndim == 2 else -1
    U = _array(where, "cell.weight_hh", Whh, (4 * H, H), "[4H, H]")
    W = _array(where, "cell.weight_ih", cell.weight_ih, (4 * H, None), "[4H, D]")
    b = (
        _zeros_like_bias(U.T)
        if cell.bias is None
        else _array(where, "cell.bias", cell.bias, (4 * H,), "[4H]")
    )
    return _params(W.T, U.T, b, EQUINOX_GATES)


def to_equinox(params: LSTMParams):
    """``LSTMParams`` -> a new ``eqx.nn.LSTMCell(D, H)`` holding these weights (dtype kept)."""
    import equinox as eqx
    import jax

    W, U, b = _layout(params, "jlstm.interop.to_equinox", EQUINOX_GATES)
    # The key only feeds the initialiser whose values are all replaced just below.
    cell = eqx.nn.LSTMCell(W.shape[0], U.shape[0], dtype=jnp.dtype(W.dtype), key=jax.random.key(0))
    return eqx.tree_at(
        lambda m: (m.weight_ih, m.weight_hh, m.bias),
        cell,
        (jnp.asarray(W.T), jnp.asarray(U.T), jnp.asarray(b)),
    )
