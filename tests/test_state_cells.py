"""Any recurrent state: cells written only against the documented interface run through the one engine
with their own backward, equal autodiff (float64, 1e-10) with lengths (0 included), reverse, remat,
two leading batch axes, a non-zero initial state and cotangents on every final state."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from state_cells import ELMAN, GRU, TOY4, params_for

import jlstm
from jlstm.testing import check_cell

D, H = 3, 4
CELLS = {"elman": ELMAN, "toy4": TOY4, "gru": GRU}


def _problem(cell, batch=(2, 3), T=5, seed=0, heads=None):
    k = jax.random.split(jax.random.key(seed), 4)
    params = params_for(cell, k[0], D, H, heads=heads, scale=1.5)
    xs = jax.random.normal(k[1], batch + (T, D), jnp.float64)
    widths = [H] * len(cell.state)
    carry = tuple(
        0.5 * jax.random.normal(kk, batch + (w,), jnp.float64)
        for kk, w in zip(jax.random.split(k[2], 4), widths)
    )
    lengths = jax.random.randint(k[3], batch, 0, T + 1).at[(0,) * len(batch)].set(0)  # one of length 0
    return params, xs, carry, lengths


def _loss(params, xs, carry, backward, **kw):
    ys, final = jlstm.rnn(params, xs, carry, backward=backward, **kw)
    w = jnp.sin(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
    return jnp.sum(w * ys) + sum(jnp.sum(jnp.cos((j + 1.0) * v)) for j, v in enumerate(final))


def _rel(a, b):
    a, b = jax.tree.leaves(a), jax.tree.leaves(b)
    num = sum(float(jnp.sum((x - y) ** 2)) for x, y in zip(a, b))
    return (num / max(sum(float(jnp.sum(y**2)) for y in b), 1e-300)) ** 0.5


@pytest.mark.parametrize("name", sorted(CELLS))
@pytest.mark.parametrize("reverse, remat", [(False, None), (True, 2)])
def test_manual_equals_autodiff(name, reverse, remat):
    cell = CELLS[name]
    params, xs, carry, lengths = _problem(cell)
    kw = dict(lengths=lengths, reverse=reverse)
    g_m = jax.grad(_loss, argnums=(0, 1, 2))(params, xs, carry, "manual", remat=remat, **kw)
    g_a = jax.grad(_loss, argnums=(0, 1, 2))(params, xs, carry, "autodiff", **kw)
    assert _rel(g_m, g_a) < 1e-10
    assert all(float(jnp.max(jnp.abs(g))) > 0 for g in g_m[2])  # the gradient reaches every initial state


def test_the_state_comes_back_as_the_cells_named_tuple():
    params, xs, carry, lengths = _problem(TOY4)
    ys, final = jlstm.rnn(params, xs, carry, lengths=lengths)
    assert type(final).__name__ == "Toy4State" and final._fields == ("h", "c", "n", "m")
    assert ys.shape == (2, 3, 5, H) and final.n.shape == (2, 3, H)
    # Length 0: the initial state comes back unchanged, and the outputs are zero.
    np.testing.assert_array_equal(final.m[0, 0], carry[3][0, 0])
    np.testing.assert_array_equal(ys[0, 0], 0.0)
    ys2, final2 = jlstm.lstm(params, xs, carry, lengths=lengths)  # jlstm.lstm is the same door
    np.testing.assert_array_equal(ys2, ys)


def test_a_state_of_the_wrong_structure_is_named():
    params, xs, carry, _ = _problem(TOY4)
    with pytest.raises(
        TypeError, match=r"jlstm.rnn: carry must be the 'toy4' cell's state, a tuple \(h, c, n, m\)"
    ):
        jlstm.rnn(params, xs, carry[:2])
    with pytest.raises(ValueError, match=r"jlstm.rnn: carry.n must be \[\.\.\., 4\]"):
        jlstm.rnn(params, xs, (carry[0], carry[1], carry[2][..., :2], carry[3]))
    with pytest.raises(TypeError, match=r"jlstm.rnn: unknown option \['lenghts'\]"):
        jlstm.rnn(params, xs, lenghts=None)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_check_cell_passes_and_a_broken_line_is_named(name, capsys):
    cell = CELLS[name]
    params = params_for(cell, jax.random.key(3), D, H)
    assert check_cell(cell, params, trials=3, verbose=False).ok
    broken = cell._replace(backward=lambda *a: (lambda s: s._replace(dzx=0.5 * s.dzx))(cell.backward(*a)))
    report = check_cell(broken, dataclasses.replace(params, spec=broken), trials=1, verbose=False)
    assert report.first_wrong == "step dzx"


def test_gru_equals_torch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    gru = torch.nn.GRU(D, H, batch_first=True).double()
    x = torch.randn(2, 5, D, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, 2, H, dtype=torch.float64, requires_grad=True)
    out, h_n = gru(x, h0)
    (out.sin().sum() + h_n.cos().sum()).backward()
    sd = {k: jnp.asarray(v.detach().numpy()) for k, v in gru.state_dict().items()}
    b_ih, b_hh = sd["bias_ih_l0"], sd["bias_hh_l0"]
    # torch's rows r, z, n; r and z take b_ih + b_hh, n takes b_in outside r * (...) and b_hn inside.
    b = b_ih + jnp.concatenate([b_hh[: 2 * H], jnp.zeros(H)])
    params = jlstm.CellParams(sd["weight_ih_l0"].T, sd["weight_hh_l0"].T, b, {"b_hn": b_hh[2 * H :]}, GRU)

    def loss(p, xs, h0):
        ys, (h,) = jlstm.rnn(p, xs, (h0,))
        return jnp.sum(jnp.sin(ys)) + jnp.sum(jnp.cos(h))

    xs, h0_j = jnp.asarray(x.detach().numpy()), jnp.asarray(h0.detach().numpy()[0])
    ys, (h,) = jlstm.rnn(params, xs, (h0_j,))
    np.testing.assert_allclose(ys, out.detach().numpy(), rtol=1e-12, atol=1e-13)
    g_p, g_x, g_h = jax.grad(loss, argnums=(0, 1, 2))(params, xs, h0_j)
    np.testing.assert_allclose(g_x, x.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g_h, h0.grad.numpy()[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g_p.W, gru.weight_ih_l0.grad.numpy().T, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g_p.U, gru.weight_hh_l0.grad.numpy().T, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        g_p.extra["b_hn"], gru.bias_hh_l0.grad.numpy()[2 * H :], rtol=1e-10, atol=1e-12
    )
    np.testing.assert_allclose(g_p.b, gru.bias_ih_l0.grad.numpy(), rtol=1e-10, atol=1e-12)


def _dense(U, G):
    """A block-diagonal ``U [heads, R / heads, G dh]`` as the dense ``[R, G H]`` it stands for."""
    heads, rh, n = U.shape
    dh = n // G
    dense = jnp.zeros((heads * rh, G, heads, dh), U.dtype)
    for k in range(heads):
        dense = dense.at[k * rh : (k + 1) * rh, :, k, :].set(U[k].reshape(rh, G, dh))
    return dense.reshape(heads * rh, G * heads * dh)


@pytest.mark.parametrize("name", ["toy4", "gru"])
def test_block_diagonal_heads_equal_the_dense_matrix_they_stand_for(name):
    cell = CELLS[name]
    params, xs, carry, lengths = _problem(cell, heads=2)
    assert params.U.shape == (2, H // 2, cell.num_gates * H // 2)
    dense = dataclasses.replace(params, U=_dense(params.U, cell.num_gates))
    for bw in ("manual", "autodiff"):
        out_h = jlstm.rnn(params, xs, carry, lengths=lengths, backward=bw)
        out_d = jlstm.rnn(dense, xs, carry, lengths=lengths, backward=bw)
        assert _rel(out_h, out_d) < 1e-13
    g_h = jax.grad(_loss, argnums=(0, 1, 2))(params, xs, carry, "manual", lengths=lengths)
    g_a = jax.grad(_loss, argnums=(0, 1, 2))(params, xs, carry, "autodiff", lengths=lengths)
    assert _rel(g_h, g_a) < 1e-10
    g_d = jax.grad(_loss)(dense, xs, carry, "manual", lengths=lengths)
    np.testing.assert_allclose(
        _dense(g_h[0].U, cell.num_gates), g_d.U * (_dense(params.U, cell.num_gates) != 0), atol=1e-12
    )


def test_lstm_params_and_cell_params_run_the_same_engine_bitwise():
    p = jlstm.init(jax.random.key(0), D, H, dtype=jnp.float64)
    cp = jlstm.CellParams(*p, {}, jlstm.CellSpec())
    xs = jax.random.normal(jax.random.key(1), (2, 5, D), jnp.float64)
    lengths = jnp.array([5, 2])
    for bw in ("manual", "autodiff"):
        a, b = (
            jlstm.lstm(p, xs, lengths=lengths, backward=bw),
            jlstm.lstm(cp, xs, lengths=lengths, backward=bw),
        )
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            np.testing.assert_array_equal(x, y)
        ga = jax.grad(_loss)(p, xs, None, bw, lengths=lengths)
        gb = jax.grad(_loss)(cp, xs, None, bw, lengths=lengths)
        for x, y in zip(ga, (gb.W, gb.U, gb.b)):
            np.testing.assert_array_equal(x, y)


def _broken(cell, **change):
    """``cell`` with its forward's or backward's result changed by ``change``."""

    def forward(theta, zx, zh, prev, noise):
        new, res = cell.forward(theta, zx, zh, prev, noise)
        return (change["new"](new) if "new" in change else new), res

    def backward(*args):
        s = cell.backward(*args)
        return change["grads"](s) if "grads" in change else s

    return cell._replace(forward=forward, backward=backward)


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"new": lambda new: (new[0], new[1][:, :2], *new[2:])},
            r"forward returned new\[1\] \(c\) of shape \(2, 2\)",
        ),
        ({"new": lambda new: new[:3]}, r"forward returned new of 3 states; expected a tuple of 4 states"),
        (
            {"grads": lambda s: s._replace(d_prev=s.d_prev[:2])},
            r"backward returned d_prev of a tuple of length 2",
        ),
        ({"grads": lambda s: s._replace(dzx=s.dzx[:, :4])}, r"backward returned dzx of shape \(2, 4\)"),
    ],
)
def test_a_state_cell_that_breaks_the_interface_is_named(change, message):
    bad = _broken(TOY4, **change)
    params = dataclasses.replace(params_for(TOY4, jax.random.key(0), D, H), spec=bad)
    xs = jnp.ones((2, 5, D))
    with pytest.raises((ValueError, TypeError), match=r"^jlstm.rnn: the 'toy4' cell's " + message):
        jlstm.rnn(params, xs)


def test_a_state_cells_dtheta_not_summed_over_the_batch_is_named():
    bad = _broken(GRU, grads=lambda s: s._replace(dtheta={"b_hn": jnp.zeros((2, H))}))
    params = dataclasses.replace(params_for(GRU, jax.random.key(0), D, H), spec=bad)
    with pytest.raises(ValueError, match=r"dtheta\['b_hn'\] of shape \(2, 4\).*not summed over the batch"):
        jlstm.rnn(params, jnp.ones((2, 5, D)))
