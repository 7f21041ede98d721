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


# ---------------------------------------------------------------- property: a right answer or a clean error


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    xs_shape=st.lists(st.integers(0, 4), min_size=0, max_size=4).map(tuple),
    dtype=st.sampled_from(["float32", "float64", "int32", "complex64", "bfloat16"]),
    carry_kind=st.sampled_from(["none", "good", "bad_h", "triple"]),
    lengths_kind=st.sampled_from(["none", "good", "float", "shape"]),
)
def test_property_right_answer_or_clean_error(xs_shape, dtype, carry_kind, lengths_kind):
    D, H = 3, 2
    params = jlstm.init(jax.random.key(0), D, H, dtype=jnp.float64)
    xs = jnp.ones(xs_shape, dtype)
    batch = xs_shape[:-2]
    carry = {
        "none": None,
        "good": (jnp.zeros(batch + (H,)), jnp.zeros(batch + (H,))),
        "bad_h": (jnp.zeros(batch + (H + 1,)), jnp.zeros(batch + (H,))),
        "triple": (jnp.zeros(H),) * 3,
    }[carry_kind]
    T = xs_shape[-2] if len(xs_shape) >= 2 else 0
    lengths = {
        "none": None,
        "good": jnp.full(batch, min(T, 1), jnp.int32),
        "float": jnp.zeros(batch, jnp.float32),
        "shape": jnp.zeros(batch + (2,), jnp.int32),
    }[lengths_kind]
    try:
        hs, (h, c) = jlstm.lstm(params, xs, carry, lengths=lengths)
    except (ValueError, TypeError) as e:
        assert str(e).startswith("jlstm.lstm: ")  # ours, naming the function; never an XLA crash
        return
    # It ran: then the input was valid and the result is well-shaped and equals autodiff.
    assert len(xs_shape) >= 2 and xs_shape[-1] == D and dtype in ("float32", "float64", "bfloat16")
    assert hs.shape == xs_shape[:-1] + (H,) and h.shape == batch + (H,)
    if dtype == "float64" and T > 0:
        f = lambda p, mode: jnp.sum(jlstm.lstm(p, xs, carry, lengths=lengths, backward=mode)[0] ** 2)  # noqa: E731
        gm, ga = jax.grad(f)(params, "manual"), jax.grad(f)(params, "autodiff")
        for a, b in zip(jax.tree.leaves(gm), jax.tree.leaves(ga)):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


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


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple),
    x_last=st.sampled_from([3, 3, 1]),  # D = 3 is right; weighted so that valid calls happen
    h_batch=st.sampled_from(["same", "same", "scalar", "other"]),
    h_last=st.sampled_from([2, 2, 5]),  # H = 2 is right
    dtype=st.sampled_from(["float32", "float64", "float64", "int32", "bfloat16"]),
)
def test_property_cell_right_answer_or_clean_error(batch, x_last, h_batch, h_last, dtype):
    D, H = 3, 2
    params = jlstm.init(jax.random.key(0), D, H, dtype=jnp.float64)
    hb = {"same": batch, "scalar": (), "other": batch + (4,)}[h_batch]
    x, h = jnp.ones(batch + (x_last,), dtype), jnp.full(hb + (h_last,), 0.1)
    try:
        (h1, c1), out = jlstm.cell(params, (h, h), x)
    except (ValueError, TypeError) as e:
        assert str(e).startswith("jlstm.cell: ")
        return
    assert x_last == D and h_last == H and dtype != "int32" and h_batch != "other"
    assert h1.shape == c1.shape == batch + (H,)
    if dtype == "float64":
        hs, (h2, c2) = jlstm.lstm(params, x[..., None, :], (h, h))
        np.testing.assert_allclose(h1, h2, rtol=1e-13)
        np.testing.assert_allclose(c1, c2, rtol=1e-13)


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
