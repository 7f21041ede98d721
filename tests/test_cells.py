"""Every cell variant's hand-written backward against autodiff through the same forward, in float64."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jlstm
from jlstm.cells.family import family_cell
from jlstm.core.interface import Cell
from jlstm.core.vanilla import VANILLA

D, H = 3, 5
TOL = 1e-10
OPTIONS = {
    "peephole": dict(peephole=True),
    "projection": dict(proj_size=2),
    "cell_clip": dict(cell_clip=0.4),
    "proj_clip": dict(proj_size=2, proj_clip=0.2),
    "layer_norm": dict(layer_norm=True),
    **{v: dict(variant=v, peephole=True) for v in ("NIG", "NFG", "NOG", "NIAF", "NOAF", "CIFG")},
    "combined": dict(peephole=True, proj_size=2, layer_norm=True, cell_clip=0.8, proj_clip=0.5),
}
STOCHASTIC = {
    "none": {},
    "zoneout": dict(zoneout=(0.3, 0.2)),
    "dropout": dict(recurrent_dropout=jlstm.RecurrentDropout(0.3, 0.2)),
    "tied+dropconnect": dict(recurrent_dropout=jlstm.RecurrentDropout(0.3, 0.2, tied=True, dropconnect=0.1)),
    "zoneout+dropout": dict(zoneout=0.25, recurrent_dropout=0.3),
}


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def rel_err(a, b):
    return max(
        float(jnp.max(jnp.abs(x - y)) / (jnp.max(jnp.abs(y)) + 1e-300))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


def problem(seed, options, batch, T):
    k = jax.random.split(jax.random.key(seed), 8)
    params = jlstm.init(k[0], D, H, dtype=jnp.float64, **options)
    # Perturb every leaf, so peepholes, gains and biases are all away from their initial values.
    params = jax.tree.map(lambda a: a + 0.3 * jax.random.normal(k[1], a.shape, a.dtype), params)
    R = options.get("proj_size") or H
    xs = jax.random.normal(k[2], batch + (T, D))
    carry = (jax.random.normal(k[3], batch + (R,)), jax.random.normal(k[4], batch + (H,)))
    lengths = jax.random.randint(k[5], batch, 0, T + 1)
    w = jax.random.normal(k[6], batch + (T, R))
    return params, xs, carry, lengths, w


def grads(params, xs, carry, w, backward, **kw):
    def loss(p, x, c):
        hs, (h, c_T) = jlstm.lstm(p, x, c, backward=backward, **kw)
        return jnp.sum(hs * w) + jnp.sum(jnp.sin(h)) + jnp.sum(c_T**2)  # cotangents on hs, h_T and c_T

    return jax.grad(loss, argnums=(0, 1, 2))(params, xs, carry)


def manual_vs_autodiff(options, stochastic=None, *, seed=0, batch=(3,), T=6, reverse=False, remat=None):
    params, xs, carry, lengths, w = problem(seed, options, batch, T)
    kw = dict(lengths=lengths, reverse=reverse, **(stochastic or {}))
    if stochastic:
        kw["key"] = jax.random.key(seed + 100)
    g_m = grads(params, xs, carry, w, "manual", remat=remat, **kw)
    g_a = grads(params, xs, carry, w, "autodiff", **kw)
    return rel_err(g_m, g_a)


@pytest.mark.parametrize("name", OPTIONS)
@pytest.mark.parametrize("batch", [(), (3,), (2, 2)])
def test_each_variant_manual_equals_autodiff(name, batch):
    assert manual_vs_autodiff(OPTIONS[name], batch=batch, reverse=batch == (2, 2)) <= TOL


@pytest.mark.parametrize("name", ["none", "zoneout", "dropout", "tied+dropconnect", "zoneout+dropout"])
def test_stochastic_options_manual_equals_autodiff_in_training(name):
    for options in ({}, OPTIONS["combined"]):
        assert manual_vs_autodiff(options, STOCHASTIC[name], reverse=True) <= TOL


@pytest.mark.parametrize("name", ["zoneout", "zoneout+dropout"])
def test_evaluation_mode_manual_equals_autodiff(name):
    params, xs, carry, lengths, w = problem(1, OPTIONS["peephole"], (2,), 5)
    kw = dict(lengths=lengths, **STOCHASTIC[name])  # no key: evaluation mode, zoneout's expectation
    assert (
        rel_err(grads(params, xs, carry, w, "manual", **kw), grads(params, xs, carry, w, "autodiff", **kw))
        <= TOL
    )


@pytest.mark.parametrize("remat", [1, 4])
def test_remat_with_variants(remat):
    assert manual_vs_autodiff(OPTIONS["combined"], STOCHASTIC["zoneout+dropout"], T=7, remat=remat) <= TOL


@settings(max_examples=10, deadline=None)
@given(
    picks=st.lists(st.sampled_from(sorted(OPTIONS)), min_size=1, max_size=3, unique=True),
    stochastic=st.sampled_from(sorted(STOCHASTIC)),
    batch=st.sampled_from([(), (2,), (2, 1)]),
    T=st.integers(1, 5),
    reverse=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_property_random_combinations(picks, stochastic, batch, T, reverse, seed):
    options = {}
    for name in picks:
        if "variant" in OPTIONS[name] and "variant" in options:
            continue  # one Greff variant at a time
        options |= OPTIONS[name]
    err = manual_vs_autodiff(options, STOCHASTIC[stochastic], seed=seed, batch=batch, T=T, reverse=reverse)
    assert err <= TOL, (options, stochastic)


def test_zoneout_masks_change_every_step_and_a_reused_mask_is_caught():
    params, xs, carry, lengths, w = problem(2, {}, (4,), 6)
    kw = dict(zoneout=(0.5, 0.5), key=jax.random.key(3))
    good = rel_err(grads(params, xs, carry, w, "manual", **kw), grads(params, xs, carry, w, "autodiff", **kw))
    assert good <= TOL
    # A cell whose backward ignores the step's own mask (haste's GRU bug: one step's mask at every step)
    # must disagree with autodiff: the comparison sees it.
    from jlstm.cells import zoneout

    cell = family_cell(jlstm.CellSpec(), (0.5, 0.5))
    noise = zoneout.draw(jax.random.key(3), (0.5, 0.5), 6, 4, H, H, jnp.float64)
    assert not bool(jnp.all(noise["c"][0] == noise["c"][1]))  # a fresh mask for every step
    step0 = jax.tree.map(lambda m: m[0], noise)

    def reusing(theta, res, c_prev, c, g_h, dh, dc, noise):
        return cell.backward(theta, res, c_prev, c, g_h, dh, dc, step0)

    cp = jlstm.CellParams(*params, {}, Cell(cell.name, cell.num_gates, cell.forward, reusing))
    g_wrong = _grads_with_noise(cp, xs, carry, w, noise)
    g_right = _grads_with_noise(jlstm.CellParams(*params, {}, cell), xs, carry, w, noise)
    assert rel_err(g_wrong, g_right) > 1e-3


def _grads_with_noise(cp, xs, carry, w, noise):
    from jlstm.core import prepare as _prep
    from jlstm.core import sequence as _seq

    def loss(p, x, c):
        prep = _prep.prepare(x, c, None, cell=p.spec, D=D, H=H, R=H, dtype=jnp.float64, where="test")
        hs, (h, c_T) = _seq.run(p.spec, _seq.Weights(p.W, p.U, p.b, {}), prep, noise=noise)
        return jnp.sum(hs * w) + jnp.sum(jnp.sin(h)) + jnp.sum(c_T**2)

    return jax.grad(loss, argnums=(0, 1, 2))(cp, xs, carry)


def test_the_source_cell_equals_the_family_cell_without_options():
    params, xs, carry, lengths, w = problem(4, {}, (3,), 6)
    fam = jlstm.CellParams(*params, {}, family_cell(jlstm.CellSpec()))
    for bw in ("manual", "autodiff"):
        out_v = jlstm.lstm(params, xs, carry, lengths=lengths, backward=bw)
        out_f = jlstm.lstm(fam, xs, carry, lengths=lengths, backward=bw)
        assert rel_err(out_f, out_v) <= 1e-14
        g_v, g_f = grads(params, xs, carry, w, bw), grads(fam, xs, carry, w, bw)
        assert (
            rel_err((g_f[0].W, g_f[0].U, g_f[0].b, *g_f[1:]), (g_v[0].W, g_v[0].U, g_v[0].b, *g_v[1:]))
            <= 1e-13
        )
    assert VANILLA.num_gates == 4


def test_projection_shapes_and_padding():
    params, xs, carry, lengths, _ = problem(5, OPTIONS["projection"], (3,), 6)
    hs, (h, c) = jlstm.lstm(params, xs, carry, lengths=jnp.array([0, 3, 6]))
    assert hs.shape == (3, 6, 2) and h.shape == (3, 2) and c.shape == (3, H)
    np.testing.assert_array_equal(hs[1, 3:], 0)  # padded steps output zero
    np.testing.assert_array_equal(h[0], carry[0][0])  # length 0: the initial carry
    np.testing.assert_array_equal(c[0], carry[1][0])


def test_greff_variants_remove_parameter_blocks():
    for v, G in (("NIG", 3), ("NFG", 3), ("NOG", 3), ("CIFG", 3), ("NIAF", 4), ("NOAF", 4)):
        p = jlstm.init(jax.random.key(0), D, H, variant=v, peephole=True)
        assert p.W.shape == (D, G * H) and p.U.shape == (H, G * H) and p.b.shape == (G * H,)
        assert set(p.extra) == {f"p_{g}" for g in p.spec.gates if g != "a"}
    assert jlstm.init(jax.random.key(0), D, H).__class__ is jlstm.LSTMParams  # no option: as before


def test_clip_gradient_passes_at_an_exact_tie():
    # One step from c0 = 0: c = a * i. Set cell_clip to exactly |c|: a tie, where TF's convention (and
    # jlstm's) passes the whole gradient; jnp.clip's autodiff would pass half of it.
    free = jlstm.init(jax.random.key(0), D, 1, cell_clip=1e6, dtype=jnp.float64)
    xs = jax.random.normal(jax.random.key(1), (1, D))

    def c_final(b, spec, bw):
        return jlstm.lstm(jlstm.CellParams(free.W, free.U, b, {}, spec), xs, backward=bw)[1].c[0]

    v = float(c_final(free.b, free.spec, "manual"))
    tie = jlstm.CellSpec(cell_clip=abs(v))
    below = jlstm.CellSpec(cell_clip=abs(v) * 0.999)
    assert float(c_final(free.b, tie, "manual")) == v
    g_free = jax.grad(c_final)(free.b, free.spec, "manual")
    for bw in ("manual", "autodiff"):
        np.testing.assert_allclose(jax.grad(c_final)(free.b, tie, bw), g_free, rtol=1e-12)
        np.testing.assert_array_equal(jax.grad(c_final)(free.b, below, bw), 0)
    assert float(jnp.max(jnp.abs(g_free))) > 1e-3


def test_trace_and_jit_vmap_with_a_variant():
    params, xs, carry, lengths, w = problem(6, OPTIONS["combined"], (3,), 5)
    g_final = (jnp.ones((3, 2)), jnp.ones((3, H)))
    dparams, dxs, dcarry, tr = jlstm.lstm_trace(params, xs, w, carry, g_final, lengths=lengths)

    def loss(p, x, c):
        hs, (h, c_T) = jlstm.lstm(p, x, c, lengths=lengths, backward="autodiff")
        return jnp.sum(hs * w) + jnp.sum(h) + jnp.sum(c_T)

    g_p, g_x, g_c = jax.grad(loss, argnums=(0, 1, 2))(params, xs, carry)
    assert rel_err((dparams, dxs, tuple(dcarry)), (g_p, g_x, g_c)) <= TOL
    assert tr.delta_gates.shape == (3, 5, 4 * H) and tr.delta_out.shape == (3, 5, 2)
    f = jax.jit(functools.partial(jlstm.lstm, lengths=lengths))
    assert rel_err(f(params, xs, carry), jlstm.lstm(params, xs, carry, lengths=lengths)) <= 1e-14
    one = jax.vmap(lambda x, c, n: jlstm.lstm(params, x, c, lengths=n))(xs, carry, lengths)
    assert rel_err(one, jlstm.lstm(params, xs, carry, lengths=lengths)) <= 1e-14


def test_stacks_and_tbptt_with_variants():
    opts = dict(bidirectional=True, dtype=jnp.float64, peephole=True, proj_size=2)
    layers = jlstm.init_stacked(jax.random.key(0), D, H, 2, **opts)
    xs = jax.random.normal(jax.random.key(1), (3, 6, D))
    lengths = jnp.array([6, 2, 0])

    def loss(ls, bw):
        hs, _ = jlstm.stacked_lstm(ls, xs, lengths=lengths, bidirectional=True, backward=bw, zoneout=0.2)
        return jnp.sum(jnp.sin(hs))

    assert rel_err(jax.grad(loss)(layers, "manual"), jax.grad(loss)(layers, "autodiff")) <= TOL
    params = jlstm.init(jax.random.key(2), D, H, layer_norm=True, dtype=jnp.float64)
    ys = jax.random.normal(jax.random.key(3), (2, 6, H))

    def chunk_loss(p, seqs, carry):
        x, y = seqs
        hs, final = jlstm.lstm(p, x, carry)
        return jnp.mean((hs - y) ** 2), final

    x2 = jax.random.normal(jax.random.key(4), (2, 6, D))
    c0 = jlstm.LSTMState(jnp.zeros((2, H)), jnp.zeros((2, H)))
    loss1, g1, _ = jlstm.tbptt_value_and_grad(chunk_loss, params, (x2, ys), c0, chunk=6)
    g_full = jax.grad(lambda p: chunk_loss(p, (x2, ys), c0)[0])(params)
    assert rel_err(g1, g_full) <= TOL


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(proj_size=5), r"proj_size must be smaller than hidden_size = 5"),
        (
            dict(variant="NXG"),
            r"variant must be None or one of \('NIG', 'NFG', 'NOG', 'NIAF', 'NOAF', 'CIFG'\)",
        ),
        (dict(cell_clip=0.0), r"cell_clip must be None or a positive number; got 0.0"),
        (dict(proj_clip=-1.0, proj_size=2), r"proj_clip must be None or a positive number"),
        (dict(proj_clip=1.0), r"proj_clip clips the projection; it needs proj_size"),
        (dict(peephole=1), r"peephole must be a bool"),
    ],
)
def test_init_errors_name_the_argument(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        jlstm.init(jax.random.key(0), D, H, **kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(zoneout=1.0), r"zoneout rates must lie in \[0, 1\)"),
        (dict(zoneout=(0.1, -0.1)), r"zoneout rates must lie in \[0, 1\)"),
        (dict(zoneout="high"), r"zoneout must be a rate p or a pair"),
        (dict(recurrent_dropout=1.5), r"recurrent_dropout.rate must lie in \[0, 1\)"),
        (
            dict(recurrent_dropout=jlstm.RecurrentDropout(0.1, dropconnect=1.0)),
            r"recurrent_dropout.dropconnect",
        ),
        (dict(zoneout=0.1, training=True), r"training=True with zoneout or recurrent_dropout needs key="),
    ],
)
def test_lstm_option_errors_name_the_argument(kwargs, message):
    params = jlstm.init(jax.random.key(0), D, H, peephole=True)
    with pytest.raises(ValueError, match=message):
        jlstm.lstm(params, jnp.ones((2, 4, D)), **kwargs)


def test_wrong_extra_shapes_are_named():
    p = jlstm.init(jax.random.key(0), D, H, peephole=True)
    bad = jlstm.CellParams(p.W, p.U, p.b, p.extra | {"p_o": jnp.ones(H + 1)}, p.spec)
    with pytest.raises(ValueError, match=r"params p_o must have shape \(5,\)"):
        jlstm.lstm(bad, jnp.ones((2, 4, D)))
    with pytest.raises(ValueError, match=r"zoneout is built into jlstm's own cells"):
        jlstm.lstm(jlstm.CellParams(p.W, p.U, p.b, {}, VANILLA), jnp.ones((2, 4, D)), zoneout=0.1)
