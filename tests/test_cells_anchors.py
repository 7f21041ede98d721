"""The cell variants against outside references: projection against ``torch.nn.LSTM(proj_size)``, layer
norm against a torch restatement of haste's ``LayerNormLSTM``, recurrent dropout against Keras 3's
``LSTMCell`` with jlstm's masks injected. Float64 except where Keras computes in float32."""

import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported anywhere in this process

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from comparisons import close, close32, exact, jax_loss, nontrivial, torch_grads_match, torch_loss

import jlstm
from jlstm import interop
from jlstm.cells import dropout as _dropout
from jlstm.interop._common import JLSTM_GATES, _reorder

T, B, D, H, P = 5, 3, 3, 5, 3
F64 = jnp.float64
HASTE_GATES = ("i", "a", "f", "o")  # haste: i, g, f, o
torch.set_num_threads(1)


def _stack(finals, k):
    flat = [s for layer in finals for s in (layer if not isinstance(layer, jlstm.LSTMState) else (layer,))]
    return jnp.stack([s[k] for s in flat])


def inputs(seed):
    kx, kh, kc = jax.random.split(jax.random.key(seed), 3)
    xs = jax.random.normal(kx, (B, T, D), F64)
    return xs, jlstm.LSTMState(
        0.5 * jax.random.normal(kh, (B, H), F64), 0.5 * jax.random.normal(kc, (B, H), F64)
    )


def t64(a, grad=True):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=grad)


# ------------------------------------------------------------------------------------ projection (torch)


@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, True)])
def test_projection_equals_torch_lstm_proj_size(num_layers, bidirectional):
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(D, H, num_layers=num_layers, bidirectional=bidirectional, batch_first=True,
                         proj_size=P).double()  # fmt: skip
    with torch.no_grad():  # larger than torch's init so the gates are far from 0.5
        for p in lstm.parameters():
            p.mul_(3.0)
    L = num_layers * (2 if bidirectional else 1)
    x = torch.randn(B, T, D, dtype=torch.float64, requires_grad=True)
    h0 = (0.5 * torch.randn(L, B, P, dtype=torch.float64)).requires_grad_()
    c0 = (0.5 * torch.randn(L, B, H, dtype=torch.float64)).requires_grad_()
    out, (hn, cn) = lstm(x, (h0, c0))
    torch_loss(out, hn, cn).backward()
    assert sum(name.startswith("weight_hr") for name, _ in lstm.named_parameters()) == L

    layers = interop.from_torch(lstm)
    first = layers[0][0] if bidirectional else layers[0]
    assert first.spec == jlstm.CellSpec(proj_size=P) and first.U.shape == (P, 4 * H)
    exact(first.extra["P"], lstm.weight_hr_l0.detach().T)
    carries = interop.from_torch_state((h0, c0), bidirectional=bidirectional)

    def f(layers, xs, carries):
        if num_layers == 1:  # the single layer through jlstm.lstm itself
            hs, final = jlstm.lstm(layers[0], xs, carries[0])
            finals = [final]
        else:
            hs, finals = jlstm.stacked_lstm(layers, xs, carries, bidirectional=bidirectional)
        return jax_loss(hs, _stack(finals, 0), _stack(finals, 1)), (hs, finals)

    (_, (hs, finals)), (g_layers, g_xs, g_carries) = jax.jit(
        jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True)
    )(layers, jnp.asarray(x.detach().numpy()), carries)

    close(hs, out.detach(), "outputs")
    h_fin, c_fin = interop.to_torch_state(finals)
    assert h_fin.shape == (L, B, P) and c_fin.shape == (L, B, H)
    close(h_fin, hn.detach(), "h_n")
    close(c_fin, cn.detach(), "c_n")
    torch_grads_match(g_layers, g_xs, g_carries, lstm, x, h0, c0)
    nontrivial(hs, g_layers, g_xs, g_carries)


def test_projection_round_trips_are_exact():
    torch.manual_seed(1)
    lstm = torch.nn.LSTM(D, H, num_layers=2, bidirectional=True, proj_size=P).double()
    sd = lstm.state_dict()
    back = interop.to_torch(interop.from_torch(sd))
    assert list(back) == list(sd)  # the same keys, weight_hr included, in torch's order
    for k, v in sd.items():
        if k.startswith("weight"):
            exact(back[k], v, k)
        elif k.startswith("bias_ih"):
            exact(back[k], v + sd[k.replace("ih", "hh")], k)
        else:
            exact(back[k], 0.0 * v, k)
        assert back[k].dtype == torch.float64
    torch.nn.LSTM(D, H, num_layers=2, bidirectional=True, proj_size=P).double().load_state_dict(back)

    keys = jax.random.split(jax.random.key(2), 4)
    init = lambda k, d: jlstm.init(k, d, H, proj_size=P, dtype=F64)  # noqa: E731
    layers = [(init(keys[0], D), init(keys[1], D)), (init(keys[2], 2 * P), init(keys[3], 2 * P))]
    again = interop.from_torch(interop.to_torch(layers))
    for a, b in zip(jax.tree.leaves(layers), jax.tree.leaves(again)):
        exact(a, b)
    assert jax.tree.structure(again) == jax.tree.structure(layers)
    h, c = np.ones((4, B, P)), np.zeros((4, B, H))
    (f, b), _ = interop.from_torch_state((h, c), bidirectional=True)
    assert f.h.shape == (B, P) and f.c.shape == (B, H)


def test_projection_interop_errors_name_the_problem():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"peephole=True, which torch.nn.LSTM does not have"):
        interop.to_torch([jlstm.init(key, D, H, peephole=True, proj_size=P)])
    with pytest.raises(ValueError, match=r"layers\[0\]\[1\] has layer_norm=True"):
        interop.to_torch([(jlstm.init(key, D, H), jlstm.init(key, D, H, layer_norm=True))])
    with pytest.raises(ValueError, match=r"variant='CIFG', cell_clip=3.0"):
        interop.to_torch(jlstm.init(key, D, H, variant="CIFG", cell_clip=3))
    with pytest.raises(ValueError, match=r"layers\[1\] has proj_size 2 but layers\[0\] has 3"):
        interop.to_torch([jlstm.init(key, D, H, proj_size=3), jlstm.init(key, 3, H, proj_size=2)])
    with pytest.raises(ValueError, match=r"layers\[1\] has proj_size None but layers\[0\] has 3"):
        interop.to_torch([jlstm.init(key, D, H, proj_size=3), jlstm.init(key, 3, H)])
    mine = jlstm.CellParams(*jlstm.init(key, D, H), {}, jlstm.Cell("mine", 4, None, None))
    with pytest.raises(ValueError, match=r"layers\[0\] is a 'mine' cell"):
        interop.to_torch([mine])
    sd = dict(torch.nn.LSTM(D, H, num_layers=2, proj_size=P).state_dict())
    bad = dict(sd, weight_hr_l0=torch.zeros(H, H))
    with pytest.raises(ValueError, match=r"weight_hr_l0 must be \[P, H\] with 0 < P < H"):
        interop.from_torch(bad)
    bad = dict(sd, weight_hh_l0=torch.zeros(4 * H, H))
    with pytest.raises(ValueError, match=r"weight_hh_l0 must be \[4H, P\] = \[20, 3\]; got shape \(20, 5\)"):
        interop.from_torch(bad)
    bad = {k: v for k, v in sd.items() if k != "weight_hr_l1"}
    with pytest.raises(ValueError, match="layer 0 has proj_size 3"):
        interop.from_torch(bad)
    with pytest.raises(ValueError, match=r"h and c must be \[L \* dirs, B, R\]"):
        interop.from_torch_state((np.zeros((1, B, H + 1)), np.zeros((1, B, H))))


# -------------------------------------------------------------------------------- layer norm (haste)


def haste_layer_norm_lstm(xs, h0, c0, kernel, recurrent_kernel, bias, gamma, gamma_h, beta_h, beta=None):
    """haste's ``LayerNormLSTMScript`` (lmnt-com/haste, frameworks/pytorch/layer_norm_lstm.py), restated:
    gates i, g, f, o; ``gamma [2, 4H]`` on LN(x W) and LN(h U) with no beta (``beta [2, 4H]`` here is Ba
    et al.'s general form, None for haste's); ``gamma_h, beta_h [H]`` on LN(c) inside the tanh only; the
    raw c carried; eps 1e-5 (``F.layer_norm``'s default). ``xs [T, B, D]``; returns ``hs [T, B, H]``, h, c."""
    n = recurrent_kernel.shape[1]
    b0, b1 = (None, None) if beta is None else (beta[0], beta[1])
    Wx = F.layer_norm(xs @ kernel, (n,), weight=gamma[0], bias=b0)
    h, c, hs = h0, c0, []
    for t in range(xs.shape[0]):
        v = F.layer_norm(h @ recurrent_kernel, (n,), weight=gamma[1], bias=b1) + Wx[t] + bias
        i, g, f, o = torch.chunk(v, 4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(F.layer_norm(c, (n // 4,), weight=gamma_h, bias=beta_h))
        hs.append(h)
    return torch.stack(hs), h, c


def _ln_params(with_beta: bool):
    rng = np.random.default_rng(3)
    normal = lambda *s: jnp.asarray(rng.normal(size=s))  # noqa: E731
    extra = {
        "gamma_x": 1 + 0.3 * normal(4 * H), "gamma_h": 1 + 0.3 * normal(4 * H),
        "gamma_c": 1 + 0.3 * normal(H), "beta_c": 0.3 * normal(H),
        "beta_x": jnp.zeros(4 * H, F64), "beta_h": jnp.zeros(4 * H, F64),
    }  # fmt: skip
    if with_beta:
        extra |= {"beta_x": 0.3 * normal(4 * H), "beta_h": 0.3 * normal(4 * H)}
    return jlstm.CellParams(normal(D, 4 * H), normal(H, 4 * H), 0.5 * normal(4 * H), extra,
                            jlstm.CellSpec(layer_norm=True))  # fmt: skip


def _to_haste(a):
    return _reorder(np.asarray(a), JLSTM_GATES, HASTE_GATES)


def _from_haste(a):
    return _reorder(np.asarray(a), HASTE_GATES, JLSTM_GATES)


@pytest.mark.parametrize("with_beta", [False, True], ids=["haste", "gate_ln_beta"])
def test_layer_norm_equals_haste_layer_norm_lstm(with_beta):
    params = _ln_params(with_beta)
    xs, carry = inputs(4)

    def f(params, xs, carry):
        hs, (h, c) = jlstm.lstm(params, xs, carry)
        return jax_loss(hs, h, c), (hs, h, c)

    (_, (hs, h, c)), (g, g_xs, g_carry) = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))(
        params, xs, carry
    )

    e = params.extra
    ht = {
        "kernel": t64(_to_haste(params.W)), "recurrent_kernel": t64(_to_haste(params.U)),
        "bias": t64(_to_haste(params.b)), "gamma_h": t64(e["gamma_c"]), "beta_h": t64(e["beta_c"]),
        "gamma": t64(np.stack([_to_haste(e["gamma_x"]), _to_haste(e["gamma_h"])])),
    }  # fmt: skip
    if with_beta:
        ht["beta"] = t64(np.stack([_to_haste(e["beta_x"]), _to_haste(e["beta_h"])]))
    x_t, h0, c0 = t64(np.swapaxes(np.asarray(xs), 0, 1)), t64(carry.h), t64(carry.c)
    hs_t, h_t, c_t = haste_layer_norm_lstm(x_t, h0, c0, **ht)
    hs_t = hs_t.transpose(0, 1)
    torch_loss(hs_t, h_t, c_t).backward()

    close(hs, hs_t.detach(), "outputs")
    close(h, h_t.detach(), "h")
    close(c, c_t.detach(), "c (the raw cell state, carried)")
    grad = lambda name: ht[name].grad  # noqa: E731
    close(g.W, _from_haste(grad("kernel")), "dW")
    close(g.U, _from_haste(grad("recurrent_kernel")), "dU")
    close(g.b, _from_haste(grad("bias")), "db")
    close(g.extra["gamma_x"], _from_haste(grad("gamma")[0]), "dgamma_x")
    close(g.extra["gamma_h"], _from_haste(grad("gamma")[1]), "dgamma_h")
    close(g.extra["gamma_c"], grad("gamma_h"), "dgamma_c")
    close(g.extra["beta_c"], grad("beta_h"), "dbeta_c")
    if with_beta:
        close(g.extra["beta_x"], _from_haste(grad("beta")[0]), "dbeta_x")
        close(g.extra["beta_h"], _from_haste(grad("beta")[1]), "dbeta_h")
    close(g_xs, np.swapaxes(x_t.grad.numpy(), 0, 1), "dxs")
    close(g_carry.h, h0.grad, "dh0")
    close(g_carry.c, c0.grad, "dc0")
    nontrivial(hs, g, g_xs, g_carry)


# ---------------------------------------------------------------------------- recurrent dropout (keras)


@pytest.mark.parametrize(
    "rate,input_rate,tied", [(0.4, 0.3, False), (0.0, 0.3, True)], ids=["per_gate", "input_only_tied"]
)
def test_recurrent_dropout_equals_keras_with_the_same_masks(rate, input_rate, tied):
    """Keras 3.15's ``DropoutRNNCell`` caches its masks in ``cell._dropout_mask`` and
    ``cell._recurrent_dropout_mask`` (a list of 4, gates i, f, c, o, when ``recurrent_dropout > 0``
    forces ``implementation=1``; one array for ``dropout`` alone) and reuses a cached mask instead of
    drawing one. So jlstm's masks, drawn from the key as ``jlstm.lstm`` draws them, are put there.

    Keras on JAX computes tanh in float32 even for float64 tensors (keras.backend.result_type maps float64
    to float32 on non-TensorFlow backends), so the comparison holds to float32 accuracy only."""
    keras.utils.set_random_seed(5)
    cell = keras.layers.LSTMCell(H, dropout=input_rate, recurrent_dropout=rate, dtype="float64",
                                 bias_initializer="random_normal")  # fmt: skip
    layer = keras.layers.RNN(cell, return_sequences=True, return_state=True, dtype="float64")
    with jax.numpy_rank_promotion("allow"):  # keras's initialisers rely on numpy broadcasting
        layer.build((B, T, D))
    params = interop.from_keras(cell)
    xs, carry = inputs(6)
    key, rd = jax.random.key(7), jlstm.RecurrentDropout(rate=rate, input_rate=input_rate, tied=tied)

    _, k_drop = jax.random.split(key)  # as jlstm.functional._draw_masks: (zoneout's key, dropout's key)
    mx, mh, _ = _dropout.draw(k_drop, rd, B, 4, D, H, params.U.shape, F64)
    order = [JLSTM_GATES.index(g) for g in interop.KERAS_GATES]
    assert float(jnp.min(mx)) == 0.0 and (mh is None or float(jnp.min(mh)) == 0.0)

    trainable = [jnp.asarray(v.value) for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]

    def f_keras(trainable, xs, carry):
        cell._dropout_mask = mx[:, 0] if tied else [mx[:, k] for k in order]
        cell._recurrent_dropout_mask = None if mh is None else [mh[:, k] for k in order]
        (hs, h, c), _ = layer.stateless_call(trainable, non_trainable, xs, initial_state=list(carry),
                                             training=True)  # fmt: skip
        return jax_loss(hs, h, c), (hs, h, c)

    def f_jlstm(params, xs, carry):
        hs, (h, c) = jlstm.lstm(params, xs, carry, recurrent_dropout=rd, key=key)
        return jax_loss(hs, h, c), (hs, h, c)

    grad = lambda f, *a: jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))(*a)  # noqa: E731
    with jax.numpy_rank_promotion("allow"):  # keras relies on numpy broadcasting
        (_, (hs, h, c)), (g_w, g_xs, g_carry) = grad(f_keras, trainable, xs, carry)
    (_, (hs2, h2, c2)), (g_params, g_xs2, g_carry2) = grad(f_jlstm, params, xs, carry)
    close32(hs2, hs, "outputs")
    close32(h2, h, "h")
    close32(c2, c, "c")
    for name, a, b in zip("WUb", g_params, interop.from_keras(g_w)):
        close32(a, b, f"d{name}")
    close32(g_xs2, g_xs, "dxs")
    close32(g_carry2.h, g_carry.h, "dh0")
    close32(g_carry2.c, g_carry.c, "dc0")
    hs_eval = jlstm.lstm(params, xs, carry)[0]
    assert float(jnp.max(jnp.abs(hs_eval - hs2))) > 1e-2  # the masks changed something
    nontrivial(hs, g_params)
