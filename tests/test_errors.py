"""Bad input gets a clear error naming the argument, the expected and what came."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jlstm
from jlstm import debug


@pytest.fixture
def params(key):
    return jlstm.init(key, 3, 4, dtype=jnp.float64)


def test_xs_wrong_feature_size(params):
    msg = r"xs must be \[\.\.\., T, D\] with D = 3 from params.W; got shape \(2, 5, 7\)"
    with pytest.raises(ValueError, match=msg):
        jlstm.lstm(params, jnp.zeros((2, 5, 7)))


def test_xs_wrong_rank(params):
    with pytest.raises(ValueError, match=r"xs must be \[\.\.\., T, D\].*got shape \(3,\)"):
        jlstm.lstm(params, jnp.zeros((3,)))


@pytest.mark.parametrize(
    "dtype,word", [(jnp.int32, "int32"), (jnp.complex64, "complex"), (jnp.bool_, "bool")]
)
def test_xs_wrong_dtype(params, dtype, word):
    with pytest.raises(TypeError, match=f"xs must be a real floating array.*{word}.*astype"):
        jlstm.lstm(params, jnp.zeros((2, 5, 3), dtype))


def test_carry_not_a_pair(params):
    with pytest.raises(TypeError, match=r"carry must be an \(h, c\) pair.*got tuple of length 3"):
        jlstm.lstm(params, jnp.zeros((2, 5, 3)), (jnp.zeros((2, 4)),) * 3)
    with pytest.raises(TypeError, match="carry must be an .h, c. pair.*got ArrayImpl"):
        jlstm.lstm(params, jnp.zeros((2, 5, 3)), jnp.zeros((2, 4)))


def test_carry_wrong_batch_or_hidden(params):
    with pytest.raises(ValueError, match=r"carry.h must be \[\.\.\., H\] = \(2, 4\).*got shape \(3, 4\)"):
        jlstm.lstm(params, jnp.zeros((2, 5, 3)), (jnp.zeros((3, 4)), jnp.zeros((2, 4))))
    with pytest.raises(ValueError, match=r"carry.c must be .* H = 4 from params.U; got shape \(2, 5\)"):
        jlstm.lstm(params, jnp.zeros((2, 5, 3)), (jnp.zeros((2, 4)), jnp.zeros((2, 5))))


def test_params_disagree_names_which(params):
    W, U, b = params
    with pytest.raises(ValueError, match=r"params.W must be \[D, 4H\] with 4H = 16.*got shape \(3, 12\)"):
        jlstm.lstm(jlstm.LSTMParams(W[:, :12], U, b), jnp.zeros((2, 5, 3)))
    with pytest.raises(ValueError, match=r"params.U must be \[H, 4H\]; got shape \(4, 12\)"):
        jlstm.lstm(jlstm.LSTMParams(W, U[:, :12], b), jnp.zeros((2, 5, 3)))
    with pytest.raises(ValueError, match=r"params.b must be \[4H\] = \(16,\).*got shape \(15,\)"):
        jlstm.lstm(jlstm.LSTMParams(W, U, b[:15]), jnp.zeros((2, 5, 3)))
    with pytest.raises(TypeError, match="params must be jlstm.LSTMParams"):
        jlstm.lstm({"W": W}, jnp.zeros((2, 5, 3)))


def test_unknown_backward(params):
    with pytest.raises(ValueError, match=r"backward must be one of \('manual', 'autodiff'\); got 'auto'"):
        jlstm.lstm(params, jnp.zeros((2, 5, 3)), backward="auto")


def test_lengths_errors(params):
    xs = jnp.zeros((2, 5, 3))
    msg = r"lengths must have the batch shape of xs, \(2,\); got shape \(3,\)"
    with pytest.raises(ValueError, match=msg):
        jlstm.lstm(params, xs, lengths=jnp.array([1, 2, 3]))
    with pytest.raises(TypeError, match="lengths must be an integer array; got dtype float"):
        jlstm.lstm(params, xs, lengths=jnp.array([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, T\] = \[0, 5\]; got min -1"):
        jlstm.lstm(params, xs, lengths=jnp.array([-1, 2]))
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, T\] = \[0, 5\].*max 6"):
        jlstm.lstm(params, xs, lengths=np.array([1, 6]))


def test_init_sizes(key):
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="hidden_size must be a positive int"):
            jlstm.init(key, 3, bad)
    with pytest.raises(ValueError, match="input_size must be a positive int; got 0"):
        jlstm.init(key, 0, 4)
    with pytest.raises(TypeError, match="dtype must be a floating dtype; got int32"):
        jlstm.init(key, 3, 4, dtype=jnp.int32)
    with pytest.raises(ValueError, match="num_layers must be a positive int"):
        jlstm.init_stacked(key, 3, 4, 0)


def test_cell_errors(params):
    with pytest.raises(ValueError, match=r"jlstm.cell: x must be \[\.\.\., D\] with D = 3"):
        jlstm.cell(params, (jnp.zeros(4), jnp.zeros(4)), jnp.zeros(5))


def test_l2_loss_shape(params):
    with pytest.raises(ValueError, match=r"ys must have the shape of hs, \(2, 3\); got \(3, 2\)"):
        jlstm.l2_loss(jnp.zeros((2, 3)), jnp.zeros((3, 2)))


@pytest.mark.parametrize("reverse", [False, True])
def test_traced_lengths_out_of_range_are_clamped(params, reverse):
    xs = jax.random.normal(jax.random.key(1), (2, 4, 3), jnp.float64)
    f = jax.jit(lambda L: jlstm.lstm(params, xs, lengths=L, reverse=reverse))
    hs, fin = f(jnp.array([9, -2]))
    want_hs, want_fin = f(jnp.array([4, 0]))
    np.testing.assert_array_equal(hs, want_hs)
    np.testing.assert_array_equal(fin.c, want_fin.c)
    assert bool(jnp.all(jnp.isfinite(hs)))


# ---------------------------------------------------------------- runtime checks (opt-in)


def test_checked_lstm_names_where_nan_entered(params):
    xs = jnp.zeros((2, 5, 3)).at[1, 4, 0].set(jnp.nan)
    err, _ = jax.jit(debug.checked_lstm)(params, xs)
    with pytest.raises(Exception, match=r"xs holds NaN or Inf; the first at index \[1 4 0\]"):
        err.throw()
    err, _ = jax.jit(debug.checked_lstm)(params, jnp.zeros((2, 5, 3)))
    err.throw()  # clean input: no error
    assert err.get() is None


def test_checked_lstm_traced_lengths_out_of_range(params):
    f = jax.jit(lambda L: debug.checked_lstm(params, jnp.zeros((2, 5, 3)), lengths=L)[0])
    with pytest.raises(Exception, match=r"lengths must lie in \[0, T\] = \[0, 5\]; got min 0 and max 9"):
        f(jnp.array([0, 9])).throw()
    assert f(jnp.array([0, 5])).get() is None


def test_checked_lstm_names_overflow_step(params):
    big = jlstm.LSTMParams(params.W, params.U, params.b.at[:4].set(jnp.inf))  # a non-finite bias
    err, _ = debug.checked_lstm(big, jnp.ones((1, 3, 3)))
    with pytest.raises(Exception, match="params.b holds NaN or Inf; the first at index \\[0\\]"):
        err.throw()


# ---------------------------------------------------------------- converters given another library's weights


def test_converters_name_the_library_they_expected():
    import flax.linen as nn
    import torch

    from jlstm import interop

    sd = torch.nn.LSTM(3, 4).state_dict()
    cell = nn.LSTMCell(4)
    fp = cell.init(jax.random.key(0), cell.initialize_carry(jax.random.key(0), (1, 3)), jnp.zeros((1, 3)))
    cases = [
        (lambda: interop.from_torch(fp), ValueError, "from_torch: no 'weight_ih_l0' key; got keys"),
        (lambda: interop.from_flax(sd), ValueError, "from_flax: expected the LSTMCell parameters"),
        (lambda: interop.from_keras(sd), TypeError, "from_keras: layer_or_weights must be a keras LSTM"),
        (lambda: interop.from_haiku(sd), ValueError, "from_haiku: expected one hk.LSTM module"),
        (lambda: interop.from_equinox(sd), TypeError, "from_equinox: cell must be an eqx.nn.LSTMCell"),
        (lambda: interop.from_torch([jnp.zeros((3, 16))]), TypeError, "must be a torch.nn.LSTM or its state"),
        (lambda: interop.from_ng(sd), ValueError, "from_ng: parameters is missing \\['Wf'"),
        (lambda: interop.from_seo(fp), ValueError, "from_seo: weights is missing \\['Wa'"),
    ]
    for call, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            call()


# ---------------------------------------------------------------- property: a right answer or a clean error
# (every public function's arguments: tests/test_property.py; here, stacks of right and wrong sizes)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    first=st.sampled_from(["right", "right", "wrong"]),
    above=st.lists(st.sampled_from(["right", "right", "right", "wrong"]), min_size=0, max_size=2),
    bidirectional=st.booleans(),
    pairs=st.booleans(),
)
def test_property_stacked_right_answer_or_clean_error(first, above, bidirectional, pairs):
    # Layer input sizes right or wrong for what feeds them: a result only when all are right.
    key = jax.random.key(0)
    D, H = 3, 2
    width = H * (2 if bidirectional else 1)
    sizes = [D if first == "right" else D + 1] + [width if a == "right" else width + 1 for a in above]
    make = lambda d: jlstm.init(key, d, H, dtype=jnp.float64)  # noqa: E731
    layers = [(make(d), make(d)) if pairs else make(d) for d in sizes]
    xs = jnp.ones((2, 3, D))
    try:
        hs, carries = jlstm.stacked_lstm(layers, xs, bidirectional=bidirectional)
    except (ValueError, TypeError) as e:
        assert str(e).startswith("jlstm.stacked_lstm: ")
        return
    assert pairs == bidirectional and first == "right" and all(a == "right" for a in above)
    assert hs.shape == (2, 3, width) and len(carries) == len(sizes)


# ---------------------------------------------------------------- the hostile-input probe's findings


@pytest.mark.parametrize("variant", [False, True])
def test_an_empty_batch_runs_and_differentiates(key, variant):
    p = jlstm.init(key, 3, 4, dtype=jnp.float64, peephole=variant)
    hs, (h, c) = jlstm.lstm(p, jnp.zeros((0, 5, 3)))  # was a ZeroDivisionError in the chunking
    assert hs.shape == (0, 5, 4) and h.shape == c.shape == (0, 4)
    g = jax.grad(lambda p: jnp.sum(jlstm.lstm(p, jnp.zeros((0, 5, 3)))[0]))(p)
    assert all(float(jnp.abs(a).max()) == 0.0 for a in jax.tree.leaves(g))


@pytest.mark.parametrize("variant", [False, True])
def test_lstm_trace_of_no_steps(key, variant):
    p = jlstm.init(key, 3, 4, dtype=jnp.float64, peephole=variant)
    g_final = (jnp.full((2, 4), 0.5), jnp.full((2, 4), -2.0))
    grads, dxs, dcarry, tr = jlstm.lstm_trace(p, jnp.zeros((2, 0, 3)), jnp.zeros((2, 0, 4)), g_final=g_final)
    assert dxs.shape == (2, 0, 3) and tr.delta_gates.shape == (2, 0, 16) and tr.delta_out.shape == (2, 0, 4)
    # No step: the final carry is the initial one, so its cotangent passes straight through.
    np.testing.assert_array_equal(dcarry.h, g_final[0])
    np.testing.assert_array_equal(dcarry.c, g_final[1])
    assert all(float(jnp.abs(a).max()) == 0.0 for a in jax.tree.leaves(grads))


def test_xs_as_a_nested_list(params):
    xs = [[[0.1, 0.2, 0.3]] * 4] * 2
    hs, _ = jlstm.lstm(params, xs)
    np.testing.assert_array_equal(hs, jlstm.lstm(params, jnp.asarray(xs))[0])
    with pytest.raises(TypeError, match=r"^jlstm.lstm: xs must be an array .*regular shape"):
        jlstm.lstm(params, [[[0.1, 0.2, 0.3]], [[0.1, 0.2]]])  # ragged: named, not dumped
    with pytest.raises(TypeError, match=r"^jlstm.lstm: xs must be an array of numbers; got list holding str"):
        jlstm.lstm(params, [[["a", "b", "c"]]])


@pytest.mark.parametrize("as_", [list, tuple, np.asarray])
def test_concrete_lengths_are_checked_inside_jit(params, as_):
    # Known at trace time, so always checkable: [5, 9] with T = 5 used to run as [5, 5] under jit.
    f = jax.jit(lambda xs: jlstm.lstm(params, xs, lengths=as_([5, 9]))[0])
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, T\] = \[0, 5\]; got min 5, max 9"):
        f(jnp.zeros((2, 5, 3)))


def test_bidirectional_stack_names_a_carry_that_is_not_a_pair_of_directions(key):
    layers = jlstm.init_stacked(key, 3, 4, num_layers=2, bidirectional=True, dtype=jnp.float64)
    one = jlstm.LSTMState(jnp.zeros((2, 4)), jnp.zeros((2, 4)))
    msg = r"carries\[0\] must be a \(forward, backward\) pair of carries when bidirectional"
    with pytest.raises(TypeError, match=msg):
        jlstm.stacked_lstm(layers, jnp.zeros((2, 5, 3)), [one, one], bidirectional=True)
    hs, _ = jlstm.stacked_lstm(layers, jnp.zeros((2, 5, 3)), [(one, None), (one, one)], bidirectional=True)
    assert hs.shape == (2, 5, 8)


def test_a_stack_names_the_layer_of_a_bad_carry(key):
    layers = jlstm.init_stacked(key, 3, 4, num_layers=2, dtype=jnp.float64)
    bad = (jnp.zeros((2, 5)), jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"^jlstm.stacked_lstm: carries\[1\]\.h must be"):
        jlstm.stacked_lstm(layers, jnp.zeros((2, 5, 3)), [None, bad])
