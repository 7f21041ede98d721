"""Weights to and from the LSTMs people already use: PyTorch, Flax, Keras 3, Haiku, Equinox, and the
two tutorial notations (deeplearning.ai's and Seo's).

jlstm's layout is ``W [D, 4H]``, ``U [H, 4H]``, ``b [4H]`` with ``z = x @ W + h @ U + b`` and gate blocks
in the order **a, i, f, o** (``a`` is the tanh gate that PyTorch, Flax and Haiku call ``g`` and Keras and
deeplearning.ai call ``c``). Every library computes the same cell::

    c_t = f * c_{t-1} + i * a      h_t = o * tanh(c_t)

so a conversion only permutes gate blocks, transposes matrices and sums or splits biases; it is exact
(no arithmetic) except where a library adds a constant inside its forward (Haiku's forget bias +1).

| library | gate order | layout | bias | carry |
| --- | --- | --- | --- | --- |
| ``torch.nn.LSTM`` | i, f, g, o | ``weight_ih [4H, D]``, ``weight_hh [4H, H]`` | ``b_ih + b_hh`` | (h, c) |
| ``flax`` ``LSTMCell`` | i, f, g, o | one ``[D, H]`` / ``[H, H]`` kernel per gate | hidden side | (c, h) |
| ``nnx.OptimizedLSTMCell`` | i, f, g, o | ``dense_i [D, 4H]``, ``dense_h [H, 4H]`` | hidden side | (c, h) |
| Keras 3 ``LSTM`` | i, f, c, o | ``kernel [D, 4H]``, ``recurrent_kernel [H, 4H]`` | ``bias [4H]`` | (h, c) |
| ``hk.LSTM`` | i, g, f, o | ``w [D + H, 4H]`` on ``[x, h]`` | ``b``, +1 on f | (h, c) |
| ``eqx.nn.LSTMCell`` | i, f, g, o | ``weight_ih [4H, D]``, ``weight_hh [4H, H]`` | ``bias [4H]`` | (h, c) |
| deeplearning.ai | f, i, c, o | ``W? [n_a, n_a + n_x]`` on ``[a_prev; x]`` | ``b? [n_a, 1]`` | (a, c) |
| Seo (8 matrices) | a, i, f, o | ``W? [D, H]``, ``Wrec? [H, H]`` | optional ``b? [H]`` | (out, state) |

With ``proj_size=P``, torch's ``weight_hr [P, H]`` is jlstm's ``P [H, P]`` (``CellParams``, ``U [P, 4H]``).

One module per library (``torch``, ``flax``, ``keras``, ``haiku``, ``equinox``, and ``tutorials`` for
the two notations) over the shared helpers in ``_common``; every name is re-exported here, so use
``jlstm.interop.from_torch`` and so on. Nothing here imports a deep-learning library at ``import jlstm``:
each converter imports what it needs.
"""

from __future__ import annotations

# The gate orders (``X as X``: re-exported, as before the split, but not part of ``__all__``).
from jlstm.interop._common import JLSTM_GATES as JLSTM_GATES
from jlstm.interop.equinox import EQUINOX_GATES as EQUINOX_GATES
from jlstm.interop.equinox import from_equinox, to_equinox
from jlstm.interop.flax import FLAX_GATES as FLAX_GATES
from jlstm.interop.flax import from_flax, from_flax_carry, to_flax, to_flax_carry
from jlstm.interop.haiku import HAIKU_GATES as HAIKU_GATES
from jlstm.interop.haiku import from_haiku, to_haiku
from jlstm.interop.keras import KERAS_GATES as KERAS_GATES
from jlstm.interop.keras import from_keras, to_keras
from jlstm.interop.torch import TORCH_GATES as TORCH_GATES
from jlstm.interop.torch import from_torch, from_torch_state, to_torch, to_torch_state
from jlstm.interop.tutorials import NG_GATES as NG_GATES
from jlstm.interop.tutorials import SEO_GATES as SEO_GATES
from jlstm.interop.tutorials import from_ng, from_seo, to_ng, to_seo

__all__ = [
    "from_equinox",
    "from_flax",
    "from_flax_carry",
    "from_haiku",
    "from_keras",
    "from_ng",
    "from_seo",
    "from_torch",
    "from_torch_state",
    "to_equinox",
    "to_flax",
    "to_flax_carry",
    "to_haiku",
    "to_keras",
    "to_ng",
    "to_seo",
    "to_torch",
    "to_torch_state",
]
