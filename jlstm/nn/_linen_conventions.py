"""Flax linen's conventions, converted for the linen modules and kept apart from them: the 'dropout' rng
in training mode (``deterministic`` merged with ``nn.merge_param``), the modules' attributes as
``jlstm.init``'s cell options, and the 'params' arrays by name as jlstm's parameters."""

from __future__ import annotations

import flax.linen as nn

from jlstm.nn import _common as C


def dropout_key(module: nn.Module, where: str, needed: bool, deterministic):
    """``make_rng('dropout')`` when the stochastic options train, else None."""
    if not needed or nn.merge_param("deterministic", module.deterministic, deterministic):
        return None
    if not module.has_rng("dropout"):
        raise ValueError(
            f"{where}: zoneout or dropout in training mode (deterministic=False) needs the 'dropout' rng: "
            "pass rngs={'dropout': key} to apply (and init), or deterministic=True to evaluate."
        )
    return module.make_rng("dropout")


def cell_options(m) -> dict:
    """The cell options of an ``LSTM`` or ``StackedLSTM`` (the same attribute names)."""
    return C.init_options(
        peephole=m.peephole,
        proj_size=m.proj_size,
        layer_norm=m.layer_norm,
        cell_clip=m.cell_clip,
        proj_clip=m.proj_clip,
        variant=m.variant,
    )


def functional(m, arrays):
    """Parameter arrays by name -> LSTMParams/CellParams (the spec depends only on the options)."""
    spec = C.init_shapes(arrays["W"].shape[0], m.features, dtype=m.param_dtype, options=cell_options(m))[1]
    return C.from_arrays(dict(arrays), spec)
