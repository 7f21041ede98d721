"""Haiku ``hk.LSTM``: one joint ``w [D + H, 4H]`` on ``[x, h]``, gate blocks i, g, f, o, and a +1 that
Haiku adds to the forget gate in its forward (folded into jlstm's forget bias). Needs no haiku import.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np

from jlstm.core.params import LSTMParams
from jlstm.interop._common import _array, _layout, _np, _params, _plain

HAIKU_GATES = ("i", "a", "f", "o")  # haiku: i, g, f, o


def _haiku_module(tree: Mapping, name: str | None, where: str) -> tuple[Mapping, str]:
    """The ``{"w", "b"}`` dict of the one ``hk.LSTM`` in ``tree`` and the key it was found under."""
    if "w" in tree:
        return tree, "params"
    if name is not None:
        if name not in tree:
            raise ValueError(f"{where}: no module {name!r} in params; got {sorted(tree)}.")
        key = name
    else:
        candidates = [k for k in tree if k.split("/")[-1] == "linear" and "w" in tree[k]]
        lstm = [k for k in candidates if k.endswith("lstm/linear")]
        if len(lstm) == 1:
            candidates = lstm
        if len(candidates) != 1:
            raise ValueError(
                f"{where}: expected one hk.LSTM module '<name>/linear' in params; "
                f"found {candidates or 'none'} "
                f"among {sorted(tree)}. Pass name=... to choose."
            )
        key = candidates[0]
    return tree[key], key


def from_haiku(params, *, name: str | None = None, forget_bias: float = 1.0) -> LSTMParams:
    """``hk.LSTM`` parameters -> ``LSTMParams``.

    Haiku computes ``[i, g, f, o] = [x, h] @ w + b`` (one joint matrix on the concatenation, **input
    first**; blocks i, g, f, o) and then ``f = sigmoid(f + 1)``: that constant is folded into jlstm's
    forget bias, ``b_f = b_f(haiku) + forget_bias``. So ``W = w[:D]``, ``U = w[D:]``.
    Haiku's ``LSTMState(hidden, cell)`` has jlstm's order: ``jlstm.LSTMState(*state)``.

    Args:
      params: the ``params`` of an ``hk.transform``-ed function using one ``hk.LSTM``: a mapping with a
        module ``".../linear"`` holding ``w [D + H, 4H]`` and ``b [4H]``, or that inner dict itself.
      name: the module key (e.g. ``"lstm/linear"``) when ``params`` holds several linear modules.
      forget_bias: the constant Haiku adds to the forget gate (1.0). Pass 0.0 to convert gradients or
        other linear quantities, which carry no such offset.

    Returns:
      ``LSTMParams``. ``to_haiku`` is its inverse up to the rounding of ``b_f + 1 - 1``.

    Example:
      >>> f = hk.transform(lambda x, s: hk.LSTM(4)(x, s))
      >>> hk_params = f.init(key, x, hk.LSTM(4).initial_state(2))  # (inside a transform)
      >>> params = jlstm.interop.from_haiku(hk_params)
    """
    where = "jlstm.interop.from_haiku"
    tree = _plain(params)
    if not isinstance(tree, Mapping):
        raise TypeError(f"{where}: params must be a Haiku params mapping; got {type(params).__name__}.")
    inner, key = _haiku_module(tree, name, where)
    w = _np(inner["w"])
    H = w.shape[-1] // 4 if w.ndim == 2 else -1
    w = _array(where, f"{key}['w']", w, (None, 4 * H), "[D + H, 4H]")
    D = w.shape[0] - H
    if D <= 0:
        raise ValueError(f"{where}: {key}['w'] must be [D + H, 4H] with H = {H}; got shape {w.shape}.")
    b = (
        _array(where, f"{key}['b']", inner["b"], (4 * H,), "[4H]")
        if "b" in inner
        else np.zeros(4 * H, w.dtype)
    )
    b = b.copy()
    b[2 * H : 3 * H] += forget_bias  # haiku's blocks i, g, f, o: f is the third
    return _params(w[:D], w[D:], b, HAIKU_GATES)


def to_haiku(params: LSTMParams, *, name: str = "lstm", forget_bias: float = 1.0) -> dict:
    """``LSTMParams`` -> ``{f"{name}/linear": {"w": [D + H, 4H], "b": [4H]}}`` for ``hk.LSTM``.

    The inverse of ``from_haiku``: blocks i, g, f, o, ``w = [W; U]`` and ``forget_bias`` subtracted from
    the forget block (Haiku adds it back in its forward).
    """
    W, U, b = _layout(params, "jlstm.interop.to_haiku", HAIKU_GATES)
    H = U.shape[0]
    b = b.copy()
    b[2 * H : 3 * H] -= forget_bias
    return {f"{name}/linear": {"w": jnp.asarray(np.concatenate([W, U], axis=0)), "b": jnp.asarray(b)}}
