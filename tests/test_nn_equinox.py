"""jlstm.nn.equinox: the module holds eqx.nn.LSTMCell's fields (names, shapes, gate order, init: the same
key gives the same weights), so a cell's weights move into it and back and the two train step for step the
same; it equals the functional core and a lax.scan of eqx.nn.LSTMCell, per example under vmap and with
leading batch axes, with jlstm's padding semantics; it trains, saves and loads.

Comparisons run in float64 (conftest turns x64 on) at tolerance 1e-12 (gradients against the core's
autodiff 1e-10), each as one jitted function."""

import pathlib
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jlstm
from jlstm.nn.equinox import LSTM, StackedLSTM

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


def make(**kw):
    return LSTM(D, H, dtype=F64, key=jax.random.key(0), **kw)


def data(R=H):
    kx, kh, kc = jax.random.split(jax.random.key(1), 3)
    xs = jax.random.normal(kx, (B, T, D), F64)
    h0, c0 = 0.5 * jax.random.normal(kh, (B, H), F64), 0.5 * jax.random.normal(kc, (B, H), F64)
    return xs, jlstm.LSTMState(h0[:, :R], c0)


FIELDS = ("weight_ih", "weight_hh", "bias")


def test_parameters_and_init_are_equinox_cells():
    """eqx.nn.LSTMCell's fields and, from the same key, its weights (uniform in +-1/sqrt(H)); .params is
    jlstm's layout, as the numpy converter jlstm.interop.from_equinox reads the cell."""
    layer, cell = make(), eqx.nn.LSTMCell(D, H, dtype=F64, key=jax.random.key(0))
    close([getattr(layer, f) for f in FIELDS], [getattr(cell, f) for f in FIELDS], tol=0)
    assert layer.extra == {} and len(jax.tree.leaves(eqx.filter(layer, eqx.is_inexact_array))) == 3
    assert isinstance(layer.params, jlstm.LSTMParams)
    close(layer.params, jlstm.interop.from_equinox(cell), tol=0)
    assert LSTM(D, H, key=jax.random.key(0)).weight_ih.dtype == cell.weight_ih.dtype  # Equinox's default
    no_bias = make(use_bias=False)
    assert no_bias.bias is None and not no_bias.params.b.any()
    close(
        no_bias.weight_ih, eqx.nn.LSTMCell(D, H, use_bias=False, dtype=F64, key=jax.random.key(0)).weight_ih
    )


STEPS = 3


class Tagger(eqx.Module):
    """A small model around a recurrent layer, eqx.nn.LSTMCell in the documented lax.scan or jlstm's:
    Linear(LSTM(x)), one example."""

    lstm: eqx.Module
    head: eqx.nn.Linear

    def __call__(self, xs):
        if isinstance(self.lstm, eqx.nn.LSTMCell):

            def body(state, x):
                state = self.lstm(x, state)
                return state, state[0]

            _, hs = jax.lax.scan(body, (jnp.zeros(H, F64), jnp.zeros(H, F64)), xs)
        else:
            hs, _ = self.lstm(xs)
        return jax.vmap(self.head)(hs)


def test_equinox_cell_weights_move_over_and_train_step_for_step_the_same():
    """A model with eqx.nn.LSTMCell and the same model with jlstm's LSTM: the cell's three fields go into
    ours (eqx.tree_at) and back unchanged, the outputs agree, and 3 SGD steps (optax) give the same
    losses and weights (float64, 1e-12)."""
    head = eqx.nn.Linear(H, 2, dtype=F64, key=jax.random.key(2))
    theirs = Tagger(eqx.nn.LSTMCell(D, H, dtype=F64, key=jax.random.key(1)), head)
    ours = eqx.tree_at(
        lambda m: [getattr(m.lstm, f) for f in FIELDS],
        Tagger(make(), head),
        [getattr(theirs.lstm, f) for f in FIELDS],
    )
    back = eqx.tree_at(
        lambda m: [getattr(m.lstm, f) for f in FIELDS], theirs, [getattr(ours.lstm, f) for f in FIELDS]
    )
    close(back, theirs, tol=0)
    xs, _ = data()
    ys = jnp.sin(jnp.arange(B * T * 2, dtype=F64)).reshape(B, T, 2)
    tx = optax.sgd(0.1)

    @eqx.filter_jit
    def step(model, opt_state):
        loss = lambda m: jnp.mean((jax.vmap(m)(xs) - ys) ** 2)  # noqa: E731
        value, grads = eqx.filter_value_and_grad(loss)(model)
        updates, opt_state = tx.update(grads, opt_state)
        return eqx.apply_updates(model, updates), opt_state, value

    runs = []
    for model in (ours, theirs):
        opt_state, losses = tx.init(eqx.filter(model, eqx.is_inexact_array)), []
        for _ in range(STEPS):
            model, opt_state, value = step(model, opt_state)
            losses.append(value)
        runs.append((losses, [getattr(model.lstm, f) for f in FIELDS], model.head))
    close(runs[0], runs[1])
    assert runs[1][0][-1] < runs[1][0][0]


@pytest.mark.parametrize("reverse", [False, True])
def test_vmap_and_batch_axes_equal_functional_core(reverse):
    layer = make(reverse=reverse)
    xs, state = data()

    @jax.jit
    def runs(xs):
        return (
            jax.vmap(layer)(xs, state, length=LENGTHS),
            layer(xs, state, length=LENGTHS),
            layer(xs[1], (state.h[1], state.c[1]), length=3),
            jlstm.lstm(layer.params, xs, state, lengths=LENGTHS, reverse=reverse),
        )

    vmapped, batched, single, (ref, (rh, rc)) = runs(xs)
    close(vmapped, (ref, (rh, rc)))
    close(batched, (ref, (rh, rc)))  # leading batch axes, no vmap
    close(single, (ref[1], (rh[1], rc[1])))  # one example, length an int
    ys, (h, c) = vmapped
    assert float(jnp.abs(ys[2]).max()) == 0.0 and float(jnp.abs(ys[1, 3:]).max()) == 0.0
    close((h[2], c[2]), (state.h[2], state.c[2]))  # length 0: the initial state


def test_equals_equinox_cell_scan():
    """eqx.nn.LSTMCell (weights from jlstm.interop.to_equinox) in the documented lax.scan."""
    layer = make()
    xs, state = data()
    cell = jlstm.interop.to_equinox(layer.params)

    def run(xs, state):
        def body(state, x):
            state = cell(x, state)
            return state, state[0]

        return jax.lax.scan(body, state, xs)

    @jax.jit
    def both(xs):
        (eh, ec), ehs = jax.vmap(run)(xs, tuple(state))
        return (ehs, (eh, ec)), jax.vmap(layer)(xs, state)

    close(*both(xs))


def test_gradients_equal_core():
    """eqx.filter_grad through the vmapped layer (manual backward) == jax.grad of the core's autodiff."""
    layer = make()
    xs, state = data()

    def loss(ys, h, c):
        w = jnp.sin(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
        return jnp.sum(w * ys) + jnp.sum(jnp.cos(h)) + 0.3 * jnp.sum(c**3)

    @eqx.filter_jit
    @eqx.filter_grad
    def grad_module(model):
        ys, (h, c) = jax.vmap(model)(xs, state, length=LENGTHS)
        return loss(ys, h, c)

    def loss_core(params):
        ys, (h, c) = jlstm.lstm(params, xs, state, lengths=LENGTHS, backward="autodiff")
        return loss(ys, h, c)

    g = grad_module(layer)
    cell = jlstm.interop.to_equinox(jax.jit(jax.grad(loss_core))(layer.params))  # in Equinox's layout
    close([getattr(g, f) for f in FIELDS], [getattr(cell, f) for f in FIELDS], tol=1e-10)


def test_stacked_equals_core():
    """A bidirectional stack of projected peephole cells, vmapped, with a nonzero initial state."""
    model = StackedLSTM(D, H, 2, bidirectional=True, dtype=F64, key=jax.random.key(0), **VARIANTS[0])
    xs, state = data(2)

    @jax.jit
    def both(xs):
        ours = jax.vmap(model)(xs, [(state, state)] * 2, length=LENGTHS)
        return ours, jlstm.stacked_lstm(
            model.params, xs, [(state, state)] * 2, lengths=LENGTHS, bidirectional=True
        )

    ours, ref = both(xs)
    close(ours, ref)
    assert ours[0].shape == (B, T, 4)


def test_step_scan_equals_module():
    layer = make()
    xs, state = data()

    @jax.jit
    def both(xs):
        (h, c), ys = jax.lax.scan(lambda s, x: layer.step(s, x), state, jnp.swapaxes(xs, 0, 1))
        return (jnp.swapaxes(ys, 0, 1), (h, c)), layer(xs, state)

    close(*both(xs))


VARIANT_FIELDS = [  # the variant's own parameters under extra, named in Equinox's style
    {"peephole_i", "peephole_f", "peephole_o", "weight_hr"},
    {"layer_norm_x", "layer_norm_h", "layer_norm_c"},
]


@pytest.mark.parametrize(
    "options,own", list(zip(VARIANTS, VARIANT_FIELDS)), ids=["peephole-proj-clip", "layernorm-CIFG"]
)
def test_variants_hold_their_parameters_and_equal_core(options, own):
    layer = make(**options)
    params = layer.params
    assert isinstance(params, jlstm.CellParams)
    assert params.spec == jlstm.init(jax.random.key(0), D, H, **options).spec
    assert set(layer.extra) == own and layer.weight_ih.shape == params.W.shape[::-1]
    xs, state = data(options.get("proj_size", H))
    ours, ref = jax.jit(
        lambda xs: (
            jax.vmap(layer)(xs, state, length=LENGTHS),
            jlstm.lstm(params, xs, state, lengths=LENGTHS),
        )
    )(xs)
    close(ours, ref)
    assert ours[0].shape == (B, T, options.get("proj_size", H))


def test_dropout_and_zoneout_draw_from_the_key_and_stop_in_inference():
    layer = make(zoneout=0.2, recurrent_dropout=0.3, dropout=0.2)
    xs, _ = data()
    rd = jlstm.RecurrentDropout(rate=0.3, input_rate=0.2)  # Equinox's dropout is the core's input_rate
    key = jax.random.key(7)
    keys = jax.random.split(key, B)
    core = lambda x, k: jlstm.lstm(layer.params, x, zoneout=0.2, recurrent_dropout=rd, key=k)

    @jax.jit
    def runs(xs):
        ours = (
            layer(xs, key=key),
            jax.vmap(layer)(xs, key=keys),
            jax.vmap(eqx.nn.inference_mode(layer))(xs),
            layer(xs, key=key, inference=True),
        )
        return ours, (core(xs, key), jax.vmap(core)(xs, keys), core(xs, None), core(xs, None))

    close(*runs(xs))
    with pytest.raises(ValueError, match=r"needs key=\.\.\.: pass a PRNG key"):
        layer(xs)
    stack = StackedLSTM(D, H, 2, dropout=0.1, key=key)
    with pytest.raises(ValueError, match=r"StackedLSTM: .*needs key="):
        stack(xs)


def test_options_pass_through():
    layer = make(remat=2, compute_dtype=jnp.float32)
    assert make(backward="autodiff").lstm_options()["backward"] == "autodiff"
    xs, _ = data()
    (ys, _), ref = jax.jit(
        lambda xs: (
            layer(xs, length=LENGTHS),
            jlstm.lstm(layer.params, xs, lengths=LENGTHS, remat=2, compute_dtype=jnp.float32)[0],
        )
    )(xs)
    assert ys.dtype == jnp.float32
    close(ys, ref, tol=0)


def test_errors_name_the_argument():
    layer = make()
    xs, state = data()
    with pytest.raises(
        ValueError, match=r"xs must be \[\.\.\., T, D\] with D = 3 \(input_size\).*got shape \(6, 5\)"
    ):
        layer(jnp.ones((T, 5)))
    with pytest.raises(ValueError, match=r"state\[1\] \(c\) must be \(4,\)"):
        layer(xs[0], (state.h[0], state.c[0, :2]))
    with pytest.raises(TypeError, match=r"state must be a pair \(h, c\)"):
        layer(xs[0], state.h[0])
    with pytest.raises(ValueError, match=r"length must be an integer array of the batch shape \(\)"):
        layer(xs[0], length=jnp.array([3]))


def test_docs_example():
    """The Equinox example of docs/layers.md, run as written: the loss falls, serialisation round-trips."""
    text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "layers.md").read_text()
    code = re.search(r"<!-- example: equinox -->\n```python\n(.*?)\n```", text, re.S).group(1)
    exec(compile(code, "docs/layers.md[equinox]", "exec"), {"__name__": "docs_example"})
