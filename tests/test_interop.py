"""Weight interop, checked against the real libraries: weights drawn by each library, its own forward,
final state and gradients (torch autograd, jax.grad) against jlstm's after conversion, in float64."""

import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported anywhere in this process

import equinox as eqx
import flax.linen as nn
import haiku as hk
import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
import torch
from comparisons import close, close32, exact, jax_loss, nontrivial, torch_grads_match, torch_loss
from flax import nnx

import jlstm
from jlstm import interop

T, B, D, H = 5, 2, 3, 4
F64 = jnp.float64
torch.set_num_threads(1)


@jax.jit
def jlstm_single(params, xs, carry):
    """jlstm's outputs ``(hs, h, c)`` and gradients ``(dparams, dxs, dcarry)`` for one layer."""

    def f(params, xs, carry):
        hs, (h, c) = jlstm.lstm(params, xs, carry)
        return jax_loss(hs, h, c), (hs, h, c)

    (_, out), grads = jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True)(params, xs, carry)
    return out, grads


def inputs(seed=0, batch=(B,)):
    kx, kh, kc = jax.random.split(jax.random.key(seed), 3)
    xs = jax.random.normal(kx, batch + (T, D), F64)
    carry = jlstm.LSTMState(
        0.5 * jax.random.normal(kh, batch + (H,), F64), 0.5 * jax.random.normal(kc, batch + (H,), F64)
    )
    return xs, carry


def jlstm_params(seed=1, d=D):
    rng = np.random.default_rng(seed)  # numpy: no compilation for a handful of random numbers
    return jlstm.LSTMParams(*(jnp.asarray(rng.normal(size=s)) for s in ((d, 4 * H), (H, 4 * H), (4 * H,))))


def assert_params_equal(a, b):
    for name, x, y in zip("WUb", a, b):
        exact(x, y, name)


# ---------------------------------------------------------------------------------------------- torch


def _stack(finals, k):
    flat = [s for layer in finals for s in (layer if not isinstance(layer, jlstm.LSTMState) else (layer,))]
    return jnp.stack([s[k] for s in flat])


@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, False), (2, True)])
def test_torch_forward_final_state_and_gradients(num_layers, bidirectional):
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(D, H, num_layers=num_layers, bidirectional=bidirectional, batch_first=True)
    lstm = lstm.double()
    with torch.no_grad():  # larger than torch's init so the gates are far from 0.5
        for p in lstm.parameters():
            p.mul_(3.0)
    dirs = 2 if bidirectional else 1
    x = torch.randn(B, T, D, dtype=torch.float64, requires_grad=True)
    h0 = (0.5 * torch.randn(num_layers * dirs, B, H, dtype=torch.float64)).requires_grad_()
    c0 = (0.5 * torch.randn(num_layers * dirs, B, H, dtype=torch.float64)).requires_grad_()
    out, (hn, cn) = lstm(x, (h0, c0))
    torch_loss(out, hn, cn).backward()
    assert all(p.grad is not None for p in lstm.parameters())

    layers = interop.from_torch(lstm)
    assert len(layers) == num_layers
    carries = interop.from_torch_state((h0, c0), bidirectional=bidirectional)

    def f(layers, xs, carries):
        hs, finals = jlstm.stacked_lstm(layers, xs, carries, bidirectional=bidirectional)
        h, c = _stack(finals, 0), _stack(finals, 1)
        return jax_loss(hs, h, c), (hs, finals)

    (_, (hs, finals)), (g_layers, g_xs, g_carries) = jax.jit(
        jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True)
    )(layers, jnp.asarray(x.detach().numpy()), carries)

    close(hs, out.detach(), "outputs")
    h_fin, c_fin = interop.to_torch_state(finals)
    close(h_fin, hn.detach(), "h_n")
    close(c_fin, cn.detach(), "c_n")
    torch_grads_match(g_layers, g_xs, g_carries, lstm, x, h0, c0)
    nontrivial(hs, g_layers, g_xs, g_carries)


def test_torch_round_trips_are_exact():
    torch.manual_seed(1)
    lstm = torch.nn.LSTM(D, H, num_layers=2, bidirectional=True).double()
    sd = lstm.state_dict()
    back = interop.to_torch(interop.from_torch(sd))
    assert list(back) == list(sd)  # the same keys, in torch's order
    for k, v in sd.items():
        if k.startswith("weight"):
            exact(back[k], v, k)
        elif k.startswith("bias_ih"):
            exact(back[k], v + sd[k.replace("ih", "hh")], k)  # the bias sum, computed once
        else:
            exact(back[k], 0.0 * v, k)
        assert back[k].dtype == torch.float64
    fresh = torch.nn.LSTM(D, H, num_layers=2, bidirectional=True).double()
    fresh.load_state_dict(back)  # strict: every key and shape fits a real nn.LSTM

    layers = [(jlstm_params(1), jlstm_params(3)), (jlstm_params(5, 2 * H), jlstm_params(7, 2 * H))]
    again = interop.from_torch(interop.to_torch(layers))
    for (a, b), (c, d) in zip(layers, again):
        assert_params_equal(a, c)
        assert_params_equal(b, d)
    p = jlstm_params()
    assert_params_equal(interop.from_torch(interop.to_torch([p]))[0], p)


def test_torch_state_dict_of_a_bigger_model_and_bias_false():
    model = torch.nn.Sequential(torch.nn.LSTM(D, H, bias=False)).double()
    sd = model.state_dict()  # keys "0.weight_ih_l0", ...
    with pytest.raises(ValueError, match="prefix"):
        interop.from_torch(sd)
    (p,) = interop.from_torch(sd, prefix="0.")
    exact(p.b, np.zeros(4 * H))
    exact(p.W[:, H : 2 * H], sd["0.weight_ih_l0"][:H].T)  # torch's first block (i) is jlstm's second
    exact(p.W[:, :H], sd["0.weight_ih_l0"][2 * H : 3 * H].T)  # torch's g is jlstm's a


def test_torch_errors_name_the_problem():
    # proj_size is converted since the cells issue (tests/test_cells_anchors.py); other options are named:
    with pytest.raises(ValueError, match="layer_norm=True, which torch.nn.LSTM does not have"):
        interop.to_torch(jlstm.init(jax.random.key(0), D, H, layer_norm=True))
    with pytest.raises(ValueError, match="GRU"):
        interop.from_torch(torch.nn.GRU(D, H))
    with pytest.raises(ValueError, match=r"weight_hh_l0 must be \[4H, H\]"):
        interop.from_torch(torch.nn.GRU(D, H).state_dict())
    sd = dict(torch.nn.LSTM(D, H).state_dict())
    sd["weight_ih_l0"] = torch.zeros(4 * H + 1, D)
    with pytest.raises(ValueError, match=r"weight_ih_l0 must be \[4H, D\] = \[16, \?\]; got shape \(17, 3\)"):
        interop.from_torch(sd)
    with pytest.raises(TypeError, match="module_or_state_dict"):
        interop.from_torch([1, 2])
    with pytest.raises(TypeError, match="all LSTMParams or all"):
        interop.to_torch([jlstm_params(), (jlstm_params(), jlstm_params())])


# ----------------------------------------------------------------------------------------------- flax


def flax_reference(apply, variables, xs, carry):
    """Loss, outputs and gradients from a Flax cell's own forward, scanned by ``flax.linen.RNN``-style
    time stepping: carry (c, h)."""

    def f(variables, xs, flax_carry):
        carry, hs = apply(variables, xs, flax_carry)
        c, h = carry
        return jax_loss(hs, h, c), (hs, h, c)

    return jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True)(variables, xs, interop.to_flax_carry(carry))


@pytest.mark.parametrize("cell_type", [nn.LSTMCell, nn.OptimizedLSTMCell])
def test_flax_linen_forward_final_state_and_gradients(cell_type):
    cell = cell_type(features=H, param_dtype=F64, bias_init=nn.initializers.normal(1.0))
    rnn = nn.RNN(cell, return_carry=True)
    xs, carry = inputs()
    variables = rnn.init(jax.random.key(2), xs, initial_carry=interop.to_flax_carry(carry))
    variables = jax.tree.map(lambda a: 2.0 * a, variables)
    apply = lambda v, xs, c: rnn.apply(v, xs, initial_carry=c)
    (_, (hs, h, c)), (g_vars, g_xs, g_carry) = jax.jit(flax_reference, static_argnums=0)(
        apply, variables, xs, carry
    )

    params = interop.from_flax(variables)
    (hs2, h2, c2), (g_params, g_xs2, g_carry2) = jlstm_single(params, xs, carry)
    close(hs2, hs, "outputs")
    close(h2, h, "h")
    close(c2, c, "c")
    g_from_flax = interop.from_flax(g_vars)  # a linear map, so it converts gradients too
    for name, a, b in zip("WUb", g_params, g_from_flax):
        close(a, b, f"d{name}")
    close(g_xs2, g_xs, "dxs")
    g_carry = interop.from_flax_carry(g_carry)
    close(g_carry2.h, g_carry.h, "dh0")
    close(g_carry2.c, g_carry.c, "dc0")
    nontrivial(hs, g_params, g_xs, g_carry)

    # Round trips: exact both ways.
    back = interop.to_flax(params)
    assert list(variables["params"]) == ["cell"]  # nn.RNN nests the cell's parameters
    for k, v in variables["params"]["cell"].items():
        for kk, vv in v.items():
            exact(back[k][kk], vv, f"{k}.{kk}")
    p = jlstm_params()
    assert_params_equal(interop.from_flax(interop.to_flax(p)), p)


@pytest.mark.parametrize("cell_type", [nnx.LSTMCell, nnx.OptimizedLSTMCell])
def test_flax_nnx_forward_final_state_and_gradients(cell_type):
    cell = cell_type(D, H, param_dtype=F64, bias_init=nnx.initializers.normal(1.0), rngs=nnx.Rngs(3))
    graphdef, state = nnx.split(cell)
    xs, carry = inputs()

    def apply(state, xs, flax_carry):
        m = nnx.merge(graphdef, state)
        hs = []
        for t in range(T):  # the cell's own step, T = 5 times
            flax_carry, h = m(flax_carry, xs[:, t])
            hs.append(h)
        return flax_carry, jnp.stack(hs, axis=1)

    (_, (hs, h, c)), (g_state, g_xs, g_carry) = jax.jit(flax_reference, static_argnums=0)(
        apply, state, xs, carry
    )
    params = interop.from_flax(cell)
    (hs2, h2, c2), (g_params, g_xs2, g_carry2) = jlstm_single(params, xs, carry)
    close(hs2, hs, "outputs")
    close(h2, h, "h")
    close(c2, c, "c")
    for name, a, b in zip("WUb", g_params, interop.from_flax(g_state)):
        close(a, b, f"d{name}")
    close(g_xs2, g_xs, "dxs")
    close(g_carry2.h, interop.from_flax_carry(g_carry).h, "dh0")
    close(g_carry2.c, interop.from_flax_carry(g_carry).c, "dc0")
    nontrivial(hs, g_params)

    layout = "nnx" if cell_type is nnx.LSTMCell else "nnx_optimized"
    p = jlstm_params()
    target = nnx.state(cell, nnx.Param)
    nnx.replace_by_pure_dict(target, interop.to_flax(p, layout=layout))
    nnx.update(cell, target)
    assert_params_equal(interop.from_flax(cell), p)


def test_flax_errors_and_carry_order():
    good = interop.to_flax(jlstm_params())
    with pytest.raises(ValueError, match="'hg' is missing"):
        interop.from_flax({"params": {k: v for k, v in good.items() if k != "hg"}})
    good["hf"]["kernel"] = jnp.zeros((H, H + 1))
    with pytest.raises(ValueError, match=r"hf.kernel must be \[H, H\] = \[4, 4\]; got shape \(4, 5\)"):
        interop.from_flax(good)
    with pytest.raises(TypeError, match="params must be"):
        interop.from_flax(3.0)
    c, h = jnp.zeros(H), jnp.ones(H)
    s = interop.from_flax_carry((c, h))
    exact(s.h, h)
    exact(s.c, c)
    assert interop.to_flax_carry(s)[0] is c


# ---------------------------------------------------------------------------------------------- keras


def test_keras_forward_final_state_and_gradients():
    """Keras 3 on JAX computes tanh in float32 even for float64 tensors (keras.backend.result_type maps
    float64 to float32 on non-TensorFlow backends), so this comparison holds to float32 accuracy only."""
    keras.utils.set_random_seed(4)
    layer = keras.layers.LSTM(
        H, return_sequences=True, return_state=True, dtype="float64", bias_initializer="random_normal"
    )
    with jax.numpy_rank_promotion("allow"):  # keras's initialisers rely on numpy broadcasting
        layer.build((B, T, D))
    xs, carry = inputs()
    trainable = [jnp.asarray(v.value) for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]
    assert len(trainable) == 3 and trainable[0].dtype == F64

    def f(trainable, xs, carry):
        (hs, h, c), _ = layer.stateless_call(trainable, non_trainable, xs, initial_state=list(carry))
        return jax_loss(hs, h, c), (hs, h, c)

    with jax.numpy_rank_promotion("allow"):  # keras relies on numpy broadcasting
        (_, (hs, h, c)), (g_w, g_xs, g_carry) = jax.jit(
            jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True)
        )(trainable, xs, carry)
    params = interop.from_keras(layer)
    (hs2, h2, c2), (g_params, g_xs2, g_carry2) = jlstm_single(params, xs, carry)
    close32(hs2, hs, "outputs")
    close32(h2, h, "h")
    close32(c2, c, "c")
    for name, a, b in zip("WUb", g_params, interop.from_keras(g_w)):
        close32(a, b, f"d{name}")
    close32(g_xs2, g_xs, "dxs")
    close32(g_carry2.h, g_carry.h, "dh0")
    close32(g_carry2.c, g_carry.c, "dc0")
    nontrivial(hs, g_params)

    for a, b in zip(interop.to_keras(params), [v.value for v in layer.weights]):
        exact(a, b)
    p = jlstm_params()
    layer.set_weights(interop.to_keras(p))
    assert_params_equal(interop.from_keras(layer), p)


def test_keras_errors():
    layer = keras.layers.LSTM(H, activation="relu")
    with jax.numpy_rank_promotion("allow"):
        layer.build((None, None, D))
    with pytest.raises(ValueError, match="activation is relu"):
        interop.from_keras(layer)
    W, U, b = interop.to_keras(jlstm_params())
    with pytest.raises(ValueError, match=r"bias must be \[4H\] = \[16\]; got shape \(15,\)"):
        interop.from_keras([W, U, b[:-1]])
    with pytest.raises(ValueError, match=r"kernel must be \[D, 4H\]"):
        interop.from_keras([W.T, U, b])
    p = interop.from_keras([W, U])  # use_bias=False
    exact(p.b, np.zeros(4 * H))


# ---------------------------------------------------------------------------------------------- haiku


def test_haiku_forward_final_state_and_gradients():
    xs, carry = inputs()

    def unroll(xs, carry):
        hs, state = hk.dynamic_unroll(hk.LSTM(H), jnp.swapaxes(xs, 0, 1), hk.LSTMState(*carry))
        return jnp.swapaxes(hs, 0, 1), state

    f_hk = hk.without_apply_rng(hk.transform(unroll))
    hk_params = f_hk.init(jax.random.key(5), xs, carry)
    kw, kb = jax.random.split(jax.random.key(6))
    w = hk_params["lstm/linear"]["w"]
    assert w.shape == (D + H, 4 * H) and w.dtype == F64
    hk_params = {"lstm/linear": {"w": 2 * w, "b": jax.random.normal(kb, (4 * H,), F64)}}

    def f(hk_params, xs, carry):
        hs, state = f_hk.apply(hk_params, xs, carry)
        return jax_loss(hs, state.hidden, state.cell), (hs, state.hidden, state.cell)

    (_, (hs, h, c)), (g_hk, g_xs, g_carry) = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))(
        hk_params, xs, carry
    )
    params = interop.from_haiku(hk_params)
    (hs2, h2, c2), (g_params, g_xs2, g_carry2) = jlstm_single(params, xs, carry)
    close(hs2, hs, "outputs")
    close(h2, h, "h")
    close(c2, c, "c")
    for name, a, b in zip("WUb", g_params, interop.from_haiku(g_hk, forget_bias=0.0)):
        close(a, b, f"d{name}")
    close(g_xs2, g_xs, "dxs")
    close(g_carry2.h, g_carry.h, "dh0")
    close(g_carry2.c, g_carry.c, "dc0")
    nontrivial(hs, g_params)

    # The +1 is folded into jlstm's forget block (f is Haiku's third block, jlstm's third too).
    exact(params.b[2 * H : 3 * H], hk_params["lstm/linear"]["b"][2 * H : 3 * H] + 1.0)
    # Round trips: the weights are exact; b_f + 1 - 1 can round in its last bit.
    back = interop.to_haiku(params)["lstm/linear"]
    exact(back["w"], hk_params["lstm/linear"]["w"])
    np.testing.assert_allclose(back["b"], hk_params["lstm/linear"]["b"], rtol=0, atol=1e-15)
    p = jlstm_params()
    again = interop.from_haiku(interop.to_haiku(p))
    exact(again.W, p.W)
    exact(again.U, p.U)
    np.testing.assert_allclose(again.b, p.b, rtol=0, atol=1e-15)


def test_haiku_finds_the_module_or_asks_for_its_name():
    p = jlstm_params()
    two = {
        **interop.to_haiku(p, name="enc/~/lstm"),
        "head/linear": {"w": jnp.zeros((H, 2)), "b": jnp.zeros(2)},
    }
    assert_params_equal(interop.from_haiku(two), interop.from_haiku(interop.to_haiku(p)))
    two["dec/~/lstm/linear"] = two["enc/~/lstm/linear"]
    with pytest.raises(ValueError, match="name="):
        interop.from_haiku(two)
    interop.from_haiku(two, name="dec/~/lstm/linear")
    with pytest.raises(ValueError, match=r"\['w'\] must be \[D \+ H, 4H\]"):
        interop.from_haiku({"w": jnp.zeros((7, 15)), "b": jnp.zeros(15)})


# -------------------------------------------------------------------------------------------- equinox


def test_equinox_forward_final_state_and_gradients():
    cell = eqx.nn.LSTMCell(D, H, dtype=F64, key=jax.random.key(7))
    cell = eqx.tree_at(lambda m: m.weight_hh, cell, 3.0 * cell.weight_hh)
    xs, carry = inputs()

    def run(cell, xs, carry):
        def seq(xs, h, c):  # one sequence: the cell is unbatched
            def body(hc, x):
                hc = cell(x, hc)
                return hc, hc[0]

            (h, c), hs = jax.lax.scan(body, (h, c), xs)
            return hs, h, c

        return jax.vmap(seq)(xs, *carry)

    def f(args):
        hs, h, c = run(*args)
        return jax_loss(hs, h, c), (hs, h, c)

    (_, (hs, h, c)), (g_cell, g_xs, g_carry) = eqx.filter_jit(eqx.filter_value_and_grad(f, has_aux=True))(
        (cell, xs, tuple(carry))
    )
    params = interop.from_equinox(cell)
    (hs2, h2, c2), (g_params, g_xs2, g_carry2) = jlstm_single(params, xs, carry)
    close(hs2, hs, "outputs")
    close(h2, h, "h")
    close(c2, c, "c")
    for name, a, b in zip("WUb", g_params, interop.from_equinox(g_cell)):
        close(a, b, f"d{name}")
    close(g_xs2, g_xs, "dxs")
    close(g_carry2.h, g_carry[0], "dh0")
    close(g_carry2.c, g_carry[1], "dc0")
    nontrivial(hs, g_params)

    back = interop.to_equinox(params)
    for name in ("weight_ih", "weight_hh", "bias"):
        exact(getattr(back, name), getattr(cell, name), name)
    p = jlstm_params()
    assert_params_equal(interop.from_equinox(interop.to_equinox(p)), p)
    no_bias = interop.from_equinox(eqx.nn.LSTMCell(D, H, use_bias=False, key=jax.random.key(0)))
    exact(no_bias.b, np.zeros(4 * H))
    with pytest.raises(TypeError, match="eqx.nn.LSTMCell"):
        interop.from_equinox(eqx.nn.GRUCell(D, H, key=jax.random.key(0)))


# ------------------------------------------------------------------------- the two tutorial notations


def ng_forward(parameters, x, a0, c0):
    """The deeplearning.ai assignment's lstm_forward, written out in its own notation (column vectors):
    x [n_x, m, T_x], a0/c0 [n_a, m] -> a [n_a, m, T_x], a_T, c_T."""
    sig = jax.nn.sigmoid
    P = parameters
    a_next, c_next, a = a0, c0, []
    for t in range(x.shape[2]):
        concat = jnp.concatenate([a_next, x[:, :, t]], axis=0)
        ft = sig(P["Wf"] @ concat + P["bf"])
        it = sig(P["Wi"] @ concat + P["bi"])
        cct = jnp.tanh(P["Wc"] @ concat + P["bc"])
        ot = sig(P["Wo"] @ concat + P["bo"])
        c_next = ft * c_next + it * cct
        a_next = ot * jnp.tanh(c_next)
        a.append(a_next)
    return jnp.stack(a, axis=2), a_next, c_next


def test_ng_forward_final_state_gradients_and_round_trip():
    rng = np.random.default_rng(8)
    P = {f"W{g}": rng.normal(size=(H, H + D)) for g in "fico"} | {
        f"b{g}": rng.normal(size=(H, 1)) for g in "fico"
    }
    xs, carry = inputs()
    x, a0, c0 = jnp.transpose(xs, (2, 0, 1)), carry.h.T, carry.c.T  # the course's layouts

    def f(P, x, a0, c0):
        a, aT, cT = ng_forward(P, x, a0, c0)
        hs = jnp.transpose(a, (1, 2, 0))  # [m, T_x, n_a]: jlstm's layout, so the loss is the same function
        return jax_loss(hs, aT.T, cT.T), (hs, aT.T, cT.T)

    (_, (hs, h, c)), (g_P, g_x, g_a0, g_c0) = jax.jit(
        jax.value_and_grad(f, argnums=(0, 1, 2, 3), has_aux=True)
    )(P, x, a0, c0)
    params = interop.from_ng(P | {"Wy": np.zeros((2, H)), "by": np.zeros((2, 1))})
    (hs2, h2, c2), (g_params, g_xs2, g_carry2) = jlstm_single(params, xs, carry)
    close(hs2, hs, "outputs")
    close(h2, h, "a_T")
    close(c2, c, "c_T")
    g_ng = interop.to_ng(g_params)
    for k in P:
        close(g_ng[k], g_P[k], f"d{k}")
    close(g_xs2, jnp.transpose(g_x, (1, 2, 0)), "dx")
    close(g_carry2.h, g_a0.T, "da0")
    close(g_carry2.c, g_c0.T, "dc0")
    nontrivial(hs, g_params)

    back = interop.to_ng(params)
    assert sorted(back) == sorted(P)
    for k in P:
        exact(back[k], P[k], k)
    p = jlstm_params()
    assert_params_equal(interop.from_ng(interop.to_ng(p)), p)
    with pytest.raises(ValueError, match=r"Wo must be \[n_a, n_a \+ n_x\] = \[4, 7\]; got shape \(4, 6\)"):
        interop.from_ng(P | {"Wo": np.zeros((H, 6))})
    with pytest.raises(ValueError, match=r"missing \['bc'\]"):
        interop.from_ng({k: v for k, v in P.items() if k != "bc"})


def seo_forward(Wt, xs, out0, s0):
    """Source 003's cell with its 8 matrices (+ biases), row vectors: xs [B, T, D] -> outs, out_T, S_T."""
    sig = jax.nn.sigmoid
    out, s, outs = out0, s0, []
    for t in range(xs.shape[1]):
        x = xs[:, t]
        A = jnp.tanh(x @ Wt["Wa"] + out @ Wt["Wreca"] + Wt["ba"][None])
        I = sig(x @ Wt["Wi"] + out @ Wt["Wreci"] + Wt["bi"][None])
        F = sig(x @ Wt["Wf"] + out @ Wt["Wrecf"] + Wt["bf"][None])
        O = sig(x @ Wt["Wo"] + out @ Wt["Wreco"] + Wt["bo"][None])
        s = A * I + F * s
        out = jnp.tanh(s) * O
        outs.append(out)
    return jnp.stack(outs, axis=1), out, s


def test_seo_forward_final_state_gradients_and_round_trip():
    rng = np.random.default_rng(9)
    Wt = (
        {f"W{g}": rng.normal(size=(D, H)) for g in "aifo"}
        | {f"Wrec{g}": rng.normal(size=(H, H)) for g in "aifo"}
        | {f"b{g}": rng.normal(size=(H,)) for g in "aifo"}
    )
    xs, carry = inputs()

    def f(Wt, xs, out0, s0):
        hs, h, c = seo_forward(Wt, xs, out0, s0)
        return jax_loss(hs, h, c), (hs, h, c)

    (_, (hs, h, c)), (g_Wt, g_xs, g_o0, g_s0) = jax.jit(
        jax.value_and_grad(f, argnums=(0, 1, 2, 3), has_aux=True)
    )(Wt, xs, carry.h, carry.c)
    params = interop.from_seo(Wt)
    (hs2, h2, c2), (g_params, g_xs2, g_carry2) = jlstm_single(params, xs, carry)
    close(hs2, hs, "outputs")
    close(h2, h, "out_T")
    close(c2, c, "S_T")
    g_seo = interop.to_seo(g_params)
    for k in Wt:
        close(g_seo[k], g_Wt[k], f"d{k}")
    close(g_xs2, g_xs, "dxs")
    close(g_carry2.h, g_o0, "dout0")
    close(g_carry2.c, g_s0, "dS0")
    nontrivial(hs, g_params)

    back = interop.to_seo(params)
    assert sorted(back) == sorted(Wt)
    for k in Wt:
        exact(back[k], Wt[k], k)
    p = jlstm_params()
    assert_params_equal(interop.from_seo(interop.to_seo(p)), p)
    no_bias = interop.from_seo({k: v for k, v in Wt.items() if not k.startswith("b")})
    exact(no_bias.b, np.zeros(4 * H))
    with pytest.raises(ValueError, match="all of the biases"):
        interop.from_seo({k: v for k, v in Wt.items() if k != "bo"})
    with pytest.raises(ValueError, match=r"Wrecf must be \[H, H\] = \[4, 4\]; got shape \(4, 3\)"):
        interop.from_seo(Wt | {"Wrecf": np.zeros((H, 3))})


# --------------------------------------------------------------------------------------------- parity


def test_parity_rows_and_table():
    from jlstm.app import parity

    rows = parity.parity_rows(["equinox"])
    assert [r.library.split()[0] for r in rows] == ["equinox"]
    assert rows[0].dtype == "float64"
    assert 0.0 <= rows[0].out_diff < 1e-12 and 0.0 <= rows[0].grad_diff < 1e-12
    table = parity.format_table(
        [*rows, parity.ParityRow("x", "-", "float64", float("nan"), float("nan"), "skipped")]
    )
    lines = table.splitlines()
    assert len(lines) == 4 and "max |d gradients|" in lines[0] and "nan" in lines[3]
    with pytest.raises(ValueError, match="unknown"):
        parity.parity_rows(["tensorflow"])
