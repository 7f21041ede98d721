"""jlstm: a functional LSTM for JAX with a hand-written backward pass through time."""

from jlstm import interop
from jlstm.cells.dropout import RecurrentDropout
from jlstm.cells.spec import VARIANTS, CellParams, CellSpec
from jlstm.core.interface import Cell, CellGrads
from jlstm.core.params import GATE_ORDER, LSTMParams, LSTMState
from jlstm.functional import cell, init, lstm, lstm_trace
from jlstm.losses import l2_loss, softmax_cross_entropy
from jlstm.stacked import init_stacked, stacked_lstm
from jlstm.tbptt import tbptt_value_and_grad
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
    "cell",
    "init",
    "init_stacked",
    "interop",
    "l2_loss",
    "lstm",
    "lstm_trace",
    "make_train_step",
    "softmax_cross_entropy",
    "stacked_lstm",
    "tbptt_value_and_grad",
]
__version__ = "0.2.0"
