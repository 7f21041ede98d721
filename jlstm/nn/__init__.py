"""Framework layers (Flax NNX, Flax linen, Equinox, Keras 3), one module per framework, each importing
only its own framework, and only when it is imported: ``jlstm.nn.nnx``, ``jlstm.nn.linen``,
``jlstm.nn.equinox``, ``jlstm.nn.keras`` (each with ``LSTM`` and ``StackedLSTM``; see docs/layers.md)."""

import importlib

_FRAMEWORKS = ("nnx", "linen", "equinox", "keras")


def __getattr__(name: str):
    # ``jlstm.nn.nnx`` after a bare ``import jlstm.nn`` imports the framework then, not before.
    if name in _FRAMEWORKS:
        return importlib.import_module(f"jlstm.nn.{name}")
    raise AttributeError(f"module 'jlstm.nn' has no attribute {name!r}")
