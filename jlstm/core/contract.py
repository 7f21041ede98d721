"""``check_cell_contract``: a user's ``Cell`` against the interface, on abstract inputs, at trace time.

A malformed cell (a wrong width, a missing gradient, a gradient not summed over the batch) would
otherwise fail deep inside ``lax.scan`` or ``dot_general`` with a message that names neither the cell
nor the field. Here the cell's ``forward`` and ``backward`` run under ``jax.eval_shape`` on inputs of the
shapes and dtypes the machinery gives them (``jlstm.core.interface``), and every output is compared with
what the machinery needs. Nothing is computed, so it costs one trace of each function.
"""

from __future__ import annotations

import functools
from typing import NoReturn

import jax
import jax.numpy as jnp

from jlstm.core.interface import Cell, CellGrads
from jlstm.core.precision import state_dtype


def _describe(a) -> str:
    if a is None:
        return "None"
    if not hasattr(a, "shape"):
        return f"a {type(a).__name__}"
    return f"shape {tuple(a.shape)} dtype {jnp.dtype(a.dtype).name}"


class _Contract:
    """The expected shapes of one call and the prefix of every message."""

    def __init__(self, cell: Cell, B: int, H: int, R: int, cd, where: str):
        self.cell, self.B, self.H, self.R, self.GH = cell, B, H, R, cell.num_gates * H
        self.cd, self.sd = jnp.dtype(cd), jnp.dtype(state_dtype(cd))
        self.where = where
        self.sizes = (
            f"B = {B}, H = {H} (params.W's {self.GH} columns / num_gates {cell.num_gates}), "
            f"R = {R} (params.U's rows)"
        )

    def fail(self, fn: str, field: str, want: str, got: str, hint: str = "", kind=ValueError) -> NoReturn:
        raise kind(
            f"{self.where}: the {self.cell.name!r} cell's {fn} returned {field} of {got}; expected {want}"
            f"{hint}. ({self.sizes}; see jlstm.core.interface.)"
        )

    def array(self, fn, field, a, shape, *, dtype=None, optional=False, hint=""):
        """``a`` must be a floating array of ``shape`` (and of ``dtype`` or one that promotes to it)."""
        if a is None and optional:
            return
        want = f"shape {shape}" + ("" if dtype is None else f" dtype {dtype.name}") + (" or None" * optional)
        if not hasattr(a, "shape") or tuple(a.shape) != shape or not jnp.issubdtype(a.dtype, jnp.floating):
            self.fail(fn, field, want, _describe(a), hint)
        # A carry of the reverse scan: a wider dtype would change the carry's type from step to step.
        if dtype is not None and jnp.promote_types(a.dtype, dtype) != dtype:
            self.fail(fn, field, want, _describe(a), hint, kind=TypeError)


def _call(k: _Contract, fn: str, f, *args):
    try:
        return jax.eval_shape(f, *args)
    except Exception as e:  # the cell's own code: re-raised with the cell's name in front
        kind = TypeError if isinstance(e, TypeError) else ValueError
        raise kind(
            f"{k.where}: the {k.cell.name!r} cell's {fn} raised {type(e).__name__} on inputs of the shapes "
            f"the interface gives it ({k.sizes}): {e}"
        ) from e


def _check_forward(k: _Contract, theta):
    B, H, R, GH, sd = k.B, k.H, k.R, k.GH, k.sd
    zx, h_prev, c_prev = (
        jax.ShapeDtypeStruct(shape, dt) for shape, dt in (((B, GH), sd), ((B, R), k.cd), ((B, H), sd))
    )
    out = _call(k, "forward", k.cell.forward, theta, zx, zx, h_prev, c_prev, None)
    if not (isinstance(out, tuple) and len(out) == 3):
        got = f"a {type(out).__name__}" + (f" of length {len(out)}" if isinstance(out, tuple) else "")
        k.fail("forward", "its result", "a triple (h, c, res)", got, kind=TypeError)
    h, c, res = out
    hint = " ([B, R]: the output and the carried h)"
    if getattr(h, "shape", None) == (B, H) and R != H:
        hint += (
            f"; h has H = {H} columns, as if params were built for another num_gates than {k.cell.num_gates}"
        )
    k.array("forward", "h", h, (B, R), hint=hint)
    # c is the scan's carry: exactly the state dtype, or the carry would change type between steps.
    if getattr(c, "dtype", None) is not None and jnp.dtype(c.dtype) != sd:
        k.fail(
            "forward", "c", f"shape {(B, H)} dtype {sd.name}", _describe(c), " (the state dtype)", TypeError
        )
    k.array("forward", "c", c, (B, H), hint=" ([B, H]: the carried cell state)")
    return c, res


def _check_dtheta(k: _Contract, dtheta, theta):
    fn = "backward"
    if isinstance(theta, dict) and isinstance(dtheta, dict):
        missing, unknown = sorted(set(theta) - set(dtheta)), sorted(set(dtheta) - set(theta))
        if missing or unknown:
            got = f"keys {sorted(dtheta)}" + (f" (missing {missing})" if missing else "")
            got += f" (not in theta: {unknown})" if unknown else ""
            k.fail(fn, "dtheta", f"one gradient per entry of theta, keys {sorted(theta)}", got)
    elif jax.tree.structure(dtheta) != jax.tree.structure(theta):  # type: ignore[operator]  # stub lacks __ne__
        want = f"the structure of theta, {jax.tree.structure(theta)}"
        k.fail(fn, "dtheta", want, f"{jax.tree.structure(dtheta)}", kind=TypeError)
    for (path, g), p in zip(jax.tree_util.tree_leaves_with_path(dtheta), jax.tree.leaves(theta)):
        shape = tuple(p.shape)
        hint = ""
        if getattr(g, "shape", None) == (k.B,) + shape:
            hint = " like theta (it is not summed over the batch: sum it over axis 0)"
        k.array(fn, f"dtheta{jax.tree_util.keystr(path)}", g, shape, dtype=k.sd, hint=hint)


def _check_backward(k: _Contract, theta, c, res):
    B, H, R, GH, sd = k.B, k.H, k.R, k.GH, k.sd
    bh, br = jax.ShapeDtypeStruct((B, H), sd), jax.ShapeDtypeStruct((B, R), sd)
    s = _call(k, "backward", k.cell.backward, theta, res, bh, c, br, br, bh, None)
    if not isinstance(s, CellGrads):
        k.fail("backward", "its result", "a jlstm.CellGrads", f"a {type(s).__name__}", kind=TypeError)
    k.array("backward", "dzx", s.dzx, (B, GH), hint=" ([B, GH]: the gradient of zx)")
    k.array("backward", "dzh", s.dzh, (B, GH), optional=True)
    k.array("backward", "dh_prev", s.dh_prev, (B, R), dtype=sd, optional=True)
    k.array("backward", "dc_prev", s.dc_prev, (B, H), dtype=sd)
    _check_dtheta(k, s.dtheta, theta)
    k.array("backward", "delta_state", s.delta_state, (B, H))


@functools.lru_cache(maxsize=256)
def _check_cached(cell, theta_def, theta_avals, B, H, R, cd, where) -> None:
    theta = jax.tree.unflatten(theta_def, [jax.ShapeDtypeStruct(s, d) for s, d in theta_avals])
    k = _Contract(cell, B, H, R, cd, where)
    c, res = _check_forward(k, theta)
    _check_backward(k, theta, c, res)


def check_cell_contract(cell: Cell, theta, *, B: int, H: int, R: int, dtype, where: str) -> None:
    """Check a user's ``cell`` against the interface on abstract inputs; raise naming the field.

    ``forward`` and ``backward`` run under ``jax.eval_shape`` with the shapes and dtypes the machinery
    gives them: ``zx, zh [B, GH]``, ``c_prev [B, H]`` and every gradient in the state dtype,
    ``h_prev [B, R]`` in the compute dtype ``dtype``, ``theta`` as given, ``noise=None``. Their outputs
    must be ``h [B, R]``, ``c [B, H]`` in the state dtype, and a ``CellGrads`` with ``dzx [B, GH]``,
    ``dzh`` and ``dh_prev`` None or ``[B, GH]``, ``[B, R]``, ``dc_prev [B, H]``, ``dtheta`` shaped like
    ``theta`` (summed over the batch) and ``delta_state [B, H]``.

    Raises:
      ValueError or TypeError starting with ``where``, naming ``cell.name``, the function
      (forward or backward), the field, what was expected and what came; an exception raised by the
      cell's own code is re-raised with the cell's name. A check passed once is cached per cell, shapes
      and dtypes, so calling it at every trace is cheap.
    """
    leaves, theta_def = jax.tree.flatten(theta)
    avals = tuple((tuple(jnp.shape(a)), jnp.dtype(jnp.result_type(a))) for a in leaves)
    args = (cell, theta_def, avals, int(B), int(H), int(R), jnp.dtype(dtype), where)
    try:
        hash(args)
    except TypeError:  # an unhashable cell (a field that is a list, say): checked every time
        return _check_cached.__wrapped__(*args)
    return _check_cached(*args)
