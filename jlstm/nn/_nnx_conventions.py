"""Flax NNX's conventions, converted for the NNX layers and kept apart from them: the 'dropout' stream
(the layer's own, or the call's ``nnx.Rngs``), and the parameters as ``nnx.Param``s in nested
``nnx.Dict``s with the framework's names (``cell.dense_i.kernel``, ...)."""

from __future__ import annotations

from collections.abc import Mapping

from flax import nnx

#: ``nnx.OptimizedLSTMCell``'s (and linen's) initialisers: ``dense_i``, ``dense_h``'s kernel, the bias.
KERNEL_INIT = nnx.initializers.lecun_normal()
RECURRENT_KERNEL_INIT = nnx.initializers.orthogonal()
BIAS_INIT = nnx.initializers.zeros_init()


def dropout_key(where: str, stream, rngs):
    """A key from the call's ``nnx.Rngs`` (its 'dropout' stream) or the layer's own stream.

    A bare ``RngStream`` or key at call time is the carry stream of ``nnx.RNN``/``nnx.Bidirectional``'s
    protocol, never used for dropout."""
    if isinstance(rngs, nnx.Rngs):
        try:
            return rngs["dropout"]()
        except KeyError:
            pass
    if stream is not None:
        return stream()
    raise ValueError(
        f"{where}: zoneout or dropout in training mode needs a 'dropout' PRNG stream, and rngs has none. "
        "Construct the layer with rngs=nnx.Rngs(params=0, dropout=1) (or pass rngs=nnx.Rngs(dropout=...) "
        "to the call), or evaluate with model.eval() / deterministic=True."
    )


def stream(rngs: nnx.Rngs, needed: bool):
    """The layer's own 'dropout' stream (a fork of ``rngs``'), when it draws masks."""
    if needed:
        try:
            return rngs["dropout"].fork()
        except KeyError:
            pass
    return nnx.data(None)


def to_nnx(tree):
    """A nested dict of arrays -> nested ``nnx.Dict``s of ``nnx.Param``s."""
    if isinstance(tree, Mapping):
        return nnx.Dict({k: to_nnx(v) for k, v in tree.items()})
    return nnx.Param(tree)


def from_nnx(node):
    """The inverse of ``to_nnx``: the Params' current values (traced under ``nnx.jit``/``nnx.grad``)."""
    if isinstance(node, nnx.Variable):
        return node[...]
    return {k: from_nnx(v) for k, v in node.items()}
