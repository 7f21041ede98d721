"""``check_cell``: a user's cell against autodiff and finite differences, quantity by quantity.

Two levels. One step: the cell's hand-written ``backward`` against ``jax.vjp`` of its own ``forward``,
quantity by quantity (``dzx``, ``dzh``, the direct ``dh_prev``, ``dc_prev``, each parameter of
``theta``), so a wrong line shows as the first wrong quantity. Whole sequences: ``jlstm.lstm`` with the
cell's backward against ``backward="autodiff"`` over random shapes, lengths, carries, reverse and
cotangents on the final carry, and a finite-difference check of the manual gradient.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads

from jlstm.cells.spec import CellParams
from jlstm.core.interface import Cell

TOLERANCE = 1e-10


class Row(NamedTuple):
    quantity: str
    rel_err: float
    ok: bool


class CheckReport(NamedTuple):
    """``rows``: every quantity's relative error; ``first_wrong``: the first failing quantity or None."""

    rows: list[Row]
    first_wrong: str | None

    @property
    def ok(self) -> bool:
        return self.first_wrong is None

    def table(self) -> str:
        lines = ["| quantity | max rel. error | ok |", "| --- | --- | --- |"]
        lines += [f"| {r.quantity} | {r.rel_err:.2e} | {'yes' if r.ok else 'NO'} |" for r in self.rows]
        if self.first_wrong:
            lines.append(f"\nFirst wrong: {self.first_wrong}.")
        return "\n".join(lines)


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)) if a.size else 0.0


def _step_rows(cell: Cell, theta, H, R, key) -> list[Row]:
    """One step's backward against ``jax.vjp`` of its forward (the cell's own lines, one by one)."""
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
    pairs = [("step dzx", s.dzx, a_zx), ("step dzh", dzh, a_zh), ("step dh_prev (direct)", dh_prev, a_h),
             ("step dc_prev", s.dc_prev, a_c)]  # fmt: skip
    pairs += [(f"step d{name}", s.dtheta[name], a_th[name]) for name in theta]
    return [Row(n, e := _rel(m, a), e <= TOLERANCE) for n, m, a in pairs]


def _sequence_rows(params: CellParams, key, trials: int) -> list[Row]:
    from jlstm.functional import lstm

    worst: dict[str, float] = {}
    D, R, H = params.input_size, params.output_size, params.hidden_size
    for n in range(trials):
        k = jax.random.split(jax.random.fold_in(key, n), 6)
        batch = [(), (3,), (2, 2)][n % 3]
        T = 1 + n % 5
        xs = jax.random.normal(k[0], batch + (T, D), jnp.float64)
        carry = (
            jax.random.normal(k[1], batch + (R,), jnp.float64),
            jax.random.normal(k[2], batch + (H,), jnp.float64),
        )
        lengths = jax.random.randint(k[3], batch, 0, T + 1)
        w = jax.random.normal(k[4], batch + (T, R), jnp.float64)

        def loss(p, xs, carry, bw, reverse=bool(n % 2), lengths=lengths, w=w):
            hs, (h, c) = lstm(p, xs, carry, lengths=lengths, reverse=reverse, backward=bw)
            return jnp.sum(hs * w) + jnp.sum(jnp.sin(h)) + jnp.sum(c * c)

        g = {bw: jax.grad(loss, argnums=(0, 1, 2))(params, xs, carry, bw) for bw in ("manual", "autodiff")}
        (pm, xm, cm), (pa, xa, ca) = g["manual"], g["autodiff"]
        named = [("dW", pm.W, pa.W), ("dU", pm.U, pa.U), ("db", pm.b, pa.b), ("dxs", xm, xa)]
        named += [("dh0", cm[0], ca[0]), ("dc0", cm[1], ca[1])]
        named += [(f"d{k_}", pm.extra[k_], pa.extra[k_]) for k_ in params.extra]
        for name, a, b in named:
            worst[f"sequence {name}"] = max(worst.get(f"sequence {name}", 0.0), _rel(a, b))
    return [Row(n, e, e <= TOLERANCE) for n, e in worst.items()]


def _fd_row(params: CellParams, key) -> Row:
    from jlstm.functional import lstm

    xs = jax.random.normal(key, (2, 3, params.input_size), jnp.float64)
    f = lambda p, x: jnp.sum(jnp.sin(lstm(p, x)[0]))  # noqa: E731
    try:
        check_grads(f, (params, xs), order=1, modes=("rev",), atol=1e-6, rtol=1e-6)
        return Row("finite differences (manual)", 0.0, True)
    except AssertionError:
        return Row("finite differences (manual)", float("inf"), False)


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
      quantities come first: a wrong line of the backward shows there).

    Needs ``jax.config.update("jax_enable_x64", True)``.
    """
    if not jax.config.read("jax_enable_x64"):
        raise RuntimeError("check_cell: needs float64; call jax.config.update('jax_enable_x64', True) first.")
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    key = jax.random.key(seed)
    theta = dict(params.extra) | ({} if cell.bias_in_projection else {"b": params.b})
    rows = _step_rows(cell, theta, params.hidden_size, params.output_size, key)
    rows += _sequence_rows(params, key, trials)
    rows.append(_fd_row(params, key))
    first = next((r.quantity for r in rows if not r.ok), None)
    report = CheckReport(rows, first)
    if verbose:
        print(f"check_cell({cell.name!r}):\n{report.table()}")
    return report
