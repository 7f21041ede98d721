"""A user's own ``jlstm.Cell`` in every framework layer (``variant=cell``, its own parameters from
``theta``): the layer holds W, U, b in its framework's names plus the cell's own by their names, runs the
cell with its hand-written backward, and equals ``jlstm.lstm`` on ``layer.params`` (float64, the same
computation: 1e-12). The cell is JANET with a learnt forget shift (tests/test_check_cell.py's)."""

import os
import pathlib
import re

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported anywhere in this process

import equinox as eqx
import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
from flax import nnx

import jlstm
from jlstm.nn import equinox as jeqx
from jlstm.nn import keras as jkeras
from jlstm.nn import linen as jlinen
from jlstm.nn import nnx as jnnx

D, H, B, T = 3, 4, 2, 5
F64 = jnp.float64
LENGTHS = jnp.array([5, 2])


def janet_forward(theta, zx, zh, h_prev, c_prev, noise):
    """JANET (van der Westhuizen & Lasenby 2018) with a shift: c = f c_prev + (1 - f) tanh(z^a), h = c,
    f = s(z^f - beta)."""
    z = zx + zh
    a, f = jnp.tanh(z[:, :H]), jax.nn.sigmoid(z[:, H:] - theta["beta"][None])
    c = f * c_prev + (1 - f) * a
    return c, c, (a, f)


def janet_backward(theta, res, c_prev, c, g_h, dh, dc, noise):
    a, f = res
    ds = g_h + dh + dc  # h = c: both paths reach the state
    dz_f = ds * (c_prev - a) * f * (1 - f)
    dz = jnp.concatenate([ds * (1 - f) * (1 - a * a), dz_f], -1)
    return jlstm.CellGrads(dz, None, None, ds * f, {"beta": -dz_f.sum(0)}, ds)


JANET = jlstm.Cell("janet", 2, janet_forward, janet_backward)
THETA = {"beta": jnp.full((H,), 0.5, F64)}


def close(a, b, tol=1e-12):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol, atol=tol)


def xs():
    return jax.random.normal(jax.random.key(1), (B, T, D), F64)


def check_params(params):
    """The functional parameters: jlstm's layout for the cell (its spec an equal Cell: linen and Keras
    copy the tuples they are given) and its own theta."""
    assert params.spec == JANET and params.W.shape == (D, 2 * H) and params.U.shape == (H, 2 * H)
    close(params.extra, THETA, tol=0)


def test_nnx():
    layer = jnnx.LSTM(D, H, variant=JANET, theta=THETA, param_dtype=F64, rngs=nnx.Rngs(0))
    state = nnx.to_pure_dict(nnx.state(layer, nnx.Param))["cell"]
    assert jax.tree.map(jnp.shape, state) == {
        "dense_i": {"kernel": (D, 2 * H)},
        "dense_h": {"kernel": (H, 2 * H), "bias": (2 * H,)},
        "beta": (H,),
    }
    check_params(layer.params)

    ours, ref = nnx.jit(
        lambda m, x: (m(x, seq_lengths=LENGTHS), jlstm.lstm(m.params, x, lengths=LENGTHS)[0])
    )(layer, xs())
    close(ours, ref)  # the docs example below takes nnx.grad through the cell


def test_linen():
    model = jlinen.LSTM(H, variant=JANET, theta=THETA, param_dtype=F64)
    variables = model.init(jax.random.key(0), xs())
    cell = variables["params"]["cell"]
    assert set(cell) == {"i0", "i1", "h0", "h1", "beta"}  # a kernel per gate block, as Flax's cells
    assert cell["h1"]["kernel"].shape == (H, H) and cell["h1"]["bias"].shape == (H,)
    params = model.bind(variables).params
    check_params(params)
    ours, ref = jax.jit(
        lambda x: (model.apply(variables, x, seq_lengths=LENGTHS), jlstm.lstm(params, x, lengths=LENGTHS)[0])
    )(xs())
    close(ours, ref)


def test_equinox():
    layer = jeqx.LSTM(D, H, variant=JANET, theta=THETA, dtype=F64, key=jax.random.key(0))
    assert (layer.weight_ih.shape, layer.weight_hh.shape, layer.bias.shape) == (
        (2 * H, D),
        (2 * H, H),
        (2 * H,),
    )
    assert set(layer.extra) == {"beta"}
    check_params(layer.params)
    ours, ref = eqx.filter_jit(
        lambda m, x: (jax.vmap(m)(x, length=LENGTHS), jlstm.lstm(m.params, x, lengths=LENGTHS))
    )(layer, xs())
    close(ours, ref)


def test_keras():
    with jax.numpy_rank_promotion("allow"):  # keras's own code relies on numpy broadcasting
        layer = jkeras.LSTM(H, variant=JANET, theta=THETA, return_sequences=True, dtype="float64")
        layer.build((B, T, D))
        assert [v.path.split("/")[-1] for v in layer.weights] == [
            "kernel",
            "recurrent_kernel",
            "bias",
            "beta",
        ]
        check_params(layer.params)
        stack = jkeras.StackedLSTM(H, 2, variant=JANET, theta=THETA, return_sequences=True, dtype="float64")
        stack.build((B, T, D))
        # Bidirectional copies its layer through get_config: the cell and theta travel in it.
        bi = keras.layers.Bidirectional(layer, dtype="float64")
        bi.build((B, T, D))
        mask = np.arange(T)[None, :] < np.asarray(LENGTHS)[:, None]
        fwd, bwd = bi.forward_layer.params, bi.backward_layer.params
        check_params(bwd)

        @jax.jit
        def both(x):
            ours = (layer(x, mask=mask), stack(x, mask=mask), bi(x, mask=mask))
            return ours, (
                jlstm.lstm(layer.params, x, lengths=LENGTHS)[0],
                jlstm.stacked_lstm(stack.params, x, lengths=LENGTHS)[0],
                jnp.concatenate(
                    [
                        jlstm.lstm(fwd, x, lengths=LENGTHS)[0],
                        jlstm.lstm(bwd, x, lengths=LENGTHS, reverse=True)[0],
                    ],
                    axis=-1,
                ),
            )

        close(*both(xs()))
        config = {**stack.get_config(), "variant": "jlstm.Cell:janet:0"}  # as from another process
        # (Keras's from_config re-raises the layer's ValueError as a TypeError, the message kept.)
        with pytest.raises(TypeError, match=r"names a user's jlstm.Cell \('janet'\) from another process"):
            jkeras.StackedLSTM.from_config(config)


def test_errors_name_the_cell_and_the_option():
    with pytest.raises(
        ValueError, match=r"LSTM: variant is a user's jlstm.Cell \('janet'\).*got \['peephole'\]"
    ):
        jnnx.LSTM(D, H, variant=JANET, peephole=True, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"theta holds the initial parameters of a user's jlstm.Cell"):
        jeqx.LSTM(D, H, theta=THETA, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"variant is a user's jlstm.Cell"):  # linen: when it makes params
        jlinen.LSTM(H, variant=JANET, proj_size=2).init(jax.random.key(0), xs())
    with pytest.raises(ValueError, match=r"variant is a user's jlstm.Cell"):
        jkeras.LSTM(H, variant=JANET, layer_norm=True)


def test_docs_example():
    """The user-cell example of docs/layers.md, run as written."""
    text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "layers.md").read_text()
    code = re.search(r"<!-- example: user-cell -->\n```python\n(.*?)\n```", text, re.S).group(1)
    exec(compile(code, "docs/layers.md[user-cell]", "exec"), {"__name__": "docs_example"})
