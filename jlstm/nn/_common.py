"""What the framework layers share, framework-free: jlstm's options, parameters by name, the checks at
the layer boundary and the keyword arguments of ``jlstm.lstm``. No maths: the layers convert their
framework's conventions here and call the functional core."""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

import jlstm

#: The options that choose the cell, ``jlstm.init``'s (``variant`` may also be a user's ``jlstm.Cell``);
#: passed on only when set, so a vanilla layer gets exactly ``jlstm.LSTMParams``.
INIT_OPTIONS = ("peephole", "proj_size", "layer_norm", "cell_clip", "proj_clip", "variant")
#: The parameters every cell has; a variant's own (``p_i``, ``P``, ``gamma_x``, ...) come after them.
CORE_PARAMS = ("W", "U", "b")


def init_options(**options) -> dict:
    """The cell options that differ from a plain LSTM's (``None``/``False`` mean "not set")."""
    unknown = set(options) - set(INIT_OPTIONS)
    if unknown:
        raise TypeError(f"unknown cell options {sorted(unknown)}; expected some of {INIT_OPTIONS}.")
    return {k: v for k, v in options.items() if v is not None and v is not False}


def to_arrays(params) -> dict:
    """LSTMParams or CellParams -> ``{"W", "U", "b", *extra}``."""
    return {"W": params.W, "U": params.U, "b": params.b, **dict(getattr(params, "extra", None) or {})}


def from_arrays(arrays: Mapping, spec):
    """``{name: array}`` and the spec -> the functional parameters (LSTMParams or CellParams); no ``b``
    (a layer built without a bias) is a zero bias."""
    if "b" not in arrays:
        arrays = {**arrays, "b": jnp.zeros(arrays["W"].shape[-1:], arrays["W"].dtype)}
    if spec is None:
        return jlstm.LSTMParams(arrays["W"], arrays["U"], arrays["b"])
    extra = {k: v for k, v in arrays.items() if k not in CORE_PARAMS}
    return jlstm.CellParams(W=arrays["W"], U=arrays["U"], b=arrays["b"], extra=extra, spec=spec)


def sizes(params) -> tuple[int, int, int]:
    """``(D, H, R)``: input, cell and output size (R = proj_size or H)."""
    D, H = params.W.shape[0], getattr(params, "hidden_size", params.U.shape[0])
    return D, H, getattr(params, "output_size", H)


# ------------------------------------------------------------------------------------------- checks


def check_inputs(where: str, name: str, x, D: int, *, size_name: str, min_ndim: int = 2) -> jax.Array:
    """A real floating array ``[..., D]`` of rank >= ``min_ndim``, else an error naming ``name``."""
    if not hasattr(x, "dtype"):
        x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{where}: {name} must be a floating array; got dtype {x.dtype}.")
    if x.ndim < min_ndim or x.shape[-1] != D:
        want = "[..., T, D]" if min_ndim >= 2 else "[..., D]"
        raise ValueError(
            f"{where}: {name} must be {want} with D = {D} ({size_name}) features in its last axis; "
            f"got shape {tuple(x.shape)}."
        )
    return x


def check_carry(where: str, name: str, carry, order: tuple[str, str], batch: tuple, H: int, R: int):
    """A carry in the framework's ``order`` (("c", "h") for Flax, ("h", "c") otherwise) -> ``(h, c)``.

    Each part must be ``[*batch, size]`` (or broadcastable to it): ``h`` has R = proj_size or H
    features, ``c`` has H. A ``jlstm.LSTMState`` given to a Flax layer is the wrong order.
    """
    if order == ("c", "h") and isinstance(carry, jlstm.LSTMState):
        raise TypeError(
            f"{where}: {name} is a jlstm.LSTMState, which is (h, c); Flax carries are (c, h): pass "
            f"({name}.c, {name}.h)."
        )
    if not (isinstance(carry, (tuple, list)) and len(carry) == 2):
        got = type(carry).__name__ + (f" of length {len(carry)}" if isinstance(carry, (tuple, list)) else "")
        raise TypeError(f"{where}: {name} must be a pair ({', '.join(order)}); got {got}.")
    parts = dict(zip(order, carry))
    for k, (part, size) in enumerate(zip(order, (H if o == "c" else R for o in order))):
        v = parts[part]
        shape = tuple(np.shape(v))
        want = tuple(batch) + (size,)
        try:
            ok = shape[-1:] == (size,) and np.broadcast_shapes(shape, want) == want
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(
                f"{where}: {name}[{k}] ({part}) must be {want} (order ({', '.join(order)}), batch shape "
                f"{tuple(batch)}, {part} has {size} features); got shape {shape}."
            )
    return parts["h"], parts["c"]


def check_lengths(where: str, name: str, lengths, batch: tuple):
    if lengths is None:
        return None
    if not hasattr(lengths, "dtype"):
        lengths = jnp.asarray(lengths)
    if not jnp.issubdtype(lengths.dtype, jnp.integer) or tuple(lengths.shape) != tuple(batch):
        raise ValueError(
            f"{where}: {name} must be an integer array of the batch shape {tuple(batch)}; "
            f"got {lengths.dtype} of shape {tuple(lengths.shape)}."
        )
    return lengths


def _raise_if_holes(where: str, holes) -> None:
    if np.any(holes):
        raise ValueError(
            f"{where}: mask must be right-padded (each row True then False, as from "
            "Embedding(mask_zero=True) on right-padded tokens): jlstm runs each sequence up to its "
            "length; got a mask with a False before a True."
        )


def mask_to_lengths(where: str, mask, batch: tuple) -> jax.Array:
    """A right-padded boolean mask ``[*batch, T]`` -> lengths ``[*batch]``; a mask with holes is an
    error: at trace time when the mask is concrete, else at run time (a host callback)."""
    mask = jnp.asarray(mask)
    if mask.shape[:-1] != tuple(batch) or mask.ndim != len(batch) + 1:
        raise ValueError(f"{where}: mask must be [*batch, T] = {tuple(batch)} + (T,); got {mask.shape}.")
    mask = mask.astype(bool)
    lengths = jnp.sum(mask, axis=-1, dtype=jnp.int32)
    # Right padding <=> the mask equals the prefix mask of its own lengths.
    steps = jnp.arange(mask.shape[-1]).reshape((1,) * len(batch) + (-1,))
    holes = jnp.any(mask != (steps < lengths[..., None]))
    if isinstance(holes, jax.core.Tracer):
        jax.debug.callback(lambda h: _raise_if_holes(where, h), holes)
    else:
        _raise_if_holes(where, holes)
    return lengths


# ------------------------------------------------------------------------------------- call options


def recurrent_dropout(rate, input_rate: float = 0.0):
    """The ``recurrent_dropout`` argument of ``jlstm.lstm``: ``rate`` on h (a float or a
    ``jlstm.RecurrentDropout``) with ``input_rate`` on x folded in; ``None`` when every rate is 0."""
    rd = rate if isinstance(rate, jlstm.RecurrentDropout) else jlstm.RecurrentDropout(rate=rate or 0.0)
    if input_rate:
        if rd.input_rate:
            raise ValueError(
                "set the input dropout either as the layer's dropout or as recurrent_dropout.input_rate, "
                f"not both; got dropout={input_rate!r} and recurrent_dropout={rate!r}."
            )
        rd = rd._replace(input_rate=input_rate)
    return None if rd.rate == rd.input_rate == rd.dropconnect == 0 else rd


def stochastic(zoneout, rdropout) -> bool:
    """Whether the layer draws masks in training (and so needs a PRNG key then)."""
    return bool(zoneout) or rdropout is not None


def lstm_kwargs(*, backward, remat, compute_dtype, zoneout, rdropout, key) -> dict:
    """Keyword arguments for ``jlstm.lstm``; options left unset are not passed."""
    kw = {"backward": backward}
    zoneout = zoneout or None
    for name, value in (
        ("remat", remat),
        ("compute_dtype", compute_dtype),
        ("zoneout", zoneout),
        ("recurrent_dropout", rdropout),
        ("key", key),
    ):
        if value is not None:
            kw[name] = value
    return kw


# --------------------------------------------------------------------------------------------- flax


def flax_call(
    where, params, inputs, *, initial_carry, seq_lengths, time_major, reverse, keep_order, flip, **kw
):
    """The Flax ``RNNBase`` protocol over ``jlstm.lstm``: ``inputs [*batch, T, D]`` (``[T, *batch, D]``
    when ``time_major``), the carry ``(c, h)``; returns ``((c, h), outputs)``.

    ``flip`` is Flax's ``flip_sequences``: with ``reverse`` and not ``keep_order`` the outputs come back
    reversed within each sequence, as ``nnx.RNN``/``nn.RNN`` return them.
    """
    D, H, R = sizes(params)
    x = check_inputs(where, "inputs", inputs, D, size_name="in_features")
    if time_major:
        x = jnp.moveaxis(x, 0, -2)
    batch = x.shape[:-2]
    lengths = check_lengths(where, "seq_lengths", seq_lengths, batch)
    carry = None
    if initial_carry is not None:
        carry = check_carry(where, "initial_carry", initial_carry, ("c", "h"), batch, H, R)
    hs, (h, c) = jlstm.lstm(params, x, carry, lengths=lengths, reverse=bool(reverse), **kw)
    if reverse and not keep_order:
        hs = flip(hs, lengths, num_batch_dims=len(batch), time_major=False)
    if time_major:
        hs = jnp.moveaxis(hs, -2, 0)
    return (c, h), hs


def flax_step(where, params, carry, x):
    """One evaluation-mode step, Flax cell style: ``((c, h), x) -> ((c, h), h)``."""
    D, H, R = sizes(params)
    x = check_inputs(where, "x", x, D, size_name="in_features", min_ndim=1)
    h, c = check_carry(where, "carry", carry, ("c", "h"), x.shape[:-1], H, R)
    (h, c), y = jlstm.cell(params, (h, c), x)
    return (c, h), y


def _carries_in(where, name, carries, n_layers, bidirectional, order, batch, layers):
    """Per-layer carries in the framework's order -> jlstm's (a pair of them per bidirectional layer)."""
    if carries is None:
        return None
    if not isinstance(carries, (tuple, list)) or len(carries) != n_layers:
        raise ValueError(
            f"{where}: {name} must hold one carry per layer ({n_layers}); got {type(carries).__name__}"
            + (f" of length {len(carries)}." if isinstance(carries, (tuple, list)) else ".")
        )
    out = []
    for n, (carry, layer) in enumerate(zip(carries, layers)):
        if bidirectional and not (isinstance(carry, (tuple, list)) and len(carry) == 2):
            raise TypeError(f"{where}: {name}[{n}] must be a (forward, backward) pair of carries.")
        conv = []
        for k, (c, p) in enumerate(zip(carry, layer) if bidirectional else [(carry, layer)]):
            label = f"{name}[{n}]" + (f"[{k}]" if bidirectional else "")
            conv.append(jlstm.LSTMState(*check_carry(where, label, c, order, batch, *sizes(p)[1:])))
        out.append(tuple(conv) if bidirectional else conv[0])
    return out


def stacked_call(
    where,
    layers,
    x,
    *,
    carries,
    lengths,
    bidirectional,
    order,
    names=("inputs", "seq_lengths", "initial_carry"),
    **kw,
):
    """``jlstm.stacked_lstm`` with carries in the framework's ``order``; ``x [*batch, T, D]``. ``names``:
    the framework's names of the inputs, the lengths and the carries, for the errors.

    Returns ``(outputs, finals)`` with each final carry in ``order`` (pairs when bidirectional)."""
    first = layers[0][0] if bidirectional else layers[0]
    x = check_inputs(where, names[0], x, sizes(first)[0], size_name="the input size")
    batch = x.shape[:-2]
    lengths = check_lengths(where, names[1], lengths, batch)
    carries = _carries_in(where, names[2], carries, len(layers), bidirectional, order, batch, layers)
    hs, finals = jlstm.stacked_lstm(layers, x, carries, lengths=lengths, bidirectional=bidirectional, **kw)
    to = (lambda s: (s.c, s.h)) if order == ("c", "h") else (lambda s: jlstm.LSTMState(s.h, s.c))
    return hs, [tuple(to(s) for s in f) if bidirectional else to(f) for f in finals]
