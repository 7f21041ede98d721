"""Testing a cell: ``check_cell`` (a cell's hand-written backward against autodiff and finite
differences, quantity by quantity) and ``init_params`` (its parameters). Above the functional API in
the house (it runs ``jlstm.lstm``), so nothing below imports it; re-exported as ``jlstm.check_cell``.

``check_cell``:

First the contract (``jlstm.core.contract``): the cell's outputs have the shapes, dtypes and structure
the machinery needs, else an error names the field. Then two levels. One step: the cell's hand-written
``backward`` against ``jax.vjp`` of its own ``forward``, quantity by quantity (``dzx``, ``dzh``, the
direct ``dh_prev``, ``dc_prev``, ``delta_state``, each parameter of ``theta``), so a wrong line shows as
the first wrong quantity. Whole sequences: ``jlstm.lstm`` with the cell's backward against
``backward="autodiff"`` over random shapes, lengths, carries, reverse and cotangents on the final carry,
and a finite-difference check of the manual gradient.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jex
from jax.test_util import check_grads

from jlstm.cells.check_state import state_step_pairs
from jlstm.cells.custom import init_params
from jlstm.cells.family import family_cell
from jlstm.cells.init import spec_name
from jlstm.cells.spec import CellParams, CellSpec
from jlstm.core.contract import check_cell_contract
from jlstm.core.interface import Cell
from jlstm.core.state import as_state_cell, widths
from jlstm.core.state_contract import check_state_contract
from jlstm.functional import lstm

__all__ = ["CheckReport", "Row", "check_cell", "init_params"]

TOLERANCE = 1e-10


class Row(NamedTuple):
    """One checked quantity; ``note`` says why a row failed when the error alone does not (the text of
    ``check_grads``'s assertion), or why it was not checked."""

    quantity: str
    rel_err: float
    ok: bool
    note: str = ""


class CheckReport(NamedTuple):
    """``rows``: every quantity's relative error; ``first_wrong``: the first failing quantity or None."""

    rows: list[Row]
    first_wrong: str | None

    @property
    def ok(self) -> bool:
        return self.first_wrong is None

    def table(self) -> str:
        lines = ["| quantity | max rel. error | ok | note |", "| --- | --- | --- | --- |"]
        for r in self.rows:
            note = " ".join(r.note.split()).replace("|", "\\|")  # one line: a markdown table cell
            lines.append(f"| {r.quantity} | {r.rel_err:.2e} | {'yes' if r.ok else 'NO'} | {note} |")
        if self.first_wrong:
            lines.append(f"\nFirst wrong: {self.first_wrong}.")
        return "\n".join(lines)


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)) if a.size else 0.0


def _state_gradient(f, args, cts):
    """The total gradient of the cell state c_t: the vjp of ``f`` (returning ``(h, c)``) w.r.t. a
    perturbation added to c where the forward computes it, so that it reaches h_t (through everything
    the forward computes from c_t) and the carried c_t alike, as ``delta_state`` is defined."""
    closed = jax.make_jaxpr(f)(*args)
    jaxpr, target = closed.jaxpr, closed.jaxpr.outvars[1]

    def run(eps):
        env: dict = {}

        def write(v, x):
            env[v] = x + eps if v is target else x

        def read(v):
            return v.val if isinstance(v, jex.Literal) else env[v]

        for v, x in zip([*jaxpr.constvars, *jaxpr.invars], [*closed.consts, *jax.tree.leaves(args)]):
            write(v, x)
        for eqn in jaxpr.eqns:
            bind = eqn.primitive.get_bind_params(eqn.params)
            # Older jax returns (subfuns, params), newer the params alone.
            subfuns, bind = bind if isinstance(bind, tuple) else ((), bind)
            out = eqn.primitive.bind(*subfuns, *map(read, eqn.invars), **bind)
            for v, x in zip(eqn.outvars, out if eqn.primitive.multiple_results else [out]):
                write(v, x)
        h, c = read(jaxpr.outvars[0]), read(target)
        return h, (c + eps if isinstance(target, jex.Literal) else c)

    _, vjp = jax.vjp(run, jnp.zeros(target.aval.shape, target.aval.dtype))
    return vjp(cts)[0]


def _row(name: str, mine, ref, G: int) -> Row:
    """A step row; a wrong ``dzx`` or ``dzh`` names its wrong gate blocks (``H`` columns each)."""
    e = _rel(mine, ref)
    if e <= TOLERANCE or name not in ("step dzx", "step dzh"):
        return Row(name, e, e <= TOLERANCE)
    H = np.shape(ref)[-1] // G
    scale = max(float(np.max(np.abs(np.asarray(ref)))), 1e-300)
    per = [
        float(
            np.max(
                np.abs(np.asarray(mine)[..., k * H : (k + 1) * H] - np.asarray(ref)[..., k * H : (k + 1) * H])
            )
        )
        / scale
        for k in range(G)
    ]
    wrong = [f"{k} (columns {k * H}:{(k + 1) * H})" for k, x in enumerate(per) if x > TOLERANCE]
    return Row(name, e, False, f"wrong in gate block {', '.join(wrong)} of {G}")


def _step_rows(cell: Cell, theta, H, R, key) -> list[Row]:
    """One step's backward against ``jax.vjp`` of its forward (the cell's own lines, one by one)."""
    if cell.state is not None:  # a cell that declares its states
        return [_row(n, m, a, cell.num_gates) for n, m, a in state_step_pairs(cell, theta, H, R, key)]
    G, B = cell.num_gates, 3
    k = jax.random.split(key, 8)
    normal = lambda kk, shape: jax.random.normal(kk, shape, jnp.float64)  # noqa: E731
    zx, zh = normal(k[0], (B, G * H)), normal(k[1], (B, G * H))
    h_prev, c_prev = normal(k[2], (B, R)), normal(k[3], (B, H))
    g_h, dh, dc = normal(k[4], (B, R)), normal(k[5], (B, R)), normal(k[6], (B, H))

    def f(zx, zh, h_prev, c_prev, theta):
        h, c, _ = cell.forward(theta, zx, zh, h_prev, c_prev, None)
        return h, c

    (h, c), vjp = jax.vjp(f, zx, zh, h_prev, c_prev, theta)
    a_zx, a_zh, a_h, a_c, a_th = vjp((g_h + dh, dc))
    _, _, res = cell.forward(theta, zx, zh, h_prev, c_prev, None)
    s = cell.backward(theta, res, c_prev, c, g_h, dh, dc, None)
    dzh = s.dzx if s.dzh is None else s.dzh
    dh_prev = jnp.zeros_like(h_prev) if s.dh_prev is None else s.dh_prev
    pairs = [("step dzx", s.dzx, a_zx), ("step dzh", dzh, a_zh), ("step dh_prev (direct)", dh_prev, a_h)]
    pairs += [("step dc_prev", s.dc_prev, a_c)]
    rows = [_row(n, m, a, G) for n, m, a in pairs]
    try:
        a_ds = _state_gradient(f, (zx, zh, h_prev, c_prev, theta), (g_h + dh, dc))
        rows.append(Row("step delta_state", e := _rel(s.delta_state, a_ds), e <= TOLERANCE))
    except Exception as err:  # an exotic primitive the interpreter cannot re-run: said, not hidden
        rows.append(Row("step delta_state", float("nan"), True, f"not checked: {type(err).__name__}: {err}"))
    pairs = [(f"step d{name}", s.dtheta[name], a_th[name]) for name in theta]
    return rows + [Row(n, e := _rel(m, a), e <= TOLERANCE) for n, m, a in pairs]


def _sequence_rows(params: CellParams, key, trials: int) -> list[Row]:
    worst: dict[str, float] = {}
    D, R, H = params.input_size, params.output_size, params.hidden_size
    cell = (
        as_state_cell(params.spec)
        if isinstance(params.spec, Cell)
        else as_state_cell(family_cell(params.spec))
    )
    names, sizes = [st.name for st in cell.state], widths(cell, H, R)  # type: ignore[union-attr]
    for n in range(trials):
        k = jax.random.split(jax.random.fold_in(key, n), 6)
        batch = [(), (3,), (2, 2)][n % 3]
        T = 1 + n % 5
        xs = jax.random.normal(k[0], batch + (T, D), jnp.float64)
        ks = jax.random.split(k[1], len(names))
        carry = tuple(jax.random.normal(kk, batch + (m,), jnp.float64) for kk, m in zip(ks, sizes))
        lengths = jax.random.randint(k[3], batch, 0, T + 1)
        w = jax.random.normal(k[4], batch + (T, R), jnp.float64)

        def loss(p, xs, carry, bw, reverse=bool(n % 2), lengths=lengths, w=w):
            hs, final = lstm(p, xs, carry, lengths=lengths, reverse=reverse, backward=bw)
            # A cotangent on every final state, each of another kind so that none cancels.
            return jnp.sum(hs * w) + sum(jnp.sum(jnp.sin((j + 1.0) * v)) for j, v in enumerate(final))

        g = {bw: jax.grad(loss, argnums=(0, 1, 2))(params, xs, carry, bw) for bw in ("manual", "autodiff")}
        (pm, xm, cm), (pa, xa, ca) = g["manual"], g["autodiff"]
        named = [("dW", pm.W, pa.W), ("dU", pm.U, pa.U), ("db", pm.b, pa.b), ("dxs", xm, xa)]
        named += [(f"d{name}0", a, b) for name, a, b in zip(names, cm, ca)]
        named += [(f"d{k_}", pm.extra[k_], pa.extra[k_]) for k_ in params.extra]
        for name, a, b in named:
            worst[f"sequence {name}"] = max(worst.get(f"sequence {name}", 0.0), _rel(a, b))
    return [Row(n, e, e <= TOLERANCE) for n, e in worst.items()]


def _fd_row(params: CellParams, key) -> Row:
    xs = jax.random.normal(key, (2, 3, params.input_size), jnp.float64)
    f = lambda p, x: jnp.sum(jnp.sin(lstm(p, x)[0]))  # noqa: E731
    name = "finite differences (manual)"
    try:
        check_grads(f, (params, xs), order=1, modes=("rev",), atol=1e-6, rtol=1e-6)
        return Row(name, 0.0, True)
    except AssertionError as err:
        # The assertion's text is the evidence (which projection, by how much): kept, not only inf.
        found = re.search(r"Max relative difference[^:]*:\s*([0-9.eE+-]+|inf|nan)", str(err))
        rel = float(found.group(1)) if found else float("inf")
        return Row(name, rel, False, f"check_grads raised AssertionError: {err}")


def _built_for(spec) -> str:
    return f"the built-in cell {spec}" if isinstance(spec, CellSpec) else spec_name(spec)


def _check_pairing(cell: Cell, params: CellParams) -> None:
    """``params`` must be built for ``cell``: the sequence rows run ``params.spec``'s cell."""
    if not isinstance(cell, Cell):
        raise TypeError(f"check_cell: cell must be a jlstm.Cell; got {type(cell).__name__}.")
    if not isinstance(params, CellParams):
        raise TypeError(
            f"check_cell: params must be a jlstm.CellParams; got {type(params).__name__}. Build them with "
            "jlstm.cells.custom.init_params(key, cell, input_size, hidden_size)."
        )
    spec, G = params.spec, cell.num_gates
    own = family_cell(spec, None) if isinstance(spec, CellSpec) else spec
    if own != cell:
        G_own = getattr(own, "num_gates", "?")
        raise ValueError(
            f"check_cell: params were built for {_built_for(spec)} (params.spec, {G_own} gates), not for the "
            f"{cell.name!r} cell given ({G} gates); build them with "
            "jlstm.cells.custom.init_params(key, cell, input_size, hidden_size)."
        )
    W = params.W
    if W.ndim != 2 or W.shape[1] % G:
        raise ValueError(
            f"check_cell: params.W must be [D, GH] with G = cell.num_gates = {G} (the {cell.name!r} cell); "
            f"got shape {tuple(W.shape)}, whose columns are not a multiple of {G}."
        )


def check_cell(
    cell: Cell, params: CellParams, *, trials: int = 6, seed: int = 0, verbose: bool = True
) -> CheckReport:
    """Check ``cell``'s hand-written backward in float64; print and return a per-quantity table.

    Args:
      cell: a ``jlstm.Cell``.
      params: its parameters, ``jlstm.CellParams(W [D, GH], U [R, GH], b [GH], extra=theta, spec=cell)``
        (e.g. from ``jlstm.cells.custom.init_params``); cast to float64 here.
      trials: random sequence problems (batch shapes (), (3,), (2, 2); T = 1..5; random lengths,
        carries, reverse, cotangents on ``hs`` and on the final carry).

    Returns:
      A ``CheckReport``; ``report.first_wrong`` names the first quantity off by more than 1e-10 (the step
      quantities come first: a wrong line of the backward shows there). A row's ``note`` keeps the
      finite-difference check's own message when it fails.

    Raises:
      TypeError, ValueError: ``params`` built for another cell (``params.spec``) or with a ``W`` whose
      columns are not a multiple of ``cell.num_gates``; a cell whose outputs break the interface (a
      shape, a dtype, a missing ``dtheta`` entry, a ``dtheta`` not summed over the batch), named by
      ``jlstm.core.contract.check_cell_contract`` before anything runs.

    Needs ``jax.config.update("jax_enable_x64", True)``.
    """
    if not jax.config.read("jax_enable_x64"):
        raise RuntimeError("check_cell: needs float64; call jax.config.update('jax_enable_x64', True) first.")
    _check_pairing(cell, params)
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    key = jax.random.key(seed)
    theta = dict(params.extra) | ({} if cell.bias_in_projection else {"b": params.b})
    H, R = params.hidden_size, params.output_size
    check = check_cell_contract if cell.state is None else check_state_contract
    check(cell, theta, B=3, H=H, R=R, dtype=jnp.float64, where="check_cell")
    rows = _step_rows(cell, theta, H, R, key)
    rows += _sequence_rows(params, key, trials)
    rows.append(_fd_row(params, key))
    first = next((r.quantity for r in rows if not r.ok), None)
    report = CheckReport(rows, first)
    if verbose:
        print(f"check_cell({cell.name!r}):\n{report.table()}")
    return report
