"""jlstm: a functional LSTM for JAX with a hand-written backward pass through time."""

from jlstm import interop
from jlstm.cells.dropout import RecurrentDropout
from jlstm.cells.spec import VARIANTS, CellParams, CellSpec
from jlstm.core.interface import Cell, CellGrads, State, StateGrads
from jlstm.core.params import GATE_ORDER, LSTMParams, LSTMState
from jlstm.functional import cell, init, lstm, lstm_trace, rnn
from jlstm.losses import l2_loss, softmax_cross_entropy
from jlstm.stacked import init_stacked, stacked_lstm
from jlstm.tbptt import tbptt_value_and_grad
from jlstm.testing import check_cell
from jlstm.train import make_train_step

__all__ = [
    "GATE_ORDER",
    "VARIANTS",
    "Cell",
    "CellGrads",
    "CellParams",
    "CellSpec",
    "LSTMParams",
    "LSTMState",
    "RecurrentDropout",
    "State",
    "StateGrads",
    "cell",
    "check_cell",
    "init",
    "init_stacked",
    "interop",
    "l2_loss",
    "lstm",
    "lstm_trace",
    "make_train_step",
    "rnn",
    "softmax_cross_entropy",
    "stacked_lstm",
    "tbptt_value_and_grad",
]
__version__ = "0.2.0"
