"""Flax ``LSTMCell`` / ``OptimizedLSTMCell`` (linen and nnx): parameters, and the carry (Flax's (c, h)).

Flax's kernels are already ``[in, out]`` with gate blocks i, f, g, o; its bias sits on the hidden side.
``flax`` itself is imported only to unpack an nnx module or state (in ``_common._plain``).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np

from jlstm.core.params import LSTMParams, LSTMState
from jlstm.interop._common import _array, _layout, _np, _params, _plain

FLAX_GATES = ("i", "f", "a", "o")  # flax: i, f, g, o
_FLAX_GATE_NAMES = {"i": "i", "f": "f", "a": "g", "o": "o"}


def _from_flax_optimized(tree: Mapping, where: str) -> LSTMParams:
    """nnx ``OptimizedLSTMCell``'s ``dense_i [D, 4H]`` and ``dense_h [H, 4H]`` + bias -> LSTMParams."""
    try:
        Wh = _np(tree["dense_h"]["kernel"])
        H = Wh.shape[-1] // 4
        U = _array(where, "dense_h.kernel", Wh, (H, 4 * H), "[H, 4H]")
        W = _array(where, "dense_i.kernel", tree["dense_i"]["kernel"], (None, 4 * H), "[D, 4H]")
        b = _array(where, "dense_h.bias", tree["dense_h"]["bias"], (4 * H,), "[4H]")
    except KeyError as e:
        raise ValueError(
            f"{where}: dense_i needs 'kernel' and dense_h 'kernel' and 'bias'; missing {e}."
        ) from e
    return _params(W, U, b, FLAX_GATES)


def _from_flax_per_gate(tree: Mapping, where: str) -> LSTMParams:
    """``LSTMCell``'s one kernel per gate and side (``ii`` ... ``io``, ``hi`` ... ``ho``) -> LSTMParams."""
    W, U, b = [], [], []
    H = D = None
    for gate in FLAX_GATES:
        g = _FLAX_GATE_NAMES[gate]
        ni = f"i{g}" if f"i{g}" in tree else f"i{g}_"  # nnx calls the input forget gate `if_`
        nh = f"h{g}"
        if ni not in tree or nh not in tree:
            raise ValueError(
                f"{where}: expected the LSTMCell parameters ii, if, ig, io, hi, hf, hg, ho (or nnx's "
                f"dense_i/dense_h); {f'i{g}' if ni not in tree else nh!r} is missing. "
                f"Got keys {sorted(tree)}."
            )
        try:
            kh, kb, ki = tree[nh]["kernel"], tree[nh]["bias"], tree[ni]["kernel"]
        except (KeyError, TypeError) as e:
            raise ValueError(
                f"{where}: {nh} needs 'kernel' and 'bias', {ni} needs 'kernel'; missing {e}."
            ) from e
        kh = _np(kh)
        H = kh.shape[-1] if H is None else H
        U.append(_array(where, f"{nh}.kernel", kh, (H, H), "[H, H]"))
        b.append(_array(where, f"{nh}.bias", kb, (H,), "[H]"))
        W.append(_array(where, f"{ni}.kernel", ki, (D, H), "[D, H]"))
        D = W[-1].shape[0]
    W_, U_, b_ = (np.concatenate(m, axis=-1) for m in (W, U, b))
    return _params(W_, U_, b_, FLAX_GATES)


def from_flax(params) -> LSTMParams:
    """Flax ``LSTMCell`` / ``OptimizedLSTMCell`` parameters (linen or nnx) -> ``LSTMParams``.

    Flax computes ``i = sigmoid(x @ W_ii + h @ W_hi + b_hi)`` and likewise f, g (tanh), o: one kernel per
    gate on each side and **one bias per gate, on the hidden side** (``hi``, ``hf``, ``hg``, ``ho``). The
    nnx ``OptimizedLSTMCell`` fuses them: ``dense_i [D, 4H]`` and ``dense_h [H, 4H]`` + bias, gate order
    i, f, g, o. Flax's kernels are already ``[in, out]``, so only the blocks are reordered.

    Flax's carry is **(c, h)**; jlstm's is (h, c): use ``from_flax_carry`` / ``to_flax_carry``.

    Args:
      params: any of: a linen ``variables`` dict (``{"params": {...}}``) or its ``"params"`` entry, with
        keys ``ii, if, ig, io`` (``kernel [D, H]``) and ``hi, hf, hg, ho`` (``kernel [H, H]``, ``bias
        [H]``); an ``nnx.LSTMCell`` (attributes ``ii, if_, ...``) or ``nnx.OptimizedLSTMCell`` (``dense_i``,
        ``dense_h``); or their ``nnx.state``.

    Returns:
      ``LSTMParams`` (W ``[D, 4H]``, U ``[H, 4H]``, b ``[4H]``).

    Example:
      >>> cell = flax.linen.LSTMCell(features=4)
      >>> variables = cell.init(key, cell.initialize_carry(key, (2, 3)), jnp.ones((2, 3)))
      >>> params = jlstm.interop.from_flax(variables)
    """
    where = "jlstm.interop.from_flax"
    tree = _plain(params)
    if not isinstance(tree, Mapping):
        raise TypeError(
            f"{where}: params must be a Flax params dict, an nnx LSTM cell or its state; got "
            f"{type(params).__name__}."
        )
    if "params" in tree and isinstance(tree["params"], Mapping):
        tree = tree["params"]
    # Wrappers such as flax.linen.RNN nest the cell one level down ({"cell": {...}}): follow a lone child.
    while "hi" not in tree and "dense_h" not in tree and len(tree) == 1:
        (child,) = tree.values()
        if not isinstance(child, Mapping):
            break
        tree = child
    if "dense_i" in tree and "dense_h" in tree:  # nnx.OptimizedLSTMCell
        return _from_flax_optimized(tree, where)
    return _from_flax_per_gate(tree, where)


def to_flax(params: LSTMParams, *, layout: str = "linen") -> dict:
    """``LSTMParams`` -> Flax LSTM parameters, the inverse of ``from_flax``.

    Args:
      params: ``LSTMParams``.
      layout: ``"linen"`` (``{"ii": {"kernel"}, ..., "hi": {"kernel", "bias"}, ...}``, for both linen
        cells: wrap it as ``{"params": ...}`` to ``apply``), ``"nnx"`` (the same with ``if_``, for
        ``nnx.LSTMCell``) or ``"nnx_optimized"`` (``dense_i``/``dense_h``, for ``nnx.OptimizedLSTMCell``).
        Load an nnx dict with ``nnx.replace_by_pure_dict(state, d)`` then ``nnx.update(cell, state)``.

    Returns:
      A nested dict of jax arrays; the bias sits on the hidden side (``hi`` ... ``ho``).
    """
    where = "jlstm.interop.to_flax"
    layouts = ("linen", "nnx", "nnx_optimized")
    if layout not in layouts:
        raise ValueError(f"{where}: layout must be one of {layouts}; got {layout!r}.")
    W, U, b = (jnp.asarray(a) for a in _layout(params, where, FLAX_GATES))
    if layout == "nnx_optimized":
        return {"dense_i": {"kernel": W}, "dense_h": {"kernel": U, "bias": b}}
    out = {}
    for k, gate in enumerate(FLAX_GATES):
        g = _FLAX_GATE_NAMES[gate]
        cols = slice(k * U.shape[0], (k + 1) * U.shape[0])
        out[f"i{g}_" if (layout == "nnx" and g == "f") else f"i{g}"] = {"kernel": W[:, cols]}
        out[f"h{g}"] = {"kernel": U[:, cols], "bias": b[cols]}
    return out


def from_flax_carry(carry) -> LSTMState:
    """Flax's carry ``(c, h)`` -> jlstm's ``LSTMState(h, c)``."""
    if not (isinstance(carry, (tuple, list)) and len(carry) == 2):
        raise TypeError(
            f"jlstm.interop.from_flax_carry: carry must be Flax's (c, h) pair; got {type(carry).__name__}."
        )
    c, h = carry
    return LSTMState(h, c)


def to_flax_carry(state) -> tuple:
    """jlstm's ``LSTMState(h, c)`` -> Flax's carry ``(c, h)``."""
    if not (isinstance(state, (tuple, list)) and len(state) == 2):
        raise TypeError(
            f"jlstm.interop.to_flax_carry: state must be an (h, c) pair; got {type(state).__name__}."
        )
    h, c = state
    return (c, h)
