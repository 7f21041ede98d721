"""jlstm/nn/_layout.py, the tables that say where each framework keeps a cell's parameters: for the
vanilla cell they equal jlstm.interop's converters (written independently, in numpy); for every variant and
a user's cell they round-trip, and a gated parameter's blocks sit in the framework's gate order."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jlstm
from jlstm.nn import _layout as L
from jlstm.nn._common import to_arrays

D, H = 3, 2
LAYOUTS = [L.KERAS, L.LINEN, L.NNX, L.EQUINOX]
IDS = [layout.name for layout in LAYOUTS]


def equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def interop(layout, params):
    """The same parameters through jlstm.interop's converters, as the framework's own LSTM holds them."""
    if layout is L.KERAS:
        return dict(zip(("kernel", "recurrent_kernel", "bias"), jlstm.interop.to_keras(params)))
    if layout is L.EQUINOX:
        cell = jlstm.interop.to_equinox(params)
        return {f: getattr(cell, f) for f in ("weight_ih", "weight_hh", "bias")}
    return jlstm.interop.to_flax(params, layout="linen" if layout is L.LINEN else "nnx_optimized")


@pytest.mark.parametrize("layout", LAYOUTS, ids=IDS)
def test_vanilla_is_the_frameworks_own_lstm(layout):
    params = jlstm.init(jax.random.key(0), D, H)
    tree = L.to_framework(to_arrays(params), None, layout)
    equal(tree, interop(layout, params))
    equal(L.to_jlstm(tree, None, layout, ("W", "U", "b")), to_arrays(params))


# Every option's parameters at once, on a cell without a forget gate (so the framework's order of the
# gates kept is not its order of all four).
EVERY = dict(peephole=True, proj_size=1, layer_norm=True, variant="CIFG")


@pytest.mark.parametrize("layout", LAYOUTS, ids=IDS)
def test_variants_round_trip_in_the_frameworks_gate_order(layout):
    params = jlstm.init(jax.random.key(0), D, H, **EVERY)
    gates = params.spec.gates
    # Each gate block of b, W and gamma_x holds its gate's index in jlstm's order: the framework's order
    # then reads off the blocks.
    marks = jnp.repeat(jnp.arange(len(gates), dtype=jnp.float32), H)
    arrays = to_arrays(params) | {"b": marks, "W": jnp.broadcast_to(marks, (D, marks.size))}
    if "gamma_x" in arrays:
        arrays["gamma_x"] = marks
    tree = L.to_framework(arrays, params.spec, layout)
    equal(L.to_jlstm(tree, params.spec, layout, tuple(arrays)), arrays)
    order = [gates.index(g) for g in layout.gates if g in gates]  # the framework's order of the blocks kept
    want = np.repeat(np.asarray(order, np.float32), H)
    if layout is L.LINEN:  # one bias per gate, named by Flax's letter
        got = np.concatenate([tree[f"h{layout.letters[gates[k]]}"]["bias"] for k in order])
    else:
        got = L.get(tree, L.entry(layout, "b").path)
    np.testing.assert_array_equal(got, want)
    W = L.get(tree, L.entry(layout, "W").path) if layout is not L.LINEN else None
    if W is not None:  # Equinox's [out, in]
        np.testing.assert_array_equal(W.T[0] if layout is L.EQUINOX else W[0], want)
    if "gamma_x" in arrays and layout is not L.LINEN:
        np.testing.assert_array_equal(L.get(tree, L.entry(layout, "gamma_x").path), want)


@pytest.mark.parametrize("layout", LAYOUTS, ids=IDS)
def test_a_user_cells_blocks_keep_its_order_and_its_theta_its_names(layout):
    cell = jlstm.Cell("two", 2, None, None)
    arrays = {
        "W": jnp.arange(2.0 * D * H).reshape(D, 2 * H),
        "U": jnp.ones((H, 2 * H)),
        "b": jnp.arange(2.0 * H),
    }
    arrays["beta"] = jnp.ones(H)
    tree = L.to_framework(arrays, cell, layout)
    equal(L.to_jlstm(tree, cell, layout, tuple(arrays)), arrays)
    assert "beta" in tree
    if layout is L.LINEN:
        assert set(tree) == {"i0", "i1", "h0", "h1", "beta"}
        np.testing.assert_array_equal(tree["h1"]["bias"], arrays["b"][H:])
    else:
        np.testing.assert_array_equal(L.get(tree, L.entry(layout, "b").path), arrays["b"])
