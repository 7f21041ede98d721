"""jlstm as Keras 3 layers (JAX backend): ``LSTM`` (``keras.layers.Bidirectional`` takes it) and
``StackedLSTM``. They hold ``keras.layers.LSTM``'s weights, ``kernel [D, 4H]``, ``recurrent_kernel [H,
4H]``, ``bias [4H]`` in Keras's gate order (i, f, c, o), drawn by its initialisers (glorot uniform,
orthogonal, ``unit_forget_bias``), so ``layer.set_weights(keras_lstm.get_weights())`` loads a Keras
LSTM; each call permutes them into jlstm's layout. States ``[h, c]`` as Keras; masks from
``Embedding(mask_zero=True)``/``Masking``; the backward pass is jlstm's hand-written one. Both layers are
registered for ``save``/``load_model``.

Set ``KERAS_BACKEND=jax`` before importing keras.

Example:
  >>> from jlstm.nn.keras import LSTM
  >>> model = keras.Sequential([keras.layers.Embedding(100, 16, mask_zero=True),
  ...                           keras.layers.Bidirectional(LSTM(32)), keras.layers.Dense(1)])
"""

from jlstm.nn._keras_lstm import LSTM
from jlstm.nn._keras_stacked import StackedLSTM

__all__ = ["LSTM", "StackedLSTM"]
