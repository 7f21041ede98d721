"""Stacked and bidirectional LSTMs: layers of ``lstm()``, each layer's delta x flowing into the one below.

A bidirectional layer runs both directions as one scan: their parameters stacked on a leading axis, the
backward direction's input reversed within each sequence's length, and ``lstm`` vmapped over the two
(vmap of the custom_vjp keeps the hand-written backward). One loop of batched products per layer instead
of two loops one after the other (on XLA:CPU that measured slower: docs/performance.md, Performance II).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jlstm.cells.spec import CellParams
from jlstm.core import checks as _checks
from jlstm.core.params import LSTMParams, LSTMState
from jlstm.core.prepare import reverse_time
from jlstm.functional import as_cell_params, init, lstm

Layer = LSTMParams | CellParams


def _one(p, where):
    """A checked layer: ``LSTMParams`` stay as they are; ``CellParams`` are checked against their spec."""
    return as_cell_params(p, where) if isinstance(p, CellParams) else _checks.check_params(p, where)


def _width(p) -> int:
    return p.output_size if isinstance(p, CellParams) else p.hidden_size


def init_stacked(
    key: jax.Array,
    input_size: int,
    hidden_size: int,
    num_layers: int,
    *,
    bidirectional: bool = False,
    forget_bias: float = 1.0,
    dtype: jnp.dtype = jnp.float32,
    **cell_options,
) -> list[Layer] | list[tuple[Layer, Layer]]:
    """Initialise ``num_layers`` layers (``jlstm.init`` for each, with its own key).

    Layer 0 reads ``input_size`` features; the layers above read ``R`` (``2R`` when bidirectional,
    where each layer is a ``(forward, backward)`` pair whose outputs are concatenated), R = H or the
    projection width. ``cell_options`` (``peephole``, ``proj_size``, ``variant``, ...) go to every
    layer's ``jlstm.init``.

    Returns:
      A list of ``LSTMParams``, or of ``(forward, backward)`` pairs when ``bidirectional``.
    """
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers <= 0:
        raise ValueError(f"init_stacked: num_layers must be a positive int; got {num_layers!r}.")
    keys = jax.random.split(key, (num_layers, 2))
    layers: list = []
    for n in range(num_layers):
        d = (
            input_size
            if n == 0
            else (cell_options.get("proj_size") or hidden_size) * (2 if bidirectional else 1)
        )
        pair = tuple(
            init(k, d, hidden_size, forget_bias=forget_bias, dtype=dtype, **cell_options) for k in keys[n]
        )
        layers.append(pair if bidirectional else pair[0])
    return layers


def _check_layers(layers, bidirectional: bool, D: int, where: str):
    if not isinstance(layers, Sequence) or isinstance(layers, Layer) or len(layers) == 0:
        raise TypeError(
            f"{where}: layers must be a non-empty list of LSTMParams"
            f"{' (forward, backward) pairs' if bidirectional else ''}; got {type(layers).__name__}."
        )
    out, d = [], D
    for n, layer in enumerate(layers):
        if bidirectional:
            if isinstance(layer, Layer) or not (isinstance(layer, (tuple, list)) and len(layer) == 2):
                raise TypeError(
                    f"{where}: with bidirectional=True, layers[{n}] must be a (forward, backward) pair of "
                    f"LSTMParams; got {type(layer).__name__}."
                )
            pair = tuple(_one(p, f"{where}: layers[{n}][{k}]") for k, p in enumerate(layer))
            if _width(pair[0]) != _width(pair[1]):
                raise ValueError(
                    f"{where}: layers[{n}] forward and backward must have the same hidden size; "
                    f"got {_width(pair[0])} and {_width(pair[1])}."
                )
        else:
            if not isinstance(layer, CellParams) and not (isinstance(layer, tuple) and len(layer) == 3):
                raise TypeError(
                    f"{where}: layers[{n}] must be LSTMParams (use bidirectional=True for pairs); "
                    f"got {type(layer).__name__}."
                )
            pair = (_one(layer, f"{where}: layers[{n}]"),)
        for k, p in enumerate(pair):
            if p.input_size != d:
                below = "xs's feature size" if n == 0 else f"the output size of layers[{n - 1}]"
                name = f"layers[{n}]" + (f"[{k}]" if bidirectional else "")
                raise ValueError(
                    f"{where}: {name}.W must be [D, 4H] with D = {d}, {below}; got shape {tuple(p.W.shape)}."
                )
        out.append(pair)
        d = _width(pair[0]) * len(pair)
    return out


def _stackable(a, b) -> bool:
    """Whether two directions' parameters stack: the same kind of cell, shapes and dtypes."""
    (la, ta), (lb, tb) = jax.tree.flatten(a), jax.tree.flatten(b)
    same_tree = bool(ta == tb)  # type: ignore[operator]
    return same_tree and all(x.shape == y.shape and x.dtype == y.dtype for x, y in zip(la, lb))


def _reverse(h, lengths):
    """``h [..., T, F]`` reversed along time, within each sequence's length (an involution)."""
    if lengths is None:
        return jnp.flip(h, axis=-2)
    B = math.prod(h.shape[:-2])
    flat = reverse_time(h.reshape((B,) + h.shape[-2:]), lengths.reshape(B))  # [B, T, F], one batch axis
    return flat.reshape(h.shape)


def _stacked_carry(pair, carry, batch_shape, where):
    """Both directions' initial carries as one ``LSTMState`` with a leading direction axis, or None;
    ``where`` names the layer's carries in errors."""
    if carry is None or all(c is None for c in carry):
        return None
    full: list = []
    for k, (p, c) in enumerate(zip(pair, carry)):
        widths = (_width(p), p.hidden_size)
        if c is None:
            full.append(None)
            continue
        hc = _checks.check_carry(c, batch_shape, p.hidden_size, f"{where}[{k}]", widths[0])
        full.append(tuple(jnp.broadcast_to(v, batch_shape + (n,)) for v, n in zip(hc, widths)))
    given = next(c for c in full if c is not None)
    full = [tuple(jnp.zeros_like(v) for v in given) if c is None else c for c in full]
    return LSTMState(*(jnp.stack([a, b.astype(a.dtype)]) for a, b in zip(*full)))


def _check_layer_carry(pair, carry, batch_shape, bidirectional: bool, where: str, n: int) -> None:
    """``carries[n]``: None or an ``(h, c)`` pair; when bidirectional, None or a (forward, backward) pair
    of those. Checked here, so that its errors name ``carries[n]`` and not the layer's inner carry."""
    if carry is None:
        return
    if bidirectional:
        _check_direction_pair(carry, f"{where}: carries[{n}]")
        for k, (p, c) in enumerate(zip(pair, carry)):
            if c is not None:
                _checks.check_carry(c, batch_shape, p.hidden_size, where, _width(p), arg=f"carries[{n}][{k}]")
    else:
        _checks.check_carry(
            carry, batch_shape, pair[0].hidden_size, where, _width(pair[0]), arg=f"carries[{n}]"
        )


def _check_direction_pair(carry, name: str) -> None:
    """A bidirectional layer's carry is a (forward, backward) pair of carries, each None or an ``(h, c)``
    pair; one ``LSTMState`` of arrays is the usual mistake, so it is named as such."""
    is_pair = isinstance(carry, (tuple, list)) and len(carry) == 2
    if not is_pair or any(c is not None and not isinstance(c, (tuple, list)) for c in carry):
        got = type(carry).__name__ + (f" of length {len(carry)}" if isinstance(carry, (tuple, list)) else "")
        if is_pair:  # the usual mistake: one direction's (h, c) passed for the layer
            got = f"{type(carry).__name__} of arrays, one carry (h, c) rather than a pair of carries"
        raise TypeError(
            f"{name} must be a (forward, backward) pair of carries when bidirectional, each None or an "
            f"(h, c) pair such as jlstm.LSTMState(h, c); got {got}."
        )


def _bidirectional(pair, h, carry, lengths, keys, where, fuse, **kw):
    """One bidirectional layer: ``(hs [..., T, 2R], (final forward, final backward))``; ``keys`` one per
    direction (or None)."""
    if not (fuse and _stackable(*pair)):  # two scans; also for different cells per direction
        cf, cb = (None, None) if carry is None else carry
        hf, sf = lstm(pair[0], h, cf, lengths=lengths, key=keys[0], **kw)
        hb, sb = lstm(pair[1], h, cb, lengths=lengths, reverse=True, key=keys[1], **kw)
        return jnp.concatenate([hf, hb], axis=-1), (sf, sb)
    params = jax.tree.map(lambda a, b: jnp.stack([a, b]), *pair)
    xs2 = jnp.stack([h, _reverse(h, lengths)])  # [2, ..., T, D]: the backward direction runs forward
    carry2 = _stacked_carry(pair, carry, h.shape[:-2], where)
    key2 = None if keys[0] is None else jnp.stack(keys)

    def one(p, x, c, k):
        return lstm(p, x, c, lengths=lengths, key=k, **kw)

    axes = (0, 0, None if carry2 is None else 0, None if key2 is None else 0)
    hs2, (h2, c2) = jax.vmap(one, in_axes=axes)(params, xs2, carry2, key2)
    hs = jnp.concatenate([hs2[0], _reverse(hs2[1], lengths)], axis=-1)
    return hs, (LSTMState(h2[0], c2[0]), LSTMState(h2[1], c2[1]))


def stacked_lstm(
    layers: Sequence[LSTMParams] | Sequence[tuple[LSTMParams, LSTMParams]],
    xs: jax.Array,
    carries: Sequence | None = None,
    *,
    lengths: jax.Array | None = None,
    bidirectional: bool = False,
    backward: str = "manual",
    dropout: float = 0.0,
    key: jax.Array | None = None,
    fuse_directions: bool = False,
    **options,
) -> tuple[jax.Array, list]:
    """Run layers of LSTMs, the outputs of each layer being the inputs of the next.

    In the backward pass each layer's delta x (the source's ``W^T . delta gates_t``, "you would use it if
    there were LSTMs stacked beneath") is the cotangent that flows into the layer below.

    Args:
      layers: a list of ``LSTMParams``; with ``bidirectional``, of ``(forward, backward)`` pairs.
      xs: ``[..., T, D]``.
      carries: ``None`` (zeros) or one initial carry per layer: an ``LSTMState`` (a pair of them,
        forward and backward, when bidirectional).
      lengths: optional integer ``[...]``: valid steps per sequence (right padding), as in ``lstm``.
        The backward direction reads each sequence from its own last valid step.
      bidirectional: run a forward and a reversed LSTM per layer and concatenate their outputs
        ``[forward, backward]`` along the feature axis (the next layer's input size is ``2H``).
      backward: ``"manual"`` or ``"autodiff"``, as in ``lstm``.
      dropout: the probability of dropping each input of layers 1.. (inverted dropout between layers;
        none after the last layer). Needs ``key``.
      key: a PRNG key for dropout (and for the layers' own zoneout or recurrent dropout).
      fuse_directions: run a bidirectional layer's two directions as one scan (``vmap`` over the
        direction; same numbers). Off by default: on the CPU XLA's batched products made it 1.3-1.8x
        slower than two scans (docs/performance.md); it may pay on an accelerator.
      **options: passed to every layer's ``lstm``: ``remat``, ``compute_dtype``, ``zoneout``,
        ``recurrent_dropout``, ``training``.

    Returns:
      ``(hs, carries)``: ``hs [..., T, H]`` (``2H`` when bidirectional) from the top layer, and the
      final carry of every layer, structured like ``carries``.

    Example:
      >>> layers = jlstm.init_stacked(key, 8, 32, num_layers=2, bidirectional=True)
      >>> hs, carries = jlstm.stacked_lstm(layers, xs, lengths=lengths, bidirectional=True)
    """
    where = "jlstm.stacked_lstm"
    _checks.check_backward(backward, where)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{where}: dropout must be in [0, 1); got {dropout!r}.")
    if dropout > 0.0 and key is None:
        raise ValueError(f"{where}: dropout={dropout} needs a PRNG key: pass key=jax.random.key(...).")
    xs = _checks.check_xs(xs, jnp.shape(xs)[-1] if jnp.ndim(xs) else 0, where)
    checked = _check_layers(layers, bidirectional, xs.shape[-1], where)
    if carries is None:
        carries = [None] * len(checked)
    elif len(carries) != len(checked):
        raise ValueError(
            f"{where}: carries must have one entry per layer ({len(checked)}); got {len(carries)}."
        )
    if lengths is not None:
        lengths = _checks.check_lengths(lengths, xs.shape[:-2], xs.shape[-2], where)
    keys = None if key is None else jax.random.split(key, (len(checked), 3))
    finals = []
    h = xs
    for n, (pair, carry) in enumerate(zip(checked, carries)):
        lk = (None, None, None) if keys is None else keys[n]
        if n > 0 and dropout > 0.0:
            keep = jax.random.bernoulli(lk[0], 1.0 - dropout, h.shape)  # type: ignore[arg-type]
            h = jnp.where(keep, h / (1.0 - dropout), 0).astype(h.dtype)
        _check_layer_carry(pair, carry, h.shape[:-2], bidirectional, where, n)
        if bidirectional:  # each direction its own key, as in two calls of lstm
            name = f"{where}: carries[{n}]"
            h, s = _bidirectional(
                pair, h, carry, lengths, (lk[1], lk[2]), name, fuse_directions, backward=backward, **options
            )
        else:
            h, s = lstm(pair[0], h, carry, lengths=lengths, backward=backward, key=lk[1], **options)
        finals.append(s)
    return h, finals
