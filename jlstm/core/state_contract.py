"""``check_state_contract``: a cell that declares its states (``Cell.state``) against the interface, on
abstract inputs, at trace time, so that a wrong width or a missing gradient is named instead of failing
inside ``lax.scan``. The ``(h, c)`` interface's counterpart is ``jlstm.core.contract``."""

from __future__ import annotations

import functools

import jax

from jlstm.core.contract import _call, _check_dtheta, _Contract
from jlstm.core.interface import Cell, StateGrads
from jlstm.core.state import dtypes, widths


def _check_forward(k: _Contract, theta, prev):
    zx = jax.ShapeDtypeStruct((k.B, k.GH), k.sd)
    out = _call(k, "forward", k.cell.forward, theta, zx, zx, prev, None)
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], tuple)):
        k.fail(
            "forward",
            "its result",
            "a pair (new states as a tuple, res)",
            f"a {type(out).__name__}",
            "",
            TypeError,
        )
    new, res = out
    names = [st.name for st in k.cell.state]  # type: ignore[union-attr]
    if len(new) != len(names):
        k.fail("forward", "new", f"a tuple of {len(names)} states ({', '.join(names)})", f"{len(new)} states")
    for j, (name, v, p) in enumerate(zip(names, new, prev)):
        k.array("forward", f"new[{j}] ({name})", v, p.shape)
    return new, res


def _check_backward(k: _Contract, theta, prev, new, res):
    g_y = jax.ShapeDtypeStruct((k.B, k.R), k.sd)
    d_new = tuple(jax.ShapeDtypeStruct(p.shape, k.sd) for p in prev)
    s = _call(k, "backward", k.cell.backward, theta, res, prev, new, g_y, d_new, None)
    if not isinstance(s, StateGrads):
        k.fail("backward", "its result", "a jlstm.StateGrads", f"a {type(s).__name__}", "", TypeError)
    k.array("backward", "dzx", s.dzx, (k.B, k.GH), hint=" ([B, GH]: the gradient of zx)")
    k.array("backward", "dzh", s.dzh, (k.B, k.GH), optional=True)
    names = [st.name for st in k.cell.state]  # type: ignore[union-attr]
    if not isinstance(s.d_prev, tuple) or len(s.d_prev) != len(names):
        got = f"a {type(s.d_prev).__name__}" + (
            f" of length {len(s.d_prev)}" if isinstance(s.d_prev, tuple) else ""
        )
        k.fail(
            "backward",
            "d_prev",
            f"a tuple of {len(names)} (one per state, None for none)",
            got,
            "",
            TypeError,
        )
    for j, (name, d, p) in enumerate(zip(names, s.d_prev, prev)):
        k.array("backward", f"d_prev[{j}] ({name})", d, p.shape, dtype=k.sd, optional=True)
    _check_dtheta(k, s.dtheta, theta)


@functools.lru_cache(maxsize=256)
def _check_cached(cell, theta_def, theta_avals, B, H, R, cd, where) -> None:
    theta = jax.tree.unflatten(theta_def, [jax.ShapeDtypeStruct(s, d) for s, d in theta_avals])
    k = _Contract(cell, B, H, R, cd, where)
    prev = tuple(jax.ShapeDtypeStruct((B, n), t) for n, t in zip(widths(cell, H, R), dtypes(cell, cd)))
    new, res = _check_forward(k, theta, prev)
    _check_backward(k, theta, prev, new, res)


def check_state_contract(cell: Cell, theta, *, B: int, H: int, R: int, dtype, where: str) -> None:
    """Check a state ``cell``'s ``forward`` (a tuple of new states, each ``[B, width]``, and ``res``)
    and ``backward`` (a ``StateGrads``: ``dzx [B, GH]``, ``dzh`` None or ``[B, GH]``, ``d_prev`` one
    entry per state, None or ``[B, width]``, ``dtheta`` like ``theta``) on abstract inputs; raise a
    ``ValueError``/``TypeError`` starting with ``where`` that names the cell, the function and the field."""
    leaves, theta_def = jax.tree.flatten(theta)
    avals = tuple((tuple(jax.numpy.shape(a)), jax.numpy.dtype(jax.numpy.result_type(a))) for a in leaves)
    args = (cell, theta_def, avals, int(B), int(H), int(R), jax.numpy.dtype(dtype), where)
    try:
        hash(args)
    except TypeError:
        return _check_cached.__wrapped__(*args)
    return _check_cached(*args)
