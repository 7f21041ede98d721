"""jlstm.nn.nnx: the layer holds nnx.RNN(nnx.OptimizedLSTMCell)'s parameters (names, shapes, gate order,
initialisers: the same rngs give the same values), so the Flax LSTM's state loads into it and back and the
two train step for step the same; it equals the functional core and nnx.RNN(OptimizedLSTMCell) where
their semantics agree, keeps jlstm's padding semantics (also inside nnx.Bidirectional), trains, saves and
loads.

Comparisons run in float64 (conftest turns x64 on): against jlstm.lstm the numbers are the same
computation (tolerance 1e-12; gradients against the core's autodiff 1e-10); against Flax's own cell, the
same maths in another order (1e-12). Each comparison is one jitted function (faster to compile than
running op by op)."""

import functools
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jlstm
from jlstm.nn import _layout
from jlstm.nn._common import to_arrays
from jlstm.nn.nnx import LSTM, StackedLSTM

D, H, B, T = 3, 4, 3, 6
F64 = jnp.float64
LENGTHS = jnp.array([6, 3, 0])
# Two cells that between them use every init option: their parameters, shapes and outputs pass through.
VARIANTS = [
    dict(peephole=True, proj_size=2, cell_clip=3.0, proj_clip=0.5),
    dict(layer_norm=True, variant="CIFG"),
]
STOCHASTIC = dict(zoneout=0.2, recurrent_dropout=0.3, dropout_rate=0.2)


def close(a, b, tol=1e-12):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol, atol=tol)


def make(seed=0, **kw):
    return LSTM(D, H, param_dtype=F64, rngs=nnx.Rngs(seed), **kw)


def data():
    kx, kh, kc = jax.random.split(jax.random.key(1), 3)
    xs = jax.random.normal(kx, (B, T, D), F64)
    return xs, (0.5 * jax.random.normal(kc, (B, H), F64), 0.5 * jax.random.normal(kh, (B, H), F64))


def flax_rnn(layer):
    """nnx.RNN(OptimizedLSTMCell) holding the layer's parameters: the layer's 'cell' state is its cell's."""
    cell = nnx.OptimizedLSTMCell(D, H, param_dtype=F64, rngs=nnx.Rngs(5))
    nnx.update(cell, nnx.state(layer, nnx.Param)["cell"])
    return nnx.RNN(cell)


def to_nnx_layout(params):
    """Functional parameters (jlstm's layout) -> the layer's 'cell' tree (test-side: through the layout
    table, for a variant's parameters, which no Flax cell has)."""
    return _layout.to_framework(to_arrays(params), params.spec, _layout.NNX)


def flip_within(a, lengths):
    """Reverse [B, T, ...] within each sequence's valid prefix (test-side reference)."""
    t = jnp.arange(a.shape[1])[None, :]
    idx = jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
    return jnp.take_along_axis(a, idx[..., None], axis=1)


@functools.cache
def ragged_runs():
    """Ours and nnx.RNN's outputs and carries on the ragged batch (lengths 6, 3, 0), nonzero carry."""
    layer = make()
    xs, carry = data()
    kw = dict(initial_carry=carry, seq_lengths=LENGTHS, return_carry=True)
    return jax.jit(lambda: (layer(xs, **kw), flax_rnn(layer)(xs, **kw)))(), carry


def test_parameters_are_flax_lstms_and_the_functional_api_runs_on_them():
    """nnx.RNN(nnx.OptimizedLSTMCell)'s Params (cell.dense_i.kernel, ...) and, from the same rngs, the
    same values; .params is jlstm's layout, as the numpy converter jlstm.interop.from_flax reads it."""
    layer = make()
    theirs = nnx.RNN(nnx.OptimizedLSTMCell(D, H, param_dtype=F64, rngs=nnx.Rngs(0)))
    close(
        nnx.to_pure_dict(nnx.state(layer, nnx.Param)), nnx.to_pure_dict(nnx.state(theirs, nnx.Param)), tol=0
    )
    assert isinstance(layer.params, jlstm.LSTMParams)
    close(layer.params, jlstm.interop.from_flax(nnx.state(layer, nnx.Param)), tol=0)
    xs, _ = data()  # the functional API runs on the layer's weights
    dparams, _, _, trace = jlstm.lstm_trace(layer.params, xs[:, :2], jnp.ones((B, 2, H), F64))
    assert dparams.W.shape == (D, 4 * H) and trace.delta_gates.shape == (B, 2, 4 * H)


def test_init_is_flax_lstms():
    """The same values as Flax's from the same rngs (above); here what they are: orthogonal dense_h (nnx
    orthogonalises [H, 4H] whole: U U^T = I), zero bias; the initialiser arguments reach them."""
    cell = make().cell
    close(cell.dense_h.kernel[...] @ cell.dense_h.kernel[...].T, jnp.eye(H))
    assert not cell.dense_h.bias[...].any()
    ones = make(kernel_init=nnx.initializers.zeros, bias_init=nnx.initializers.ones).cell
    assert not ones.dense_i.kernel[...].any() and (ones.dense_h.bias[...] == 1).all()


STEPS = 3


class Tagger(nnx.Module):
    """A small model around a recurrent layer, the Flax LSTM's or jlstm's: Linear(LSTM(x))."""

    def __init__(self, lstm, rngs):
        self.lstm, self.head = lstm, nnx.Linear(H, 2, param_dtype=F64, rngs=rngs)

    def __call__(self, xs, lengths):
        return self.head(self.lstm(xs, seq_lengths=lengths))


def test_flax_lstm_state_loads_and_trains_step_for_step_the_same():
    """A model with nnx.RNN(nnx.OptimizedLSTMCell) and the same model with jlstm's LSTM: the Flax
    model's Param state loads into ours (nnx.update) and back unchanged, the outputs agree on the valid
    steps, and 3 SGD steps (nnx.Optimizer) give the same losses and Params (float64, 1e-12)."""
    xs, _ = data()
    lengths = jnp.array([6, 3, 1])
    valid = (jnp.arange(T)[None, :] < lengths[:, None])[..., None]
    ys = jnp.sin(jnp.arange(B * T * 2, dtype=F64)).reshape(B, T, 2)
    theirs = Tagger(nnx.RNN(nnx.OptimizedLSTMCell(D, H, param_dtype=F64, rngs=nnx.Rngs(1))), nnx.Rngs(2))
    ours = Tagger(make(seed=3), nnx.Rngs(4))
    state = nnx.state(theirs, nnx.Param)
    nnx.update(ours, state)
    close(nnx.to_pure_dict(nnx.state(ours, nnx.Param)), nnx.to_pure_dict(state), tol=0)

    def loss(model):
        err = jnp.where(valid, model(xs, lengths) - ys, 0)
        return jnp.sum(err**2) / jnp.sum(valid)

    @nnx.jit
    def step(model, optimizer):
        value, grads = nnx.value_and_grad(loss)(model)
        optimizer.update(model, grads)
        return value

    losses = []
    for model in (ours, theirs):
        optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
        losses.append([step(model, optimizer) for _ in range(STEPS)])
    close(losses[0], losses[1])
    close(nnx.to_pure_dict(nnx.state(ours, nnx.Param)), nnx.to_pure_dict(nnx.state(theirs, nnx.Param)))
    assert losses[1][-1] < losses[1][0]


@pytest.mark.parametrize(
    "reverse,keep_order,time_major", [(False, False, False), (True, True, True), (True, False, False)]
)
def test_outputs_and_carry_equal_functional_core(reverse, keep_order, time_major):
    layer = make()
    xs, (c0, h0) = data()

    @jax.jit
    def both(xs):
        inputs = jnp.swapaxes(xs, 0, 1) if time_major else xs
        kw = dict(reverse=reverse, keep_order=keep_order, time_major=time_major)
        (c, h), ys = layer(inputs, initial_carry=(c0, h0), seq_lengths=LENGTHS, return_carry=True, **kw)
        ref, (rh, rc) = jlstm.lstm(
            layer.params, xs, jlstm.LSTMState(h0, c0), lengths=LENGTHS, reverse=reverse
        )
        return (jnp.swapaxes(ys, 0, 1) if time_major else ys, c, h), (ref, rc, rh)

    ours, (ref, rc, rh) = both(xs)
    close(ours, (flip_within(ref, LENGTHS) if reverse and not keep_order else ref, rc, rh))


@pytest.mark.parametrize(
    "reverse,keep_order,time_major", [(False, False, True), (True, True, False), (True, False, True)]
)
def test_equals_flax_rnn(reverse, keep_order, time_major):
    """Without padding the semantics agree exactly: outputs, order and final carry."""
    layer = make()
    xs, carry = data()
    inputs = jnp.swapaxes(xs, 0, 1) if time_major else xs
    kw = dict(
        initial_carry=carry, return_carry=True, reverse=reverse, keep_order=keep_order, time_major=time_major
    )
    close(*jax.jit(lambda x: (layer(x, **kw), flax_rnn(layer)(x, **kw)))(inputs))


def test_ragged_valid_steps_equal_flax_rnn():
    """With seq_lengths >= 1 the valid outputs and the final carry agree with nnx.RNN."""
    layer = make()
    xs, carry = data()
    lengths = jnp.array([6, 3, 1])
    kw = dict(initial_carry=carry, seq_lengths=lengths, return_carry=True)
    ((c, h), ys), ((fc, fh), fys) = jax.jit(lambda: (layer(xs, **kw), flax_rnn(layer)(xs, **kw)))()
    valid = (jnp.arange(T)[None, :] < lengths[:, None])[..., None]
    close((c, h, ys), (fc, fh, jnp.where(valid, fys, 0)))


def test_padded_outputs_are_zero_flax_are_not():
    ((_, ys), (_, fys)), _ = ragged_runs()
    pad = ~(jnp.arange(T)[None, :] < LENGTHS[:, None])
    assert float(jnp.abs(ys[pad]).max()) == 0.0
    assert float(jnp.abs(fys[pad]).min()) > 0.0


def test_length_zero_returns_initial_carry_flax_does_not():
    (((c, h), _), ((fc, fh), _)), (c0, h0) = ragged_runs()
    close((c[2], h[2]), (c0[2], h0[2]))
    assert float(jnp.abs(fh[2] - h0[2]).max()) > 1e-3  # Flax reads the carry at index -1: after step T


def test_reverse_without_keep_order_matches_flax():
    layer = make()
    xs, carry = data()
    lengths = jnp.array([6, 3, 1])
    kw = dict(initial_carry=carry, seq_lengths=lengths, reverse=True)
    ys, fys, aligned = jax.jit(
        lambda: (layer(xs, **kw), flax_rnn(layer)(xs, **kw), layer(xs, keep_order=True, **kw))
    )()
    valid = (jnp.arange(T)[None, :] < lengths[:, None])[..., None]
    close(ys, jnp.where(valid, fys, 0))
    close(ys, flip_within(aligned, lengths))


def test_bidirectional_ragged():
    fwd, bwd = make(0), make(1)
    bi = nnx.Bidirectional(fwd, bwd)
    xs, carry = data()
    state = jlstm.LSTMState(carry[1], carry[0])

    @jax.jit
    def both(xs):
        ours = bi(xs, seq_lengths=LENGTHS, initial_carry=(carry, carry), return_carry=True)
        rf, sf = jlstm.lstm(fwd.params, xs, state, lengths=LENGTHS)
        rb, sb = jlstm.lstm(bwd.params, xs, state, lengths=LENGTHS, reverse=True)
        return ours, (((sf.c, sf.h), (sb.c, sb.h)), jnp.concatenate([rf, rb], axis=-1))

    ours, ref = both(xs)
    close(ours, ref)
    ys = ours[1]
    assert float(jnp.abs(ys[2]).max()) == 0.0 and float(jnp.abs(ys[1, 3:]).max()) == 0.0


def loss_of(ys, h, c):
    """Touches the outputs and both parts of the final carry, so every cotangent path is exercised."""
    w = jnp.sin(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
    return jnp.sum(w * ys) + jnp.sum(jnp.cos(h)) + 0.3 * jnp.sum(c**3)


@pytest.mark.parametrize("options", [{}, VARIANTS[0]], ids=["vanilla", "peephole-proj-clip"])
def test_gradients_equal_core(options):
    """nnx.grad through the layer's manual backward == jax.grad through the core's autodiff."""
    layer = make(**options)
    xs, (c0, h0) = data()
    carry = (c0, h0[:, : options.get("proj_size", H)])

    def loss_layer(model, xs):
        (c, h), ys = model(xs, initial_carry=carry, seq_lengths=LENGTHS, return_carry=True)
        return loss_of(ys, h, c)

    def loss_core(params, xs):
        ys, (h, c) = jlstm.lstm(params, xs, (carry[1], carry[0]), lengths=LENGTHS, backward="autodiff")
        return loss_of(ys, h, c)

    g_model, g_xs = nnx.jit(nnx.grad(loss_layer, argnums=(0, 1)))(layer, xs)
    r_params, r_xs = jax.jit(jax.grad(loss_core, argnums=(0, 1)))(layer.params, xs)
    grads = nnx.to_pure_dict(nnx.state(g_model, nnx.Param))["cell"]
    want = to_nnx_layout(r_params) if options else jlstm.interop.to_flax(r_params, layout="nnx_optimized")
    close((grads, g_xs), (want, r_xs), tol=1e-10)  # in Flax's layout


@pytest.mark.parametrize("bidirectional", [False, True])
def test_stacked_equals_core(bidirectional):
    options = VARIANTS[0] if bidirectional else {}  # the layer options reach every layer of the stack
    model = StackedLSTM(D, H, 2, bidirectional=bidirectional, param_dtype=F64, rngs=nnx.Rngs(0), **options)
    xs, (c0, h0) = data()
    one = (c0, h0[:, : options.get("proj_size", H)])
    carries = [(one, one) if bidirectional else one] * 2
    state = jlstm.LSTMState(one[1], one[0])

    @jax.jit
    def both(xs):
        ours = model(xs, initial_carry=carries, seq_lengths=LENGTHS, return_carry=True)
        ref, rfin = jlstm.stacked_lstm(
            model.params,
            xs,
            [(state, state) if bidirectional else state] * 2,
            lengths=LENGTHS,
            bidirectional=bidirectional,
        )
        return ours, (rfin, ref)

    (finals, ys), (rfin, ref) = both(xs)
    flip = lambda s: (s.c, s.h)
    close((finals, ys), ([tuple(map(flip, f)) if bidirectional else flip(f) for f in rfin], ref))
    assert ys.shape == (B, T, options.get("proj_size", H) * (2 if bidirectional else 1))


def test_step_scan_equals_layer():
    layer = make()
    xs, carry = data()

    @jax.jit
    def both(xs):
        (c, h), ys = jax.lax.scan(layer.step, carry, jnp.swapaxes(xs, 0, 1))
        return (c, h, jnp.swapaxes(ys, 0, 1)), layer(xs, initial_carry=carry, return_carry=True)

    (c, h, ys), ((rc, rh), ref) = both(xs)
    close((c, h, ys), (rc, rh, ref))
    zc, zh = layer.initialize_carry((B, D))
    assert zc.shape == zh.shape == (B, H) and not zc.any()


VARIANT_PARAMS = [  # nnx.OptimizedLSTMCell's names, then the variant's own in Flax's style
    {"dense_i", "dense_h", "peephole_i", "peephole_f", "peephole_o", "projection"},
    {"dense_i", "dense_h", "layer_norm_x", "layer_norm_h", "layer_norm_c"},
]


@pytest.mark.parametrize(
    "options,own", list(zip(VARIANTS, VARIANT_PARAMS)), ids=["peephole-proj-clip", "layernorm-CIFG"]
)
def test_variants_hold_their_parameters_and_equal_core(options, own):
    layer = make(**options)
    params = layer.params
    assert isinstance(params, jlstm.CellParams)
    assert params.spec == jlstm.init(jax.random.key(0), D, H, **options).spec
    assert set(nnx.to_pure_dict(nnx.state(layer, nnx.Param))["cell"]) == own
    R = options.get("proj_size", H)
    xs, (c0, h0) = data()

    @jax.jit
    def both(xs):
        ours = layer(xs, initial_carry=(c0, h0[:, :R]), seq_lengths=LENGTHS, return_carry=True)
        return ours, jlstm.lstm(params, xs, (h0[:, :R], c0), lengths=LENGTHS)

    ((c, h), ys), (ref, (rh, rc)) = both(xs)
    close((ys, c, h), (ref, rc, rh))
    assert ys.shape == (B, T, R) and c.shape == (B, H)
    if R != H:  # h of H features where the projection gives R
        with pytest.raises(ValueError, match=r"initial_carry\[1\] \(h\) must be \(3, 2\)"):
            layer(xs, initial_carry=(c0, h0))


def test_dropout_and_zoneout_train_with_the_dropout_stream_and_evaluate_without():
    layer = LSTM(D, H, param_dtype=F64, rngs=nnx.Rngs(params=0, dropout=1), **STOCHASTIC)
    xs, _ = data()
    rd = jlstm.RecurrentDropout(rate=0.3, input_rate=0.2)  # dropout_rate is the core's input_rate
    assert layer.lstm_options(jax.random.key(0))["recurrent_dropout"] == rd

    @nnx.jit
    def run(layer, xs, rngs=None):
        return layer(xs, rngs=rngs)

    # The call's nnx.Rngs 'dropout' stream is the key the core draws its masks from.
    key = nnx.Rngs(dropout=5).dropout()
    train, evaluated = jax.jit(
        lambda: [
            jlstm.lstm(layer.params, xs, zoneout=0.2, recurrent_dropout=rd, key=k)[0] for k in (key, None)
        ]
    )()
    close(run(layer, xs, nnx.Rngs(dropout=5)), train)
    assert not np.allclose(run(layer, xs), run(layer, xs))  # the layer's own stream advances under nnx.jit
    layer.eval()
    close(run(layer, xs), evaluated)


def test_missing_dropout_stream_is_an_error():
    xs, _ = data()
    layer = LSTM(D, H, rngs=nnx.Rngs(params=0), zoneout=0.1)
    with pytest.raises(ValueError, match=r"needs a 'dropout' PRNG stream.*nnx.Rngs\(params=0, dropout=1\)"):
        layer(xs)
    stack = StackedLSTM(D, H, 2, dropout_rate=0.1, rngs=nnx.Rngs(params=0))
    with pytest.raises(ValueError, match=r"StackedLSTM: .*'dropout' PRNG stream"):
        stack(xs)


def test_options_pass_through():
    layer = make(remat=2, dtype=jnp.float32)
    assert make(backward="autodiff").lstm_options()["backward"] == "autodiff"
    xs, _ = data()
    ys, ref = jax.jit(
        lambda xs: (
            layer(xs, seq_lengths=LENGTHS),
            jlstm.lstm(layer.params, xs, lengths=LENGTHS, remat=2, compute_dtype=jnp.float32)[0],
        )
    )(xs)
    assert ys.dtype == jnp.float32
    close(ys, ref, tol=0)


def test_errors_name_the_argument():
    layer = make()
    xs, (c0, h0) = data()
    with pytest.raises(ValueError, match=r"inputs must be .* D = 3 \(in_features\).*got shape \(3, 6, 5\)"):
        layer(jnp.ones((B, T, 5)))
    with pytest.raises(TypeError, match=r"initial_carry is a jlstm.LSTMState.*\(c, h\)"):
        layer(xs, initial_carry=jlstm.LSTMState(h0, c0))
    with pytest.raises(ValueError, match=r"initial_carry\[1\] \(h\) must be \(3, 4\)"):
        layer(xs, initial_carry=(c0, h0[:, :2]))
    with pytest.raises(TypeError, match=r"initial_carry must be a pair \(c, h\)"):
        layer(xs, initial_carry=(c0,))
    with pytest.raises(ValueError, match=r"seq_lengths must be an integer array of the batch shape \(3,\)"):
        layer(xs, seq_lengths=jnp.array([1, 2]))
    with pytest.raises(ValueError, match=r"step: x must be \[\.\.\., D\] with D = 3"):
        layer.step((c0, h0), jnp.ones((B, 2)))
    stack = StackedLSTM(D, H, 2, bidirectional=True, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"initial_carry must hold one carry per layer \(2\)"):
        stack(xs, initial_carry=[((c0, h0), (c0, h0))])
    with pytest.raises(ValueError, match=r"initial_carry\[1\]\[0\]\[1\] \(h\) must be \(3, 4\)"):
        stack(xs, initial_carry=[((c0, h0), (c0, h0)), ((c0, h0[:, :1]), (c0, h0))])


def test_docs_example():
    """The NNX example of docs/layers.md, run as written: the loss falls, orbax round-trips exactly."""
    text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "layers.md").read_text()
    code = re.search(r"<!-- example: nnx -->\n```python\n(.*?)\n```", text, re.S).group(1)
    exec(compile(code, "docs/layers.md[nnx]", "exec"), {"__name__": "docs_example"})
