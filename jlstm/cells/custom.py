"""Parameters for a user's own ``Cell`` (see ``jlstm.core.interface`` and docs/variants.md, "Your own
cell"): ``W``, ``U``, ``b`` shaped by the cell's gate count, and the cell's own ``theta``."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jlstm.cells.spec import CellParams
from jlstm.core.interface import Cell


def init_params(
    key,
    cell: Cell,
    input_size: int,
    hidden_size: int,
    *,
    output_size: int | None = None,
    theta: dict | None = None,
    heads: int | None = None,
    dtype=jnp.float32,
) -> CellParams:
    """``CellParams(W [D, GH], U [R, GH], b [GH], extra=theta, spec=cell)`` with ``W``, ``U`` uniform in
    ``+-1/sqrt(H)`` and ``b`` zero; ``R = output_size or H``. ``jlstm.lstm`` then runs ``cell`` with its
    own backward, and ``jlstm.testing.check_cell(cell, params)`` checks it. ``heads``: a block-diagonal
    ``U [heads, R / heads, G H / heads]`` (each head's columns gate-major), as multi-head cells use."""
    if not isinstance(cell, Cell):
        raise TypeError(f"init_params: cell must be a jlstm.Cell; got {type(cell).__name__}.")
    G, H = cell.num_gates, hidden_size
    R = output_size or H
    bound = 1.0 / float(H) ** 0.5
    k_w, k_u = jax.random.split(key)
    W = jax.random.uniform(k_w, (input_size, G * H), dtype, -bound, bound)
    shape = (R, G * H) if heads is None else (heads, R // heads, G * H // heads)
    if heads is not None and (R % heads or H % heads):
        raise ValueError(f"init_params: heads must divide H = {H} and R = {R}; got heads={heads}.")
    U = jax.random.uniform(k_u, shape, dtype, -bound, bound)
    return CellParams(W, U, jnp.zeros((G * H,), dtype), dict(theta or {}), cell)
