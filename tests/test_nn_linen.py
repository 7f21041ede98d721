"""jlstm.nn.linen: the module holds nn.RNN(nn.OptimizedLSTMCell)'s parameter tree (names, shapes, gate
order, initialisers), so the Flax LSTM's variables apply to it unchanged and the two train step for step
the same; it equals the functional core and nn.RNN(OptimizedLSTMCell) where their semantics agree, keeps
jlstm's padding semantics (also inside nn.Bidirectional), trains, saves and loads.

Comparisons run in float64 (conftest turns x64 on) at tolerance 1e-12 (gradients against the core's
autodiff 1e-10), each as one jitted function."""

import functools
import pathlib
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jlstm
from jlstm.nn.linen import LSTM, StackedLSTM

D, H, B, T = 3, 4, 3, 6
F64 = jnp.float64
LENGTHS = jnp.array([6, 3, 0])
VARIANTS = [
    dict(peephole=True, proj_size=2, cell_clip=3.0, proj_clip=0.5),
    dict(layer_norm=True, variant="CIFG"),
]


def close(a, b, tol=1e-12):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol, atol=tol)


def data():
    kx, kh, kc = jax.random.split(jax.random.key(1), 3)
    xs = jax.random.normal(kx, (B, T, D), F64)
    return xs, (0.5 * jax.random.normal(kc, (B, H), F64), 0.5 * jax.random.normal(kh, (B, H), F64))


def setup(**kw):
    model = LSTM(H, param_dtype=F64, **kw)
    xs, carry = data()
    variables = model.init(jax.random.key(0), xs)
    return model, variables, xs, carry


def flax_rnn(params):
    """nn.RNN(OptimizedLSTMCell) and its variables holding ``params`` (via jlstm.interop)."""
    return nn.RNN(nn.OptimizedLSTMCell(H, param_dtype=F64)), {
        "params": {"cell": jlstm.interop.to_flax(params)}
    }


@functools.cache
def ragged_runs():
    """Ours and nn.RNN's outputs and carries on the ragged batch (lengths 6, 3, 0), nonzero carry."""
    model, variables, xs, carry = setup()
    rnn, fv = flax_rnn(model.bind(variables).params)
    kw = dict(initial_carry=carry, seq_lengths=LENGTHS, return_carry=True)
    return jax.jit(lambda: (model.apply(variables, xs, **kw), rnn.apply(fv, xs, **kw)))(), carry


def test_parameters_are_flax_lstms():
    """The tree of nn.RNN(nn.OptimizedLSTMCell) (params/cell/ii/kernel, ...); .params is jlstm's layout, as
    the numpy converter jlstm.interop.from_flax reads the same tree."""
    model, variables, xs, _ = setup()
    theirs = jax.eval_shape(nn.RNN(nn.OptimizedLSTMCell(H, param_dtype=F64)).init, jax.random.key(0), xs)
    assert jax.tree.map(jnp.shape, variables) == jax.tree.map(jnp.shape, theirs)
    params = model.bind(variables).params
    assert isinstance(params, jlstm.LSTMParams)
    close(params, jlstm.interop.from_flax(variables), tol=0)


def test_init_is_flax_lstms():
    """lecun_normal input kernels, orthogonal recurrent kernels (one per gate: U_g^T U_g = I), zero biases,
    as nn.OptimizedLSTMCell; the initialiser attributes reach them."""
    Dk, Hk = 48, 8

    def init(model, D):  # one step makes the parameters; one compile
        x = jnp.ones((1, D), F64)
        return jax.jit(model.init, static_argnames="method")(
            jax.random.key(0), model.initialize_carry((1, D)), x, method=LSTM.step
        )["params"]["cell"]

    cell = init(LSTM(Hk, param_dtype=F64), Dk)
    for g in "ifgo":
        U, W = cell[f"h{g}"]["kernel"], cell[f"i{g}"]["kernel"]
        close(U.T @ U, jnp.eye(Hk))
        assert abs(float(W.std()) * Dk**0.5 - 1) < 0.15 and not cell[f"h{g}"]["bias"].any()  # n = 384
    cell = init(
        LSTM(H, kernel_init=nn.initializers.zeros, bias_init=nn.initializers.ones, param_dtype=F64), D
    )
    assert not cell["ii"]["kernel"].any() and (cell["hf"]["bias"] == 1).all()


STEPS = 3


class Tagger(nn.Module):
    """A small model around a recurrent layer, the Flax LSTM's or jlstm's: Dense(LSTM(x))."""

    lstm: nn.Module

    @nn.compact
    def __call__(self, xs, lengths):
        return nn.Dense(2, param_dtype=F64)(self.lstm(xs, seq_lengths=lengths))


def test_flax_lstm_checkpoint_applies_and_trains_step_for_step_the_same():
    """A model with nn.RNN(nn.OptimizedLSTMCell) and the same model with jlstm's LSTM: the Flax model's
    variables apply to ours unchanged, the outputs agree on the valid steps, and 3 SGD steps (optax) give
    the same losses and parameters (float64: the same maths in another order, 1e-12)."""
    xs, _ = data()
    lengths = jnp.array([6, 3, 1])
    valid = (jnp.arange(T)[None, :] < lengths[:, None])[..., None]
    ys = jnp.sin(jnp.arange(B * T * 2, dtype=F64)).reshape(B, T, 2)
    theirs = Tagger(nn.RNN(nn.OptimizedLSTMCell(H, param_dtype=F64)))
    ours = Tagger(LSTM(H, param_dtype=F64))
    variables = theirs.init(jax.random.key(3), xs, lengths)
    tx = optax.sgd(0.1)

    def train(model):
        def loss(params):
            err = jnp.where(valid, model.apply({"params": params}, xs, lengths) - ys, 0)
            return jnp.sum(err**2) / jnp.sum(valid)

        @jax.jit
        def step(params, opt_state):
            value, grads = jax.value_and_grad(loss)(params)
            updates, opt_state = tx.update(grads, opt_state)
            return optax.apply_updates(params, updates), opt_state, value

        params, opt_state, losses = variables["params"], tx.init(variables["params"]), []
        for _ in range(STEPS):
            params, opt_state, value = step(params, opt_state)
            losses.append(value)
        return losses, params

    (ours_losses, ours_params), (their_losses, their_params) = train(ours), train(theirs)
    close(ours_losses, their_losses)
    close(ours_params, their_params)
    assert their_losses[-1] < their_losses[0]


@pytest.mark.parametrize(
    "reverse,keep_order,time_major", [(False, False, False), (True, True, True), (True, False, False)]
)
def test_outputs_and_carry_equal_functional_core(reverse, keep_order, time_major):
    model, variables, xs, (c0, h0) = setup()
    params = model.bind(variables).params

    @jax.jit
    def both(xs):
        inputs = jnp.swapaxes(xs, 0, 1) if time_major else xs
        kw = dict(reverse=reverse, keep_order=keep_order, time_major=time_major, return_carry=True)
        (c, h), ys = model.apply(variables, inputs, initial_carry=(c0, h0), seq_lengths=LENGTHS, **kw)
        ys = jnp.swapaxes(ys, 0, 1) if time_major else ys
        if reverse and not keep_order:
            ys = nn.recurrent.flip_sequences(ys, LENGTHS, num_batch_dims=1, time_major=False)
        ref, (rh, rc) = jlstm.lstm(params, xs, (h0, c0), lengths=LENGTHS, reverse=reverse)
        return (ys, c, h), (ref, rc, rh)

    close(*both(xs))


@pytest.mark.parametrize("reverse,keep_order", [(False, False), (True, False)])
def test_equals_flax_rnn(reverse, keep_order):
    """Without padding the semantics agree exactly; with lengths >= 1, on the valid steps and carries."""
    model, variables, xs, carry = setup()
    rnn, fv = flax_rnn(model.bind(variables).params)
    lengths = jnp.array([6, 3, 1])
    kw = dict(initial_carry=carry, return_carry=True, reverse=reverse, keep_order=keep_order)

    @jax.jit
    def runs(xs):
        return [
            (model.apply(variables, xs, seq_lengths=n, **kw), rnn.apply(fv, xs, seq_lengths=n, **kw))
            for n in (None, lengths)
        ]

    plain, (((c, h), ys), ((fc, fh), fys)) = runs(xs)
    close(*plain)
    valid = (jnp.arange(T)[None, :] < lengths[:, None])[..., None]
    close((c, h, ys), (fc, fh, jnp.where(valid, fys, 0)))


def test_padded_outputs_are_zero_flax_are_not():
    ((_, ys), (_, fys)), _ = ragged_runs()
    pad = ~(jnp.arange(T)[None, :] < LENGTHS[:, None])
    assert float(jnp.abs(ys[pad]).max()) == 0.0 and float(jnp.abs(fys[pad]).min()) > 0.0


def test_length_zero_returns_initial_carry_flax_does_not():
    (((c, h), _), ((fc, fh), _)), (c0, h0) = ragged_runs()
    close((c[2], h[2]), (c0[2], h0[2]))
    assert float(jnp.abs(fh[2] - h0[2]).max()) > 1e-3


def test_bidirectional_ragged():
    bi = nn.Bidirectional(LSTM(H, param_dtype=F64), LSTM(H, param_dtype=F64), return_carry=True)
    xs, carry = data()
    variables = bi.init(jax.random.key(0), xs, seq_lengths=LENGTHS)
    p = {k: jlstm.interop.from_flax(v) for k, v in variables["params"].items()}
    state = jlstm.LSTMState(carry[1], carry[0])

    @jax.jit
    def both(xs):
        (cf, cb), ys = bi.apply(variables, xs, seq_lengths=LENGTHS, initial_carry=(carry, carry))
        rf, sf = jlstm.lstm(p["forward_rnn"], xs, state, lengths=LENGTHS)
        rb, sb = jlstm.lstm(p["backward_rnn"], xs, state, lengths=LENGTHS, reverse=True)
        return (ys, cf, cb), (jnp.concatenate([rf, rb], axis=-1), (sf.c, sf.h), (sb.c, sb.h))

    close(*both(xs))


def test_gradients_equal_core():
    """jax.grad through apply (the manual backward) == jax.grad through the core's autodiff."""
    model, variables, xs, carry = setup()

    def loss(ys, h, c):
        w = jnp.sin(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
        return jnp.sum(w * ys) + jnp.sum(jnp.cos(h)) + 0.3 * jnp.sum(c**3)

    def loss_module(variables, xs):
        (c, h), ys = model.apply(variables, xs, initial_carry=carry, seq_lengths=LENGTHS, return_carry=True)
        return loss(ys, h, c)

    def loss_core(params, xs):
        ys, (h, c) = jlstm.lstm(params, xs, (carry[1], carry[0]), lengths=LENGTHS, backward="autodiff")
        return loss(ys, h, c)

    g_vars, g_xs = jax.jit(jax.grad(loss_module, argnums=(0, 1)))(variables, xs)
    r_params, r_xs = jax.jit(jax.grad(loss_core, argnums=(0, 1)))(model.bind(variables).params, xs)
    close(
        (g_vars["params"]["cell"], g_xs), (jlstm.interop.to_flax(r_params), r_xs), tol=1e-10
    )  # Flax's layout


def test_stacked_equals_core():
    """A bidirectional stack of projected peephole cells with a nonzero initial carry."""
    model = StackedLSTM(H, 2, bidirectional=True, param_dtype=F64, return_carry=True, **VARIANTS[0])
    xs, (c0, h0) = data()
    carry = (c0, h0[:, :2])
    variables = model.init(jax.random.key(0), xs)
    assert set(variables["params"]) == {"layers_0", "layers_0_backward", "layers_1", "layers_1_backward"}
    layers = model.bind(variables).params
    assert isinstance(layers[1][0], jlstm.CellParams) and layers[1][0].input_size == 4  # 2 directions x R = 2
    state = jlstm.LSTMState(carry[1], carry[0])

    @jax.jit
    def both(xs):
        ours = model.apply(variables, xs, seq_lengths=LENGTHS, initial_carry=[(carry, carry)] * 2)
        ref, rfin = jlstm.stacked_lstm(layers, xs, [(state, state)] * 2, lengths=LENGTHS, bidirectional=True)
        return ours, ([((f.c, f.h), (b.c, b.h)) for f, b in rfin], ref)

    ours, ref = both(xs)
    close(ours, ref)
    assert ours[1].shape == (B, T, 4)


def test_step_scan_equals_module():
    model, variables, xs, carry = setup()

    @jax.jit
    def both(xs):
        step = lambda carry, x: model.apply(variables, carry, x, method=LSTM.step)
        (c, h), ys = jax.lax.scan(step, carry, jnp.swapaxes(xs, 0, 1))
        return (c, h, jnp.swapaxes(ys, 0, 1)), model.apply(
            variables, xs, initial_carry=carry, return_carry=True
        )

    (c, h, ys), ((rc, rh), ref) = both(xs)
    close((c, h, ys), (rc, rh, ref))


# The Flax names: a kernel per gate the variant keeps (CIFG: no forget gate), then its own parameters.
VARIANT_PARAMS = [
    {"ii", "if", "ig", "io", "hi", "hf", "hg", "ho", "peephole_i", "peephole_f", "peephole_o", "projection"},
    {"ii", "ig", "io", "hi", "hg", "ho", "layer_norm_x", "layer_norm_h", "layer_norm_c"},
]


@pytest.mark.parametrize(
    "options,own", list(zip(VARIANTS, VARIANT_PARAMS)), ids=["peephole-proj-clip", "layernorm-CIFG"]
)
def test_variants_hold_their_parameters_and_equal_core(options, own):
    model, variables, xs, (c0, h0) = setup(**options)
    params = model.bind(variables).params
    assert isinstance(params, jlstm.CellParams)
    assert params.spec == jlstm.init(jax.random.key(0), D, H, **options).spec
    assert set(variables["params"]["cell"]) == own
    R = options.get("proj_size", H)
    carry = (c0, h0[:, :R])

    @jax.jit
    def both(xs):
        ours = model.apply(variables, xs, initial_carry=carry, seq_lengths=LENGTHS, return_carry=True)
        return ours, jlstm.lstm(params, xs, (carry[1], carry[0]), lengths=LENGTHS)

    ((c, h), ys), (ref, (rh, rc)) = both(xs)
    close((ys, c, h), (ref, rc, rh))
    assert ys.shape == (B, T, R)


def test_dropout_and_zoneout_use_the_dropout_rng_and_deterministic():
    model = LSTM(H, param_dtype=F64, zoneout=0.2, recurrent_dropout=0.3, dropout_rate=0.2)
    xs, _ = data()
    variables = model.init(jax.random.key(0), xs, deterministic=True)  # flax: say it, as for nn.Dropout
    rd = jlstm.RecurrentDropout(rate=0.3, input_rate=0.2)  # dropout_rate is the core's input_rate
    assert model.lstm_options(jax.random.key(0))["recurrent_dropout"] == rd

    @jax.jit
    def runs(variables):
        train = [
            model.apply(variables, xs, deterministic=False, rngs={"dropout": jax.random.key(k)})
            for k in (1, 2, 1)
        ]
        evaluated = model.apply(variables, xs, deterministic=True)
        return (
            train,
            evaluated,
            jlstm.lstm(model.bind(variables).params, xs, zoneout=0.2, recurrent_dropout=rd)[0],
        )

    (a, b, a2), evaluated, ref = runs(variables)
    assert not np.allclose(a, b)
    close(a, a2, tol=0)
    close(evaluated, ref)
    with pytest.raises(ValueError, match=r"needs the 'dropout' rng: pass rngs=\{'dropout': key\}"):
        model.apply(variables, xs, deterministic=False)
    stack = StackedLSTM(H, 2, dropout_rate=0.1, deterministic=False)
    with pytest.raises(ValueError, match=r"StackedLSTM: .*'dropout' rng"):
        stack.init(jax.random.key(0), xs)


def test_options_pass_through():
    model, variables, xs, _ = setup(remat=2, dtype=jnp.float32)
    assert LSTM(H, backward="autodiff").lstm_options()["backward"] == "autodiff"

    @jax.jit
    def both(xs):
        params = model.bind(variables).params
        return model.apply(variables, xs, seq_lengths=LENGTHS), jlstm.lstm(
            params, xs, lengths=LENGTHS, remat=2, compute_dtype=jnp.float32
        )[0]

    ys, ref = both(xs)
    assert ys.dtype == jnp.float32
    close(ys, ref, tol=0)


def test_errors_name_the_argument():
    model, variables, xs, (c0, h0) = setup()
    with pytest.raises(
        ValueError, match=r"inputs must have D = 3 features .*input kernels, cell/ii/kernel \(3, 4\)\); got 5"
    ):
        model.apply(variables, jnp.ones((B, T, 5)))
    with pytest.raises(TypeError, match=r"initial_carry is a jlstm.LSTMState.*\(c, h\)"):
        model.apply(variables, xs, initial_carry=jlstm.LSTMState(h0, c0))
    with pytest.raises(ValueError, match=r"initial_carry\[0\] \(c\) must be \(3, 4\)"):
        model.apply(variables, xs, initial_carry=(c0[:, :1], h0))
    with pytest.raises(ValueError, match=r"seq_lengths must be an integer array"):
        model.apply(variables, xs, seq_lengths=jnp.array([1.0, 2.0, 3.0]))


def test_docs_example():
    """The linen example of docs/layers.md, run as written: the loss falls, msgpack round-trips exactly."""
    text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "layers.md").read_text()
    code = re.search(r"<!-- example: linen -->\n```python\n(.*?)\n```", text, re.S).group(1)
    exec(compile(code, "docs/layers.md[linen]", "exec"), {"__name__": "docs_example"})
