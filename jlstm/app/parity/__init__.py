"""Parity with the LSTMs of other libraries: same weights (converted by ``jlstm.interop``), same inputs,
then the largest absolute difference of the outputs (sequence and final state) and of the gradients
(weights, inputs and initial state) between each library's own forward/backward and jlstm's.

One module per library (``lib_torch``, ``lib_flax``, ``lib_keras``, ``lib_haiku``, ``lib_equinox``), each
registering its comparison in ``LIBRARIES`` with ``@library(name)``; ``common`` holds what they share
(the row, the loss, the inputs, jlstm's side); ``table`` runs them and formats the table. Used by
``jlstm parity`` and ``experiments/parity.py``; every library import happens inside its comparison.
"""

# The imports register the libraries, in the order of the table.
from jlstm.app.parity import lib_torch, lib_flax, lib_keras, lib_haiku, lib_equinox  # noqa: F401, I001
from jlstm.app.parity.common import LIBRARIES, ParityRow, Sizes, library
from jlstm.app.parity.table import format_table, parity_rows

__all__ = ["LIBRARIES", "ParityRow", "Sizes", "format_table", "library", "parity_rows"]
