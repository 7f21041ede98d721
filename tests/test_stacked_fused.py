"""Bidirectional stacks run both directions of a layer as one scan (vmap over stacked parameters): the
same outputs, final carries and gradients as two ``jlstm.lstm`` calls per layer, in float64."""

import functools

import jax
import jax.numpy as jnp
import pytest
from helpers import rel_err

import jlstm

D, H, T = 3, 4, 6


def reference(layers, xs, carries=None, *, lengths=None, dropout=0.0, key=None, **kw):
    """The two-call path: per layer ``lstm`` forward and ``lstm(reverse=True)``, keys as stacked_lstm
    derives them (one split per layer: dropout, forward, backward)."""
    keys = None if key is None else jax.random.split(key, (len(layers), 3))
    h, finals = xs, []
    for n, (fwd, bwd) in enumerate(layers):
        lk = (None, None, None) if keys is None else keys[n]
        if n > 0 and dropout > 0.0:
            keep = jax.random.bernoulli(lk[0], 1.0 - dropout, h.shape)
            h = jnp.where(keep, h / (1.0 - dropout), 0).astype(h.dtype)
        cf, cb = (None, None) if carries is None or carries[n] is None else carries[n]
        hf, sf = jlstm.lstm(fwd, h, cf, lengths=lengths, key=lk[1], **kw)
        hb, sb = jlstm.lstm(bwd, h, cb, lengths=lengths, reverse=True, key=lk[2], **kw)
        h = jnp.concatenate([hf, hb], axis=-1)
        finals.append((sf, sb))
    return h, finals


def fused(layers, xs, carries=None, **kw):
    return jlstm.stacked_lstm(layers, xs, carries, bidirectional=True, fuse_directions=True, **kw)


def loss(fn, layers, xs, carries, **kw):
    """Touches hs and every final h and c, with different weights, so that no cotangent path is missed.
    Returns the outputs too."""
    out = fn(layers, xs, carries, **kw)
    hs, finals = out
    w = jnp.sin(jnp.arange(hs.size, dtype=hs.dtype)).reshape(hs.shape)
    total = jnp.sum(w * hs) + 0.5 * jnp.sum(hs**2)
    for n, pair in enumerate(finals):
        for k, (h, c) in enumerate(pair):
            total = total + (n + 1.5 * k + 1) * jnp.sum(jnp.cos(h)) + 0.3 * (k + 1) * jnp.sum(c**3)
    return total, out


def make(seed, layers=2, batch=(3,), **cell):
    key = jax.random.key(seed)
    k1, k2, k3 = jax.random.split(key, 3)
    stack = jlstm.init_stacked(k1, D, H, layers, bidirectional=True, dtype=jnp.float64, **cell)
    stack = jax.tree.map(lambda a: 2.0 * a, stack)  # gates away from 0.5, so that errors show
    xs = jax.random.normal(k2, batch + (T, D), jnp.float64)
    R = cell.get("proj_size") or H
    ks = jax.random.split(k3, (layers, 2, 2))
    carries = [
        tuple(jlstm.LSTMState(0.5 * jax.random.normal(ks[n, d, 0], batch + (R,), jnp.float64),
                              0.5 * jax.random.normal(ks[n, d, 1], batch + (H,), jnp.float64))
              for d in range(2))
        for n in range(layers)
    ]  # fmt: skip
    return stack, xs, carries


def check_equal(stack, xs, carries, **kw):
    """Outputs, final carries and the gradients w.r.t. the layers, xs and the carries, in one jit each."""
    grad = lambda fn: jax.grad(functools.partial(loss, fn, **kw), argnums=(0, 1, 2), has_aux=True)  # noqa: E731
    (got, got_out), (want, want_out) = (jax.jit(grad(fn))(stack, xs, carries) for fn in (fused, reference))
    assert rel_err(got_out, want_out) < 1e-10
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):  # every gradient, each on its own
        assert g.shape == w.shape and g.dtype == w.dtype
        assert rel_err(g, w) < 1e-10 or float(jnp.max(jnp.abs(w))) == 0.0 == float(jnp.max(jnp.abs(g)))
    assert jax.tree.structure(got) == jax.tree.structure(want) and rel_err(got, want) < 1e-10


@pytest.mark.parametrize("backward", ["manual", "autodiff"])
def test_fused_equals_two_calls_with_lengths_and_carries(backward):
    stack, xs, carries = make(0)
    check_equal(stack, xs, carries, lengths=jnp.array([T, 3, 0]), backward=backward)


def test_fused_equals_two_calls_with_a_variant():
    stack, xs, carries = make(1, batch=(2, 3), peephole=True)
    check_equal(stack, xs, carries, lengths=jnp.array([[T, 1, 0], [4, 5, 2]]))


def test_fused_equals_two_calls_with_projection_zoneout_and_dropout():
    # Stochastic: each direction draws its own masks from its own key, as the two calls do.
    stack, xs, carries = make(2, proj_size=2)
    check_equal(stack, xs, carries, lengths=jnp.array([T, 0, 2]), zoneout=(0.3, 0.2),
                recurrent_dropout=0.25, dropout=0.3, key=jax.random.key(7))  # fmt: skip


def test_fused_with_a_carry_for_one_direction_only_and_broadcast():
    stack, xs, carries = make(3, batch=(2, 3))
    fwd, _ = carries[0]
    # The forward carry of layer 0 broadcast over the leading batch axis; no backward carry; none above.
    carries = [(jlstm.LSTMState(fwd.h[0], fwd.c[0]), None), None]
    check_equal(stack, xs, carries, lengths=jnp.array([[T, 1, 0], [4, 5, 2]]))


def test_fused_without_batch_dims_and_remat():
    stack, xs, carries = make(4, batch=())
    check_equal(stack, xs, carries, lengths=jnp.array(4), remat=4)


def test_fused_with_no_steps():
    stack, xs, carries = make(7)
    hs, finals = fused(stack, xs[..., :0, :], carries, lengths=jnp.zeros(3, jnp.int32))
    assert hs.shape == (3, 0, 2 * H)
    assert rel_err(finals, carries) == 0.0  # the initial carries, unchanged


def test_different_cells_per_direction_fall_back_to_two_scans():
    stack, xs, carries = make(5, layers=1)
    other = jlstm.init(jax.random.key(9), D, H, peephole=True, dtype=jnp.float64)
    stack = [(stack[0][0], other)]
    check_equal(stack, xs, carries, lengths=jnp.array([T, 3, 0]))


def _scans(fn, *args):
    return str(jax.make_jaxpr(fn)(*args)).count("scan[")


def test_one_scan_per_layer_for_both_directions():
    # The fused layer has the loops of one direction: half those of the two-call path.
    stack, xs, _ = make(6)
    got = _scans(lambda s, x: fused(s, x)[0], stack, xs)
    want = _scans(lambda s, x: reference(s, x)[0], stack, xs)
    assert 0 < got and 2 * got == want, (got, want)


def test_fused_under_jit_and_vmap():
    stack, xs, carries = make(8)
    lengths = jnp.array([T, 3, 0])
    f = jax.jit(jax.vmap(lambda x: fused(stack, x, carries, lengths=lengths)[0], in_axes=1, out_axes=1))
    g = jax.vmap(lambda x: reference(stack, x, carries, lengths=lengths)[0], in_axes=1, out_axes=1)
    xs2 = jnp.stack([xs, 2 * xs], axis=1)  # a new batch axis after the first
    assert rel_err(f(xs2), g(xs2)) < 1e-12


def test_bad_carry_names_the_layer_and_direction():
    stack, xs, carries = make(0)
    bad = [(carries[0][0], jlstm.LSTMState(carries[0][1].h[..., :2], carries[0][1].c)), carries[1]]
    with pytest.raises(ValueError, match=r"jlstm.stacked_lstm: carries\[0\]\[1\]\.h must be"):
        fused(stack, xs, bad)
