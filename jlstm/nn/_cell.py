"""Which cell a layer runs and how its parameters start: a built-in cell (``jlstm.init``'s options) or a
user's ``jlstm.Cell`` (``jlstm.cells.custom.init_params``), with ``W``, ``U`` and ``b`` drawn by the
framework's own initialisers in the framework's layout (``_layout``) and a variant's own parameters
(peepholes, projection, layer norm) or a user cell's ``theta`` as jlstm starts them. Framework-free."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import jax

import jlstm
from jlstm.cells.custom import init_params
from jlstm.core.interface import Cell
from jlstm.nn import _common as C
from jlstm.nn import _layout as L

#: ``(key, shape, dtype) -> array``: Flax's initialiser signature, which the layers use for every framework.
Init = Callable[..., jax.Array]


def user_cell(options: Mapping):
    """The user's ``jlstm.Cell`` given as ``variant``, or None for a built-in cell."""
    variant = options.get("variant")
    return variant if isinstance(variant, Cell) else None


def check(where: str, options: Mapping, theta) -> None:
    """A user's cell takes no built-in cell option; ``theta`` is only for a user's cell."""
    cell = user_cell(options)
    others = sorted(set(options) - {"variant"})
    if cell is not None and others:
        raise ValueError(
            f"{where}: variant is a user's jlstm.Cell ({cell.name!r}), which takes none of the built-in "
            f"cell options; got {others}. Write them into the cell, or use a built-in variant."
        )
    if cell is None and theta:
        raise ValueError(
            f"{where}: theta holds the initial parameters of a user's jlstm.Cell (variant=cell); the "
            f"built-in cell {options.get('variant')!r} has none. Got theta with {sorted(theta)}."
        )


def jlstm_arrays(key, input_size: int, hidden_size: int, *, dtype, options: Mapping, theta=None):
    """The cell's parameters as jlstm starts them -> ``({name: array}, spec)``; ``spec`` is None for the
    vanilla cell, a ``CellSpec`` for a variant, the ``Cell`` for a user's cell."""
    cell = user_cell(options)
    params: jlstm.LSTMParams | jlstm.CellParams
    if cell is not None:
        params = init_params(key, cell, input_size, hidden_size, theta=theta, dtype=dtype)
    else:
        params = jlstm.init(key, input_size, hidden_size, dtype=dtype, **options)
    return C.to_arrays(params), getattr(params, "spec", None)


def shapes(input_size: int, hidden_size: int, *, dtype, options: Mapping, theta=None):
    """The names, shapes and spec of ``jlstm_arrays``, computing nothing."""
    spec_box = []

    def arrays(key):
        out, spec = jlstm_arrays(key, input_size, hidden_size, dtype=dtype, options=options, theta=theta)
        spec_box.append(spec)
        return out

    return jax.eval_shape(arrays, jax.random.key(0)), spec_box[0]


def framework_init(
    layout: L.Layout, arrays: Mapping, spec, inits: Mapping[str, Init], keys: Iterator, dtype
) -> dict:
    """jlstm's arrays -> the framework's nested dict, with ``W``, ``U``, ``b`` redrawn by ``inits``
    (``{"W": init, "U": init, "b": init}``) in the framework's shapes, one key from ``keys`` per array
    (per gate where the framework keeps one array per gate)."""
    tree = L.to_framework(arrays, spec, layout)
    for name, paths in L.core_paths(layout, spec).items():
        for path in paths:
            L.put(tree, path, inits[name](next(keys), L.get(tree, path).shape, dtype))
    return tree
