"""jlstm.nn.keras: the layer holds keras.layers.LSTM's weights (names, shapes, gate order, initialisers), so
a Keras LSTM's weights load into it and back and the two train step for step the same; it equals the
functional core (float64, 1e-12; gradients 1e-10) and keras.layers.LSTM given the same weights (float32:
Keras computes in float32 even under a float64 policy, TOL32) wherever their semantics agree; masks give
jlstm's semantics, also inside keras.layers.Bidirectional; it trains with fit and round-trips
save/load_model."""

import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported anywhere in this process

import functools
import pathlib
import re

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest

import jlstm
from jlstm.nn.keras import LSTM, StackedLSTM

D, H, B, T = 3, 4, 3, 6
LENGTHS = np.array([6, 3, 0])
MASK = np.arange(T)[None, :] < LENGTHS[:, None]
VARIANTS = [
    dict(peephole=True, proj_size=2, cell_clip=3.0, proj_clip=0.5),
    dict(layer_norm=True, variant="CIFG"),
]
# float32 against Keras, both at full float32 matmul precision: the longest chain of rounded sums runs
# through all T steps, each a dot of D + H terms, n = T (D + H) = 42, n * eps32 = 5e-6 (measured 1.2e-7).
TOL32 = T * (D + H) * float(np.finfo(np.float32).eps)
# Keras's own saving and get_weights call np.array(variable) without copy= (a numpy 2 DeprecationWarning).
KERAS_SAVE_WARNING = "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"


@pytest.fixture(autouse=True)
def _keras_numpy_broadcasting():
    with jax.numpy_rank_promotion("allow"):  # keras's own code relies on numpy broadcasting
        keras.utils.set_random_seed(0)
        yield


def close(a, b, tol=1e-12):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol, atol=tol)


def data(dtype=np.float64):
    rng = np.random.default_rng(1)
    return (
        rng.normal(size=(B, T, D)).astype(dtype),
        [0.5 * rng.normal(size=(B, H)).astype(dtype), 0.5 * rng.normal(size=(B, H)).astype(dtype)],
    )


def make(dtype="float64", **kw):
    layer = LSTM(H, return_sequences=True, return_state=True, dtype=dtype, **kw)
    layer.build((B, T, D))
    return layer


def keras_lstm(layer, **kw):
    """keras.layers.LSTM holding the layer's weights (via jlstm.interop), float32."""
    k = keras.layers.LSTM(H, return_sequences=True, return_state=True, **kw)
    k.build((B, T, D))
    k.set_weights(jlstm.interop.to_keras(layer.params))
    return k


def names(layer):
    return [v.path.split("/")[-1] for v in layer.trainable_weights]


def test_weights_are_keras_lstms():
    """keras.layers.LSTM's names, shapes and paths (its ``cell``); .params is jlstm's layout, as the
    numpy converter jlstm.interop.from_keras reads the same weights."""
    layer, theirs = make(), keras.layers.LSTM(H, dtype="float64")
    theirs.build((B, T, D))
    assert names(layer) == names(theirs) == ["kernel", "recurrent_kernel", "bias"]
    assert [v.shape for v in layer.weights] == [v.shape for v in theirs.weights]
    assert [v.path.split("/")[1:] for v in layer.weights] == [v.path.split("/")[1:] for v in theirs.weights]
    assert isinstance(layer.params, jlstm.LSTMParams)
    close(layer.params, jlstm.interop.from_keras(layer), tol=0)


def test_init_is_keras_lstms():
    """glorot_uniform kernel, orthogonal recurrent kernel (Keras orthogonalises [H, 4H] whole: U U^T = I),
    unit_forget_bias; the Keras arguments reach the weights."""
    Dk, Hk = 32, 16
    layer = LSTM(Hk, dtype="float64")
    layer.build((B, T, Dk))
    kernel, recurrent, bias = (np.asarray(v.value) for v in layer.weights)
    limit = (6 / (Dk + 4 * Hk)) ** 0.5
    assert np.abs(kernel).max() <= limit and abs(kernel.std() / (limit / 3**0.5) - 1) < 0.1  # n = 2048
    close(recurrent @ recurrent.T, np.eye(Hk))
    np.testing.assert_array_equal(bias, np.zeros(4 * Hk) + (np.arange(4 * Hk) // Hk == 1))  # i, f, c, o
    plain = LSTM(
        H, unit_forget_bias=False, kernel_initializer="zeros", bias_initializer="ones", use_bias=True
    )
    plain.build((B, T, D))
    kernel, _, bias = (np.asarray(v.value) for v in plain.weights)
    assert not kernel.any() and (bias == 1).all()
    no_bias = LSTM(H, use_bias=False, kernel_regularizer="l2", recurrent_constraint="non_neg")
    no_bias.build((B, T, D))
    assert names(no_bias) == ["kernel", "recurrent_kernel"] and not np.asarray(no_bias.params.b).any()
    assert len(no_bias.losses) == 1 and no_bias.cell.recurrent_kernel.constraint is not None


@pytest.mark.parametrize(
    "arg", [{"activation": "relu"}, {"recurrent_activation": "tanh"}, {"stateful": True}, {"unroll": True}]
)
def test_keras_args_without_meaning_are_refused_by_name(arg):
    ((name, value),) = arg.items()
    with pytest.raises(ValueError, match=rf"LSTM: {name}={value!r} is not supported \(.*\); accepted"):
        LSTM(H, **arg)
    with pytest.raises(ValueError, match=rf"{name}={value!r} is not supported"):
        StackedLSTM(H, 2, **arg)


def test_keras_defaults_of_those_args_are_accepted():
    LSTM(
        H, activation="tanh", recurrent_activation=keras.activations.sigmoid, stateful=False, use_cudnn=False
    )


STEPS = 3


def sequential(layer, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((T, D)), layer, keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    return model


@pytest.mark.filterwarnings(KERAS_SAVE_WARNING)  # get_weights, save_weights
def test_keras_lstm_checkpoint_loads_and_trains_step_for_step_the_same(tmp_path):
    """A model with keras.layers.LSTM, and the same model with jlstm's: set_weights(get_weights()) (and
    the .weights.h5 file) carry the weights over unchanged; outputs agree, and 3 SGD steps give the same
    losses. Float32: each loss is a float32 computation (TOL32) of parameters that differ by lr times
    gradients that agree to the same order, so step k agrees to (k + 1) TOL32."""
    theirs = sequential(keras.layers.LSTM(H, return_sequences=True), seed=1)
    ours = sequential(LSTM(H, return_sequences=True), seed=2)
    ours.set_weights(theirs.get_weights())
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    path = tmp_path / "theirs.weights.h5"
    theirs.save_weights(path)
    from_file = sequential(LSTM(H, return_sequences=True), seed=3)
    from_file.load_weights(path)
    xs, _ = data(np.float32)
    ys = np.sin(np.arange(B * T * 2, dtype=np.float32)).reshape(B, T, 2)
    with jax.default_matmul_precision("highest"):
        close(ours.predict(xs, verbose=0), theirs.predict(xs, verbose=0), tol=TOL32)
        close(from_file.predict(xs, verbose=0), theirs.predict(xs, verbose=0), tol=TOL32)
        losses = [[float(m.train_on_batch(xs, ys)) for _ in range(STEPS)] for m in (ours, theirs)]
    np.testing.assert_allclose(losses[0], losses[1], rtol=(STEPS + 1) * TOL32)
    assert losses[1][-1] < losses[1][0]  # it trained
    close(ours.get_weights(), theirs.get_weights(), tol=(STEPS + 1) * TOL32)


@pytest.mark.parametrize("go_backwards", [False, True])
def test_equals_functional_core(go_backwards):
    layer = make(go_backwards=go_backwards)
    last = LSTM(H, dtype="float64")  # return_sequences=False: the last output is the final h
    last.build((B, T, D))
    last.set_weights([np.asarray(v.value) for v in layer.trainable_weights])
    xs, (h0, c0) = data()

    @jax.jit
    def both(xs):
        ours = (layer(xs, initial_state=[h0, c0], mask=MASK), last(xs, mask=MASK))
        ref, (rh, rc) = jlstm.lstm(layer.params, xs, (h0, c0), lengths=LENGTHS, reverse=go_backwards)
        final_h = jlstm.lstm(layer.params, xs, lengths=LENGTHS)[1].h
        return ours, ((ref[:, ::-1] if go_backwards else ref, rh, rc), final_h)

    close(*both(xs))


@functools.cache
def keras_runs():
    """Ours and keras.layers.LSTM's (same weights, float32): without a mask but with an initial state,
    and with the ragged mask; each ``(outputs, h, c)``."""
    layer = make(dtype="float32")
    xs, (h0, c0) = data(np.float32)
    k = keras_lstm(layer)
    with jax.default_matmul_precision("highest"):  # full float32 on a GPU too (TF32 by default there)
        return jax.jit(lambda xs: [(f(xs, initial_state=[h0, c0]), f(xs, mask=MASK)) for f in (layer, k)])(xs)


def test_equals_keras_lstm():
    """No mask: outputs and states agree. With a mask: the last output, states and valid outputs agree."""
    (plain, (ys, h, c)), (kplain, (kys, kh, kc)) = keras_runs()
    close(plain, kplain, tol=TOL32)
    close((h, c, np.asarray(ys)[MASK]), (kh, kc, np.asarray(kys)[MASK]), tol=TOL32)


def test_masked_outputs_are_zero_keras_repeats_h():
    (_, (ys, _, _)), (_, (kys, kh, _)) = keras_runs()
    assert float(np.abs(np.asarray(ys)[~MASK]).max()) == 0.0
    close(np.asarray(kys)[1, 3:], np.broadcast_to(np.asarray(kh)[1], (T - 3, H)), tol=1e-6)


def test_go_backwards_matches_keras():
    layer = make(dtype="float32", go_backwards=True)
    xs, state = data(np.float32)
    with jax.default_matmul_precision("highest"):  # full float32 on a GPU too
        close(
            layer(xs, initial_state=state),
            keras_lstm(layer, go_backwards=True)(xs, initial_state=state),
            tol=TOL32,
        )


def test_bidirectional_ragged():
    bi = keras.layers.Bidirectional(LSTM(H, return_sequences=True, dtype="float64"), dtype="float64")
    xs, _ = data()
    bi.build((B, T, D))
    fwd, bwd = bi.forward_layer.params, bi.backward_layer.params

    @jax.jit
    def both(xs):
        rf, _ = jlstm.lstm(fwd, xs, lengths=LENGTHS)
        rb, _ = jlstm.lstm(bwd, xs, lengths=LENGTHS, reverse=True)
        return bi(xs, mask=MASK), jnp.concatenate([rf, rb], axis=-1)

    ys, ref = both(xs)
    close(ys, ref)
    assert float(np.abs(np.asarray(ys)[~MASK]).max()) == 0.0


def test_mask_with_holes_is_an_error():
    layer = make()
    xs, _ = data()
    holes = MASK.copy()
    holes[0, 2] = False
    with pytest.raises(ValueError, match="mask must be right-padded"):
        layer(xs, mask=holes)
    with pytest.raises(Exception, match="mask must be right-padded"):  # inside jit: at run time
        jax.block_until_ready(jax.jit(lambda x, m: layer(x, mask=m))(xs, holes))


def test_gradients_equal_core():
    """jax.grad through stateless_call (the manual backward) == jax.grad through the core's autodiff."""
    layer = make()
    xs, (h0, c0) = data()

    def loss(ys, h, c):
        w = jnp.sin(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
        return jnp.sum(w * ys) + jnp.sum(jnp.cos(h)) + 0.3 * jnp.sum(c**3)

    def loss_layer(weights, xs):
        (ys, h, c), _ = layer.stateless_call(
            weights, layer.non_trainable_variables, xs, initial_state=[h0, c0], mask=MASK
        )
        return loss(ys, h, c)

    def loss_core(params, xs):
        ys, (h, c) = jlstm.lstm(params, xs, (h0, c0), lengths=LENGTHS, backward="autodiff")
        return loss(ys, h, c)

    weights = [v.value for v in layer.trainable_variables]
    g_w, g_x = jax.jit(jax.grad(loss_layer, argnums=(0, 1)))(weights, xs)
    r_p, r_x = jax.jit(jax.grad(loss_core, argnums=(0, 1)))(layer.params, xs)
    close((g_w, g_x), (jlstm.interop.to_keras(r_p), r_x), tol=1e-10)  # in Keras's layout


def test_stacked_equals_core():
    """A bidirectional stack of projected peephole cells under a mask, with initial states."""
    model = StackedLSTM(
        H, 2, bidirectional=True, return_sequences=True, return_state=True, dtype="float64", **VARIANTS[0]
    )
    xs, (h0, c0) = data()
    model.build((B, T, D))
    s = jlstm.LSTMState(h0[:, :2], c0)

    @jax.jit
    def both(xs):
        out = model(xs, initial_state=[h0[:, :2], c0] * 4, mask=MASK)
        ref, rfin = jlstm.stacked_lstm(model.params, xs, [(s, s)] * 2, lengths=LENGTHS, bidirectional=True)
        return out, (ref, *[a for f, b in rfin for a in (*f, *b)])

    out, ref = both(xs)
    close(out, ref)
    assert [tuple(o.shape) for o in out] == list(model.compute_output_shape((B, T, D)))
    clone = StackedLSTM.from_config(model.get_config())
    assert clone.get_config() == model.get_config()


def test_step_equals_call():
    layer = make()
    xs, state = data()
    ys, h, c = layer(xs, initial_state=state)
    for t in range(T):
        y, state = layer.step(state, xs[:, t])
    close((y, *state), (ys[:, -1], h, c))


def test_config_round_trip():
    layer = make(dropout=0.0, go_backwards=True)
    clone = LSTM.from_config(layer.get_config())
    clone.build((B, T, D))
    clone.set_weights([np.asarray(v.value) for v in layer.trainable_weights])
    xs, _ = data()
    close(clone(xs, mask=MASK), layer(xs, mask=MASK))


def test_errors_name_the_argument():
    layer = make()
    xs, (h0, c0) = data()
    with pytest.raises(
        ValueError, match=r"sequences must be \[\.\.\., T, D\] with D = 3 .*got shape \(3, 6, 5\)"
    ):
        layer.call(np.ones((B, T, 5)))
    with pytest.raises(ValueError, match=r"initial_state\[1\] \(c\) must be \(3, 4\)"):
        layer(xs, initial_state=[h0, c0[:, :2]])
    with pytest.raises(ValueError, match=r"mask must be \[\*batch, T\]"):
        layer(xs, mask=MASK[:2])


@pytest.mark.filterwarnings(KERAS_SAVE_WARNING)
def test_docs_example():
    """The Keras example of docs/layers.md, run as written: fit lowers the loss, save/load_model is exact."""
    text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "layers.md").read_text()
    code = re.search(r"<!-- example: keras -->\n```python\n(.*?)\n```", text, re.S).group(1)
    exec(compile(code, "docs/layers.md[keras]", "exec"), {"__name__": "docs_example"})


PEEPHOLES = [f"{g}_gate_peephole_weights" for g in ("input", "forget", "output")]
NORMS = [f"{w}_norm_{g}" for w in ("kernel", "recurrent", "cell") for g in ("gamma", "beta")]
VARIANT_WEIGHTS = [PEEPHOLES + ["projection_kernel"], NORMS]  # Keras-style names of their own


@pytest.mark.parametrize(
    "options,own", list(zip(VARIANTS, VARIANT_WEIGHTS)), ids=["peephole-proj-clip", "layernorm-CIFG"]
)
def test_variants_hold_their_weights_and_equal_core(options, own):
    layer = make(**options)
    params = layer.params
    assert isinstance(params, jlstm.CellParams)
    assert params.spec == jlstm.init(jax.random.key(0), D, H, **options).spec
    assert names(layer) == ["kernel", "recurrent_kernel", "bias", *own]
    R = options.get("proj_size", H)
    xs, (h0, c0) = data()
    both = jax.jit(
        lambda xs: (
            layer(xs, initial_state=[h0[:, :R], c0], mask=MASK),
            jlstm.lstm(params, xs, (h0[:, :R], c0), lengths=LENGTHS),
        )
    )
    (ys, h, c), (ref, (rh, rc)) = both(xs)
    close((ys, h, c), (ref, rh, rc))
    assert [tuple(o.shape) for o in (ys, h, c)] == list(layer.compute_output_shape((B, T, D)))
    clone = LSTM.from_config(layer.get_config())
    clone.build((B, T, D))
    assert clone.params.spec == params.spec


def test_dropout_and_zoneout_only_in_training():
    layer = make(dropout=0.2, recurrent_dropout=0.3, zoneout=0.2)
    rd = jlstm.RecurrentDropout(rate=0.3, input_rate=0.2)  # Keras's dropout is the core's input_rate
    assert layer.lstm_options(jax.random.key(0))["recurrent_dropout"] == rd
    xs, _ = data()
    a, b = layer(xs, training=True), layer(xs, training=True)
    assert not np.allclose(a[0], b[0])  # the seed generator advances
    both = jax.jit(
        lambda xs: (
            layer(xs, training=False),
            jlstm.lstm(layer.params, xs, zoneout=0.2, recurrent_dropout=rd),
        )
    )
    (ys, h, c), (ref, (rh, rc)) = both(xs)
    close((ys, h, c), (ref, rh, rc))
    config = layer.get_config()
    assert (config["dropout"], config["recurrent_dropout"], config["zoneout"]) == (0.2, 0.3, 0.2)
    tied = LSTM.from_config({**config, "recurrent_dropout": jlstm.RecurrentDropout(0.3, tied=True)._asdict()})
    assert tied.lstm_options()["recurrent_dropout"] == jlstm.RecurrentDropout(0.3, 0.2, tied=True)


def test_remat_and_mixed_precision_pass_through():
    layer = LSTM(H, return_sequences=True, remat=2, dtype="mixed_bfloat16")
    assert make(backward="autodiff").lstm_options()["backward"] == "autodiff"
    xs, _ = data(np.float32)
    layer.build((B, T, D))
    core = lambda xs: jlstm.lstm(layer.params, xs, lengths=LENGTHS, remat=2, compute_dtype=jnp.bfloat16)[0]
    both = jax.jit(lambda xs: (layer(xs, mask=MASK), core(xs)))
    ys, ref = both(xs)
    assert ys.dtype == jnp.bfloat16 and layer.cell.kernel.dtype == "float32"
    close(ys.astype(jnp.float32), ref.astype(jnp.float32), tol=0)
