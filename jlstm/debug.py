"""Opt-in runtime checks (``jax.experimental.checkify``): NaN/Inf in inputs, lengths out of range.

Shape and dtype errors are raised at trace time by every public function. Value errors (a NaN in the
data, a length larger than T inside ``jit``) cannot be, since the values are not known then; this
module checks them at run time when asked to, and names where the bad value entered.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental import checkify

from jlstm.core.interface import Cell
from jlstm.core.precision import check_compute_dtype, state_dtype
from jlstm.core.state import LSTM_STATE
from jlstm.functional import lstm


def _first(name: str, bad: jax.Array, what: str, advice: str = "") -> None:
    """A check that ``bad`` is nowhere true; the message carries the first true index, unravelled."""
    flat = jnp.argmax(bad.reshape(-1))
    idx = jnp.stack(jnp.unravel_index(flat, bad.shape)) if bad.ndim else jnp.zeros((0,), jnp.int32)
    msg = f"jlstm: {name} {what}; the first at index {{}} of shape {bad.shape}." + (
        f" {advice}." if advice else ""
    )
    checkify.check(~jnp.any(bad), msg, idx)


def _advice(cd: jnp.dtype) -> str:
    wider = "float32" if cd == jnp.bfloat16 else "bfloat16 (float32's range, fewer digits) or float32"
    return f"Compute in {wider} (compute_dtype=...), or scale the inputs or weights down"


def _leaves(params, xs, carry):
    """``(name, array)`` for every floating input: each leaf of ``params`` named by its path (e.g.
    ``params.extra['p_i']``), ``xs`` and the carry."""
    named = [(f"params{jax.tree_util.keystr(p)}", a) for p, a in jax.tree_util.tree_leaves_with_path(params)]
    named.append(("xs", xs))
    if carry is not None:  # named as the cell names its states: carry.h, carry.c for the LSTM family
        spec = getattr(params, "spec", None)
        states = spec.state if isinstance(spec, Cell) and spec.state is not None else LSTM_STATE
        named += [(f"carry.{st.name}", v) for st, v in zip(states, carry)]
    return [(n, jnp.asarray(a)) for n, a in named if jnp.issubdtype(jnp.result_type(a), jnp.floating)]


def _compute_dtype(params, xs, compute_dtype=None) -> jnp.dtype:
    """The dtype ``lstm`` computes in: ``compute_dtype``, else ``result_type(xs, *params)``."""
    cd = check_compute_dtype(compute_dtype, "jlstm.debug")
    return jnp.dtype(cd if cd is not None else jnp.result_type(xs, *jax.tree.leaves(params)))


def check_inputs(params, xs, carry=None, lengths=None, *, compute_dtype=None) -> None:
    """Runtime checks of ``lstm``'s inputs, for use inside ``checkify.checkify``.

    Checks that every floating leaf of ``params`` (``LSTMParams`` or any ``CellParams``: ``params.W``,
    ``params.extra['p_i']``, ...), ``xs`` and the carry are finite and that ``lengths`` lie in ``[0, T]``.
    Under 16-bit compute (``compute_dtype`` or 16-bit inputs) it also checks that what is rounded to the
    compute dtype (``xs``, ``params.W``, ``params.U``, ``carry.h``) fits it: float16's largest finite
    value is 65504, and a larger float32 input becomes inf there.
    """
    named = _leaves(params, xs, carry)
    for name, a in named:
        _first(name, ~jnp.isfinite(a), "holds NaN or Inf")
    cd = _compute_dtype(params, xs, compute_dtype)
    if state_dtype(cd) != cd:  # 16-bit compute: the products' operands are rounded to cd
        rounded = ("xs", "params.W", "params.U", "carry.h")
        for name, a in named:
            if name in rounded and jnp.finfo(a.dtype).max > jnp.finfo(cd).max:
                what = (
                    f"holds values beyond {cd.name}'s range (largest finite {float(jnp.finfo(cd).max):g}), "
                    f"which become inf when rounded to the compute dtype {cd.name}"
                )
                _first(name, jnp.isfinite(a) & ~jnp.isfinite(a.astype(cd)), what, _advice(cd))
    if lengths is not None:
        T = jnp.shape(xs)[-2]
        checkify.check(
            jnp.all((lengths >= 0) & (lengths <= T)),
            f"jlstm: lengths must lie in [0, T] = [0, {T}]; got min {{}} and max {{}}.",
            jnp.min(lengths),
            jnp.max(lengths),
        )


def _overflow_message(cd: jnp.dtype) -> str:
    msg = "jlstm: the outputs became non-finite inside the recurrence, first at step t = {}"
    if state_dtype(cd) == cd:
        return msg + "."
    # The inputs were checked first, so they were finite and fit cd: a value made inside overflowed.
    return (
        f"{msg}, from finite inputs under {cd.name} compute: a 16-bit value overflowed ({cd.name}'s largest "
        f"finite value is {float(jnp.finfo(cd).max):g}). The products' operands (xs, W, U, h) and the "
        f"outputs are {cd.name}; only the sums, the gates and c are float32. {_advice(cd)}."
    )


def checked_lstm(params, xs, carry=None, **kwargs):
    """``lstm`` with runtime checks; returns ``(error, (hs, final_carry))``.

    Works for every cell (``LSTMParams``, a variant's or a user cell's ``CellParams``). The inputs are
    checked as in ``check_inputs`` (with ``kwargs``'s ``lengths`` and ``compute_dtype``); then the
    outputs, so that a non-finite value created inside the recurrence (overflow) is reported with the
    first step where it appears; under 16-bit compute the message says that a 16-bit value overflowed
    and suggests a wider compute dtype. Works under ``jit``; call ``error.throw()`` to raise, or
    ``error.get()`` for the message.

    Example:
      >>> err, (hs, final) = jax.jit(jlstm.debug.checked_lstm)(params, xs)
      >>> err.throw()   # ValueError: jlstm: xs holds NaN or Inf; the first at index [1 4 0] ...
    """

    def run(params, xs, carry):
        hs, final = lstm(params, xs, carry, **kwargs)  # first: its trace-time checks name a bad argument
        check_inputs(params, xs, carry, kwargs.get("lengths"), compute_dtype=kwargs.get("compute_dtype"))
        bad_t = jnp.any(~jnp.isfinite(hs), axis=tuple(i for i in range(hs.ndim) if i != hs.ndim - 2))
        cd = _compute_dtype(params, xs, kwargs.get("compute_dtype"))
        checkify.check(~jnp.any(bad_t), _overflow_message(cd), jnp.argmax(bad_t))
        return hs, final

    return checkify.checkify(run, errors=checkify.user_checks)(params, xs, carry)
