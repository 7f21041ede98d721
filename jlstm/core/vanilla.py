"""The source's LSTM as a ``Cell``: its forward equations (``jlstm.core.cell``) and its backward
equations (``jlstm.core.backward``), nothing else. Every call of ``jlstm.lstm`` on ``LSTMParams`` runs it.
"""

from __future__ import annotations

from jlstm.core import backward as _backward
from jlstm.core.cell import activate, step
from jlstm.core.interface import Cell, CellGrads


def _forward(theta, zx, zh, h_prev, c_prev, noise):
    gates = activate(zx + zh)  # a, i, f, o of step t
    h, c = step(gates, c_prev)  # state_t = a_t * i_t + f_t * state_{t-1};  out_t = tanh(state_t) * o_t
    return h, c, gates  # saved: the gates; state_{t-1} and state_t come from the machinery


def _backward_fn(theta, gates, c_prev, c, g_h, dh, dc, noise):
    # Looked up at trace time, so that a test can substitute a wrong step and see the checks fail.
    s = _backward.backward_step(gates, c, c_prev, g_h, dh, dc)
    return CellGrads(
        dzx=s.delta_gates, dzh=None, dh_prev=None, dc_prev=s.dc_prev, dtheta={}, delta_state=s.delta_state
    )


VANILLA = Cell(name="lstm", num_gates=4, forward=_forward, backward=_backward_fn)
