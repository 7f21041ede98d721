"""Variable lengths, reverse, stacks, bidirectional and truncated BPTT, all through the manual backward."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import problem, rel_err
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jlstm


def seq_loss(params, xs, carry, backward="manual", **kw):
    """Touches hs and the final (h, c), weighting steps differently so misalignment would show."""
    hs, (h, c) = jlstm.lstm(params, xs, carry, backward=backward, **kw)
    w = 1.0 + jnp.sin(jnp.arange(hs.size, dtype=hs.dtype)).reshape(hs.shape)
    return jnp.sum(w * jnp.tanh(hs)) + jnp.sum(h**2) + jnp.sum(jnp.sin(c))


def stack_loss(layers, xs, backward="manual", **kw):
    hs, carries = jlstm.stacked_lstm(layers, xs, backward=backward, **kw)
    w = 1.0 + jnp.cos(jnp.arange(hs.size, dtype=hs.dtype)).reshape(hs.shape)
    return jnp.sum(w * hs) + sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(carries))


# ---------------------------------------------------------------- lengths


def test_padded_outputs_are_zero_and_final_state_is_at_last_valid_step(key):
    params, xs, c0 = problem(key, (3,), T=6)
    lengths = jnp.array([6, 2, 0])
    hs, (h, c) = jlstm.lstm(params, xs, c0, lengths=lengths)
    np.testing.assert_array_equal(hs[1, 2:], 0.0)
    np.testing.assert_array_equal(hs[2], 0.0)
    np.testing.assert_allclose(h[1], hs[1, 1], rtol=1e-14)
    # Length 0: the initial carry, not the state of the last padded step.
    np.testing.assert_array_equal(h[2], c0.h[2])
    np.testing.assert_array_equal(c[2], c0.c[2])


@pytest.mark.parametrize("reverse", [False, True])
def test_padded_batch_equals_each_sequence_alone(key, reverse):
    params, xs, c0 = problem(key, (3,), T=6)
    lengths = [6, 3, 1]
    xs = xs.at[1, 3:].set(7.0).at[2, 1:].set(-3.0)  # padding holds junk; it must not matter
    grad = jax.grad(seq_loss, argnums=(0, 1, 2))
    hs, (h, c) = jlstm.lstm(params, xs, c0, lengths=jnp.array(lengths), reverse=reverse)
    gp, gx, gc = grad(params, xs, c0, lengths=jnp.array(lengths), reverse=reverse)
    # Per-sequence gradient of the batch loss: run the batch loss restricted to one sequence.
    for b, L in enumerate(lengths):
        c_b = jlstm.LSTMState(c0.h[b], c0.c[b])
        hs_b, (h_b, c_b_fin) = jlstm.lstm(params, xs[b, :L], c_b, reverse=reverse)
        np.testing.assert_allclose(hs[b, :L], hs_b, rtol=1e-12)
        np.testing.assert_allclose(h[b], h_b, rtol=1e-12)
        np.testing.assert_allclose(c[b], c_b_fin, rtol=1e-12)
        # The batch loss weights steps by position, so the one-sequence loss uses the same weights.
        mask = (jnp.arange(6) < L)[:, None]

        def padded_alone(p, x_valid, cc, b=b, L=L, mask=mask):
            hs1, (h1, c1) = jlstm.lstm(p, x_valid, cc, reverse=reverse)
            full = jnp.zeros((6, 4)).at[:L].set(hs1)
            w = 1.0 + jnp.sin(jnp.arange(3 * 6 * 4, dtype=full.dtype)).reshape(3, 6, 4)[b]
            return jnp.sum(w * jnp.tanh(full) * mask) + jnp.sum(h1**2) + jnp.sum(jnp.sin(c1))

        g1 = jax.grad(padded_alone, argnums=(1, 2))(params, xs[b, :L], c_b)
        np.testing.assert_allclose(gx[b, :L], g1[0], rtol=1e-10, atol=1e-14)
        np.testing.assert_array_equal(gx[b, L:], 0.0)  # no gradient into padding
        np.testing.assert_allclose(gc.h[b], g1[1].h, rtol=1e-10, atol=1e-14)
    # Parameter gradient: the sum of the per-sequence contributions equals the batch gradient.
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(gp))


def test_padding_adds_nothing_to_parameter_gradients(key):
    params, xs, _ = problem(key, (2,), T=5)
    lengths = jnp.array([5, 2])
    f = lambda p, x: seq_loss(p, x, None, lengths=lengths)  # noqa: E731
    g_a = jax.grad(f)(params, xs)
    g_b = jax.grad(f)(params, xs.at[1, 2:].set(1e3))  # different padding, same gradient
    assert rel_err(g_a, g_b) == 0.0
    g_nan = jax.grad(f)(params, xs.at[1, 2:].set(jnp.nan))  # even NaN padding stays out
    assert rel_err(g_nan, g_a) == 0.0


def test_traced_lengths_under_jit_and_vmap(key):
    params, xs, c0 = problem(key, (4,), T=5)
    lengths = jnp.array([5, 0, 3, 1])
    f = jax.jit(jax.grad(seq_loss, argnums=(0, 1)), static_argnames=("backward",))
    eager = jax.grad(seq_loss, argnums=(0, 1))(params, xs, c0, lengths=lengths)
    jitted = f(params, xs, c0, lengths=lengths)
    assert rel_err(jitted, eager) < 1e-13
    one = lambda x, c, L: jlstm.lstm(params, x, c, lengths=L)  # noqa: E731
    vm_hs, vm_fin = jax.vmap(one)(xs, c0, lengths)
    hs, fin = jlstm.lstm(params, xs, c0, lengths=lengths)
    np.testing.assert_allclose(vm_hs, hs, rtol=1e-13)
    np.testing.assert_allclose(vm_fin.c, fin.c, rtol=1e-13)


def test_lengths_with_two_batch_axes(key):
    params, xs, c0 = problem(key, (2, 3), T=4)
    lengths = jnp.array([[4, 1, 0], [2, 3, 4]])
    hs, _ = jlstm.lstm(params, xs, c0, lengths=lengths)
    for i in range(2):
        for j in range(3):
            np.testing.assert_array_equal(hs[i, j, int(lengths[i, j]) :], 0.0)
    g = jax.grad(seq_loss, argnums=(0, 1, 2))
    assert rel_err(g(params, xs, c0, lengths=lengths), g(params, xs, c0, "autodiff", lengths=lengths)) < 1e-10


# ---------------------------------------------------------------- reverse


def test_reverse_without_lengths_is_flip(key):
    params, xs, c0 = problem(key, (2,), T=5)
    hs_r, fin_r = jlstm.lstm(params, xs, c0, reverse=True)
    hs_f, fin_f = jlstm.lstm(params, xs[:, ::-1], c0)
    np.testing.assert_allclose(hs_r, hs_f[:, ::-1], rtol=1e-13)
    np.testing.assert_allclose(fin_r.h, fin_f.h, rtol=1e-13)


def test_reverse_with_lengths_reads_from_each_last_valid_step(key):
    params, xs, _ = problem(key, (2,), T=5, carry=False)
    hs, (h, _) = jlstm.lstm(params, xs, lengths=jnp.array([5, 3]), reverse=True)
    alone, (h1, _) = jlstm.lstm(params, xs[1, :3][::-1])
    np.testing.assert_allclose(hs[1, :3], alone[::-1], rtol=1e-13)
    np.testing.assert_array_equal(hs[1, 3:], 0.0)
    np.testing.assert_allclose(h[1], h1, rtol=1e-13)  # the final state is at step 0 of the sequence


# ---------------------------------------------------------------- property test


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    batch_shape=st.sampled_from([(), (1,), (3,), (2, 2)]),
    T=st.integers(1, 5),
    D=st.integers(1, 3),
    H=st.integers(1, 3),
    reverse=st.booleans(),
    use_lengths=st.booleans(),
)
def test_property_manual_equals_autodiff_single_layer(data, batch_shape, T, D, H, reverse, use_lengths):
    params, xs, c0 = problem(jax.random.key(data.draw(st.integers(0, 2**16))), batch_shape, T, D, H)
    lengths = None
    if use_lengths and batch_shape:
        flat = data.draw(st.lists(st.integers(0, T), min_size=int(np.prod(batch_shape)),
                                  max_size=int(np.prod(batch_shape))))  # fmt: skip
        lengths = jnp.array(flat).reshape(batch_shape)
    g = jax.jit(jax.grad(seq_loss, argnums=(0, 1, 2)), static_argnames=("backward", "reverse"))
    gm = g(params, xs, c0, "manual", lengths=lengths, reverse=reverse)
    ga = g(params, xs, c0, "autodiff", lengths=lengths, reverse=reverse)
    assert rel_err(gm, ga) <= 1e-10


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    B=st.integers(1, 3),
    T=st.integers(1, 4),
    layers=st.integers(1, 3),
    bidirectional=st.booleans(),
    data=st.data(),
)
def test_property_manual_equals_autodiff_stacked(seed, B, T, layers, bidirectional, data):
    key = jax.random.key(seed)
    stack = jlstm.init_stacked(key, 2, 3, layers, bidirectional=bidirectional, dtype=jnp.float64)
    stack = jax.tree.map(lambda a: 2.0 * a, stack)
    xs = jax.random.normal(jax.random.fold_in(key, 1), (B, T, 2), jnp.float64)
    lengths = jnp.array(data.draw(st.lists(st.integers(0, T), min_size=B, max_size=B)))
    g = jax.jit(jax.grad(stack_loss, argnums=(0, 1)), static_argnames=("backward", "bidirectional"))
    gm = g(stack, xs, "manual", lengths=lengths, bidirectional=bidirectional)
    ga = g(stack, xs, "autodiff", lengths=lengths, bidirectional=bidirectional)
    assert rel_err(gm, ga) <= 1e-10


# ---------------------------------------------------------------- stacks


def test_stack_is_layers_fed_into_each_other(key):
    layers = jlstm.init_stacked(key, 3, 4, 2, dtype=jnp.float64)
    xs = jax.random.normal(key, (2, 5, 3), jnp.float64)
    hs, carries = jlstm.stacked_lstm(layers, xs)
    h1, s1 = jlstm.lstm(layers[0], xs)
    h2, s2 = jlstm.lstm(layers[1], h1)
    np.testing.assert_allclose(hs, h2, rtol=1e-14)
    np.testing.assert_allclose(carries[0].c, s1.c, rtol=1e-14)
    # delta x of the top layer is what reaches the bottom layer's outputs.
    top = lambda h: jnp.sum(jnp.sin(jlstm.lstm(layers[1], h)[0]))  # noqa: E731
    dh1 = jax.grad(top)(h1)
    _, dxs_bottom, _, _ = jlstm.lstm_trace(layers[0], xs, dh1)
    want = jax.grad(lambda x: jnp.sum(jnp.sin(jlstm.stacked_lstm(layers, x)[0])))(xs)
    np.testing.assert_allclose(dxs_bottom, want, rtol=1e-11)


def test_bidirectional_concatenates_forward_then_backward(key):
    layers = jlstm.init_stacked(key, 3, 4, 1, bidirectional=True, dtype=jnp.float64)
    xs = jax.random.normal(key, (2, 5, 3), jnp.float64)
    lengths = jnp.array([5, 2])
    hs, [(sf, sb)] = jlstm.stacked_lstm(layers, xs, lengths=lengths, bidirectional=True)
    assert hs.shape == (2, 5, 8)
    hf, _ = jlstm.lstm(layers[0][0], xs, lengths=lengths)
    hb, _ = jlstm.lstm(layers[0][1], xs, lengths=lengths, reverse=True)
    np.testing.assert_allclose(hs[..., :4], hf, rtol=1e-14)
    np.testing.assert_allclose(hs[..., 4:], hb, rtol=1e-14)
    assert layers[0][0].W.shape == (3, 16)
    two = jlstm.init_stacked(key, 3, 4, 2, bidirectional=True)
    assert two[1][0].W.shape == (8, 16)


def test_dropout_between_layers(key):
    layers = jlstm.init_stacked(key, 3, 4, 2, dtype=jnp.float64)
    xs = jax.random.normal(key, (2, 5, 3), jnp.float64)
    a, _ = jlstm.stacked_lstm(layers, xs, dropout=0.5, key=jax.random.key(1))
    b, _ = jlstm.stacked_lstm(layers, xs, dropout=0.5, key=jax.random.key(1))
    c, _ = jlstm.stacked_lstm(layers, xs, dropout=0.5, key=jax.random.key(2))
    d, _ = jlstm.stacked_lstm(layers, xs)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c) and not np.allclose(a, d)
    with pytest.raises(ValueError, match="key"):
        jlstm.stacked_lstm(layers, xs, dropout=0.5)


def test_stack_size_mismatch_names_the_layer(key):
    layers = [jlstm.init(key, 3, 4), jlstm.init(key, 5, 4)]
    with pytest.raises(ValueError, match=r"layers\[1\].*D = 4"):
        jlstm.stacked_lstm(layers, jnp.zeros((2, 5, 3)))
    with pytest.raises(TypeError, match="pair"):
        jlstm.stacked_lstm([jlstm.init(key, 3, 4)], jnp.zeros((2, 5, 3)), bidirectional=True)


# ---------------------------------------------------------------- against JAX's own reference


def _to_torch_layout(p: jlstm.LSTMParams):
    """jlstm (a, i, f, o; W [D, 4H]) -> PyTorch/cuDNN (i, f, g, o; W_ih [4H, D]), bias split in two."""

    def reorder(m):
        a, i, f, o = jnp.split(m, 4, axis=-1)
        return jnp.concatenate([i, f, a, o], axis=-1)

    return reorder(p.W).T, reorder(p.U).T, 0.25 * reorder(p.b), 0.75 * reorder(p.b)


def test_against_jax_experimental_rnn_lstm_ref(key):
    from jax.experimental import rnn

    D, H, B, T = 3, 4, 3, 6
    layers = jlstm.init_stacked(key, D, H, 2, bidirectional=True, dtype=jnp.float64)
    xs = jax.random.normal(key, (B, T, D), jnp.float64)
    lengths = jnp.array([6, 4, 1], jnp.int32)  # ragged; lstm_ref mishandles length 0, so >= 1 here
    W_ih, W_hh, b_ih, b_hh = {}, {}, {}, {}
    for n, (fwd, bwd) in enumerate(layers):
        for k, p in enumerate((fwd, bwd)):
            W_ih[2 * n + k], W_hh[2 * n + k], b_ih[2 * n + k], b_hh[2 * n + k] = _to_torch_layout(p)
    zeros = jnp.zeros((4, B, H), jnp.float64)
    ref = functools.partial(rnn.lstm_ref, input_size=D, hidden_size=H, num_layers=2, dropout=0.0,
                            bidirectional=True)  # fmt: skip

    def ref_loss(W_ih, x):
        y, h_n, c_n = ref(x, zeros, zeros, W_ih, W_hh, b_ih, b_hh, lengths)
        return jnp.sum(jnp.sin(y)) + jnp.sum(h_n**2) + jnp.sum(c_n), (y, h_n, c_n)

    def our_loss(layers, x):
        y, carries = jlstm.stacked_lstm(layers, x, lengths=lengths, bidirectional=True)
        h_n = jnp.stack([s.h for pair in carries for s in pair])
        c_n = jnp.stack([s.c for pair in carries for s in pair])
        return jnp.sum(jnp.sin(y)) + jnp.sum(h_n**2) + jnp.sum(c_n), (y, h_n, c_n)

    (l_ref, (y_ref, h_ref, c_ref)), (gW_ref, gx_ref) = jax.value_and_grad(ref_loss, (0, 1), has_aux=True)(
        W_ih, xs
    )
    (l_our, (y, h_n, c_n)), (g_layers, gx) = jax.value_and_grad(our_loss, (0, 1), has_aux=True)(layers, xs)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h_n, h_ref, rtol=1e-12)
    np.testing.assert_allclose(c_n, c_ref, rtol=1e-12)
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-10, atol=1e-13)
    for n, pair in enumerate(g_layers):
        for k, g in enumerate(pair):
            np.testing.assert_allclose(_to_torch_layout(g)[0], gW_ref[2 * n + k], rtol=1e-10, atol=1e-13)


# ---------------------------------------------------------------- truncated BPTT


def _chunk_loss(params, batch, carry):
    xs, ys = batch
    hs, final = jlstm.lstm(params, xs, carry)
    return jlstm.l2_loss(hs, ys), final


def test_tbptt_one_chunk_is_full_bptt(key):
    params, xs, c0 = problem(key, (2,), T=6)
    ys = jnp.cos(xs[..., :1] @ jnp.ones((1, 4)))
    loss, grads, final = jlstm.tbptt_value_and_grad(_chunk_loss, params, (xs, ys), c0, chunk=6)
    (want_loss, want_final), want = jax.value_and_grad(_chunk_loss, has_aux=True)(params, (xs, ys), c0)
    assert float(loss) == pytest.approx(float(want_loss), rel=1e-13)
    assert rel_err(grads, want) < 1e-12
    np.testing.assert_allclose(final.c, want_final.c, rtol=1e-13)


def test_tbptt_stops_gradients_at_chunk_boundaries(key):
    params, xs, c0 = problem(key, (2,), T=6)
    ys = jnp.cos(xs[..., :1] @ jnp.ones((1, 4)))
    loss, grads, final = jlstm.tbptt_value_and_grad(_chunk_loss, params, (xs, ys), c0, chunk=3)
    # By hand: chunk 1 from c0, chunk 2 from chunk 1's final state taken as a constant.
    (l1, s1), g1 = jax.value_and_grad(_chunk_loss, has_aux=True)(params, (xs[:, :3], ys[:, :3]), c0)
    (l2, s2), g2 = jax.value_and_grad(_chunk_loss, has_aux=True)(params, (xs[:, 3:], ys[:, 3:]), s1)
    assert float(loss) == pytest.approx(float(l1 + l2), rel=1e-13)
    assert rel_err(grads, jax.tree.map(jnp.add, g1, g2)) < 1e-12
    np.testing.assert_allclose(final.h, s2.h, rtol=1e-13)
    # ... and it is not the full gradient: the boundary really cuts the recurrence.
    _, full = jax.value_and_grad(_chunk_loss, has_aux=True)(params, (xs, ys), c0)
    assert rel_err(grads, full) > 1e-4
    with pytest.raises(ValueError, match="chunk"):
        jlstm.tbptt_value_and_grad(_chunk_loss, params, (xs, ys), c0, chunk=4)
