"""A cell's recurrent state: what it declares, and the LSTM family's ``(h, c)`` cells in those terms.

The machinery carries a tuple of ``[B, width]`` arrays, in the order a ``Cell`` declares in
``Cell.state``; one of them is multiplied by ``U`` (``Cell.recurrent``) and one is the output ``y_t``
(``Cell.output``). A cell written against the earlier ``(h, c)`` interface (``Cell.state is None``: every
cell of the LSTM family, and users' cells like the docs' JANET) runs through ``as_state_cell``, which
declares ``(h [R], c [H])`` and calls its functions unchanged, so existing code keeps its meaning.
"""

from __future__ import annotations

import collections
import functools

import jax.numpy as jnp

from jlstm.core.interface import Cell, State, StateGrads
from jlstm.core.params import LSTMState
from jlstm.core.precision import state_dtype

#: The ``(h, c)`` state of the LSTM family: ``h`` (the output width R) is the output and the recurrent
#: input, ``c`` (H) the cell state.
LSTM_STATE = (State("h", "R"), State("c", "H"))


def _hc_forward(cell: Cell, theta, zx, zh, prev, noise):
    h, c, res = cell.forward(theta, zx, zh, prev[0], prev[1], noise)
    return (h, c), res


def _hc_backward(cell: Cell, theta, res, prev, new, g_y, d_new, noise):
    s = cell.backward(theta, res, prev[1], new[1], g_y, d_new[0], d_new[1], noise)
    return StateGrads(s.dzx, s.dzh, (s.dh_prev, s.dc_prev), s.dtheta, s.delta_state)


@functools.cache
def as_state_cell(cell: Cell) -> Cell:
    """``cell`` with its state declared: as it is, or an ``(h, c)`` cell adapted (cached, so that the
    adapted cell is one static argument however often it is asked for)."""
    if cell.state is not None:
        return cell
    return cell._replace(
        forward=functools.partial(_hc_forward, cell),
        backward=functools.partial(_hc_backward, cell),
        state=LSTM_STATE,
        recurrent=0,
        output=0,
    )


@functools.cache
def state_type(cell: Cell) -> type:
    """The NamedTuple a sequence function returns the final state as: ``LSTMState`` for ``(h, c)``."""
    names = tuple(s.name for s in as_state_cell(cell).state)  # type: ignore[union-attr]
    if names == LSTMState._fields:
        return LSTMState
    title = "".join(part.capitalize() for part in cell.name.replace("-", "_").split("_") if part.isalnum())
    return collections.namedtuple(f"{title or 'Cell'}State", names)


def widths(cell: Cell, H: int, R: int) -> tuple[int, ...]:
    """Each state's width for hidden size H and output width R."""
    return tuple(s.multiple * (R if s.size == "R" else H) for s in as_state_cell(cell).state)  # type: ignore[union-attr]


def dtypes(cell: Cell, compute) -> tuple:
    """Each state's dtype: the compute dtype for the recurrent input and the output (they are product
    operands and what the caller gets), the state dtype for the others (sums kept over many steps)."""
    c = as_state_cell(cell)
    cd = jnp.dtype(compute)
    return tuple(cd if k in (c.recurrent, c.output) else state_dtype(cd) for k in range(len(c.state)))  # type: ignore[arg-type]
