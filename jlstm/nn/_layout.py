"""Where each framework keeps a cell's parameters: its names, shapes and gate order, and the conversion
to jlstm's layout (``W [D, GH]``, ``U [R, GH]``, ``b [GH]``, gate blocks a, i, f, o) and back.

Framework-free and traceable (``jnp`` only): a layer holds its parameters in its framework's layout and
converts them at the top of each call, a permutation of gate blocks (and a transpose for Equinox) outside
the time loop, so autodiff maps jlstm's gradients back to the framework's layout. The gate orders are
``jlstm.interop``'s; its converters do the same for concrete arrays (numpy, so not under ``jit``).

A layout is data (one table per framework): each jlstm parameter's framework path, whether its last
axis holds gate blocks, whether the framework stores it transposed (Equinox's ``[out, in]``), and
whether it keeps one array per gate (linen's ``ii``, ``hi``, ...). A name the table lacks (a user
cell's own ``theta``) keeps its name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np

from jlstm.core.interface import Cell
from jlstm.interop import EQUINOX_GATES, FLAX_GATES, JLSTM_GATES, KERAS_GATES

#: The parameters every cell has, in the order frameworks create them.
CORE = ("W", "U", "b")


@dataclasses.dataclass(frozen=True)
class Entry:
    """One jlstm parameter in a framework: ``path`` (``{g}`` is the gate's name when ``per_gate``)."""

    path: tuple[str, ...]
    gated: bool = False
    transpose: bool = False
    per_gate: bool = False


@dataclasses.dataclass(frozen=True)
class Layout:
    """A framework's gate order (jlstm's letters), its names for the gates, and its table of entries."""

    name: str
    gates: tuple[str, ...]
    letters: Mapping[str, str]
    entries: Mapping[str, Entry]


def _flax_extras(scale: str) -> dict[str, Entry]:
    """Flax-style names for a variant's own parameters (``scale``: the layer norm gain's name)."""
    norms = {
        f"{g}_{part}": Entry((f"layer_norm_{part}", scale if g == "gamma" else "bias"), gated=part != "c")
        for part in "xhc"
        for g in ("gamma", "beta")
    }
    return {
        **{f"p_{g}": Entry((f"peephole_{g}",)) for g in "ifo"},
        "P": Entry(("projection", "kernel")),
        **norms,
    }


_KERAS_GATE_WORDS = {"i": "input", "f": "forget", "o": "output"}
_KERAS_NORMS = {"x": "kernel", "h": "recurrent", "c": "cell"}

KERAS = Layout(
    "keras",
    KERAS_GATES,
    {"a": "c", "i": "i", "f": "f", "o": "o"},
    {
        "W": Entry(("kernel",), gated=True),
        "U": Entry(("recurrent_kernel",), gated=True),
        "b": Entry(("bias",), gated=True),
        **{f"p_{g}": Entry((f"{w}_gate_peephole_weights",)) for g, w in _KERAS_GATE_WORDS.items()},
        "P": Entry(("projection_kernel",)),
        **{
            f"{g}_{part}": Entry((f"{w}_norm_{g}",), gated=part != "c")
            for part, w in _KERAS_NORMS.items()
            for g in ("gamma", "beta")
        },
    },
)
LINEN = Layout(
    "linen",
    FLAX_GATES,
    {"a": "g", "i": "i", "f": "f", "o": "o"},
    {
        "W": Entry(("i{g}", "kernel"), per_gate=True),
        "U": Entry(("h{g}", "kernel"), per_gate=True),
        "b": Entry(("h{g}", "bias"), per_gate=True),
        **_flax_extras("scale"),
    },
)
NNX = Layout(
    "nnx",
    FLAX_GATES,
    LINEN.letters,
    {
        "W": Entry(("dense_i", "kernel"), gated=True),
        "U": Entry(("dense_h", "kernel"), gated=True),
        "b": Entry(("dense_h", "bias"), gated=True),
        **_flax_extras("scale"),
    },
)
EQUINOX = Layout(
    "equinox",
    EQUINOX_GATES,
    {"a": "g", "i": "i", "f": "f", "o": "o"},
    {
        "W": Entry(("weight_ih",), gated=True, transpose=True),
        "U": Entry(("weight_hh",), gated=True, transpose=True),
        "b": Entry(("bias",), gated=True),
        **{k: e for k, e in _flax_extras("weight").items() if k != "P"},
        "P": Entry(("weight_hr",), transpose=True),
    },
)


def jlstm_gates(spec) -> tuple[str, ...]:
    """The gate blocks of ``W``'s columns in jlstm's order: letters, or positions for a user's cell."""
    if isinstance(spec, Cell):
        return tuple(str(k) for k in range(spec.num_gates))
    return JLSTM_GATES if spec is None else spec.gates


def framework_gates(layout: Layout, spec) -> tuple[str, ...]:
    """The same blocks in the framework's order (a user's cell keeps its own order)."""
    present = jlstm_gates(spec)
    if isinstance(spec, Cell):
        return present
    return tuple(g for g in layout.gates if g in present)


def entry(layout: Layout, name: str) -> Entry:
    return layout.entries.get(name, Entry((name,)))


def _paths(layout: Layout, e: Entry, gates) -> list[tuple[str, ...]]:
    if not e.per_gate:
        return [e.path]
    return [tuple(p.format(g=layout.letters.get(g, g)) for p in e.path) for g in gates]


def get(tree: Mapping, path: tuple[str, ...]):
    """The array at ``path`` of a nested dict."""
    for k in path:
        tree = tree[k]
    return tree


def put(tree: dict, path: tuple[str, ...], value) -> None:
    """Set the array at ``path`` of a nested dict (making the dicts on the way)."""
    for k in path[:-1]:
        tree = tree.setdefault(k, {})
    tree[path[-1]] = value


def _reorder(x, src: tuple[str, ...], dst: tuple[str, ...]):
    """The gate blocks of ``x``'s last axis from the order ``src`` to ``dst``: one gather."""
    if src == dst:
        return x
    H = x.shape[-1] // len(src)
    index = np.concatenate([np.arange(H) + H * src.index(g) for g in dst])
    return jnp.take(x, index, axis=-1)


def to_framework(arrays: Mapping, spec, layout: Layout) -> dict:
    """jlstm's arrays by name (``W``, ``U``, ``b``, then the variant's or the cell's own) -> the
    framework's nested dict, in the same order of names."""
    jl, fw = jlstm_gates(spec), framework_gates(layout, spec)
    tree: dict = {}
    for name, x in arrays.items():
        e = entry(layout, name)
        if e.per_gate:  # one array per gate, named by the gate: no order to keep
            for path, block in zip(_paths(layout, e, jl), jnp.split(x, len(jl), axis=-1)):
                put(tree, path, block)
            continue
        x = _reorder(x, jl, fw) if e.gated else x
        put(tree, e.path, x.T if e.transpose else x)
    return tree


def to_jlstm(tree: Mapping, spec, layout: Layout, names) -> dict:
    """The framework's nested dict -> jlstm's arrays, those named in ``names``."""
    jl, fw = jlstm_gates(spec), framework_gates(layout, spec)
    arrays = {}
    for name in names:
        e = entry(layout, name)
        if e.per_gate:
            arrays[name] = jnp.concatenate([get(tree, p) for p in _paths(layout, e, jl)], axis=-1)
            continue
        x = get(tree, e.path)
        x = x.T if e.transpose else x
        arrays[name] = _reorder(x, fw, jl) if e.gated else x
    return arrays


def core_paths(layout: Layout, spec) -> dict[str, list[tuple[str, ...]]]:
    """The framework paths that hold ``W``, ``U`` and ``b`` (one per gate where the framework splits them),
    for drawing them with the framework's own initialisers."""
    fw = framework_gates(layout, spec)
    return {name: _paths(layout, entry(layout, name), fw) for name in CORE}
