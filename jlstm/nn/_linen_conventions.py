"""Flax linen's conventions, converted for the linen modules and kept apart from them: the 'dropout' rng
in training mode (``deterministic`` merged with ``nn.merge_param``), the modules' attributes as
``jlstm.init``'s cell options, Flax's initialisers, and the 'cell' tree of ``nn.OptimizedLSTMCell``'s
names as jlstm's parameters."""

from __future__ import annotations

import flax.linen as nn
import jax

from jlstm.nn import _cell
from jlstm.nn import _common as C
from jlstm.nn import _layout as L

#: ``nn.OptimizedLSTMCell``'s initialisers: the input kernels, the recurrent kernels, the biases.
KERNEL_INIT = nn.initializers.lecun_normal()
RECURRENT_KERNEL_INIT = nn.initializers.orthogonal()
BIAS_INIT = nn.initializers.zeros_init()


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


def names_and_spec(m) -> tuple[tuple[str, ...], object]:
    """jlstm's names of the parameters and the spec, which depend on the options and H, not on D."""
    shapes, spec = _cell.shapes(1, m.features, dtype=m.param_dtype, options=cell_options(m), theta=m.theta)
    return tuple(shapes), spec


def functional(m, tree):
    """The 'cell' tree (``nn.OptimizedLSTMCell``'s names) -> LSTMParams/CellParams in jlstm's layout."""
    names, spec = names_and_spec(m)
    return C.from_arrays(L.to_jlstm(tree, spec, L.LINEN, names), spec)


def cell_init(m, D: int, spec):
    """The 'cell' tree's initialiser: ``W``, ``U``, ``b`` by the module's Flax initialisers, one array
    per gate (as ``nn.OptimizedLSTMCell``), a variant's own parameters (or ``theta``) as jlstm's."""

    def init(key):
        k_core, k_extra = jax.random.split(key)
        kw = dict(dtype=m.param_dtype, options=cell_options(m), theta=m.theta)
        arrays, _ = _cell.jlstm_arrays(k_extra, D, m.features, **kw)
        inits = {"W": m.kernel_init, "U": m.recurrent_kernel_init, "b": m.bias_init}
        keys = iter(jax.random.split(k_core, sum(map(len, L.core_paths(L.LINEN, spec).values()))))
        return _cell.framework_init(L.LINEN, arrays, spec, inits, keys, m.param_dtype)

    return init
