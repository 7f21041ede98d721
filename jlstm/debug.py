"""Opt-in runtime checks (``jax.experimental.checkify``): NaN/Inf in inputs, lengths out of range.

Shape and dtype errors are raised at trace time by every public function. Value errors (a NaN in the
data, a length larger than T inside ``jit``) cannot be, since the values are not known then; this
module checks them at run time when asked to, and names where the bad value entered.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental import checkify

from jlstm.functional import lstm


def _first_bad(name: str, a: jax.Array) -> None:
    bad = ~jnp.isfinite(a)
    flat = jnp.argmax(bad.reshape(-1))
    # The error message carries the index of the first non-finite entry, unravelled.
    idx = jnp.stack(jnp.unravel_index(flat, a.shape)) if a.ndim else jnp.zeros((0,), jnp.int32)
    msg = f"jlstm: {name} holds NaN or Inf; the first at index {{}} of shape {a.shape}."
    checkify.check(~jnp.any(bad), msg, idx)


def check_inputs(params, xs, carry=None, lengths=None) -> None:
    """Runtime checks of ``lstm``'s inputs, for use inside ``checkify.checkify``.

    Checks that ``params.W``, ``params.U``, ``params.b``, ``xs`` and the carry are finite and that
    ``lengths`` lie in ``[0, T]``.
    """
    for name, a in zip(("params.W", "params.U", "params.b"), params):
        _first_bad(name, a)
    _first_bad("xs", xs)
    if carry is not None:
        _first_bad("carry.h", jnp.asarray(carry[0]))
        _first_bad("carry.c", jnp.asarray(carry[1]))
    if lengths is not None:
        T = xs.shape[-2]
        checkify.check(
            jnp.all((lengths >= 0) & (lengths <= T)),
            f"jlstm: lengths must lie in [0, T] = [0, {T}]; got min {{}} and max {{}}.",
            jnp.min(lengths),
            jnp.max(lengths),
        )


def checked_lstm(params, xs, carry=None, **kwargs):
    """``lstm`` with runtime checks; returns ``(error, (hs, final_carry))``.

    The inputs are checked as in ``check_inputs``; then the outputs, so that a non-finite value created
    inside the recurrence (overflow) is reported with the first step where it appears. Works under
    ``jit``; call ``error.throw()`` to raise, or ``error.get()`` for the message.

    Example:
      >>> err, (hs, final) = jax.jit(jlstm.debug.checked_lstm)(params, xs)
      >>> err.throw()   # ValueError: jlstm: xs holds NaN or Inf; the first at index [1 4 0] ...
    """

    def run(params, xs, carry):
        check_inputs(params, xs, carry, kwargs.get("lengths"))
        hs, final = lstm(params, xs, carry, **kwargs)
        bad_t = jnp.any(~jnp.isfinite(hs), axis=tuple(i for i in range(hs.ndim) if i != hs.ndim - 2))
        checkify.check(
            ~jnp.any(bad_t),
            "jlstm: the outputs became non-finite inside the recurrence, first at step t = {}.",
            jnp.argmax(bad_t),
        )
        return hs, final

    return checkify.checkify(run, errors=checkify.user_checks)(params, xs, carry)
