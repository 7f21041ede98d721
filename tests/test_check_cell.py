"""A user's own cell through the documented interface, and check_cell pointing at a wrong line."""

import jax
import jax.numpy as jnp
import pytest

import jlstm
from jlstm.cells.check import check_cell
from jlstm.cells.custom import init_params


def janet_forward(theta, zx, zh, h_prev, c_prev, noise):
    """JANET (van der Westhuizen & Lasenby 2018): c = f c_prev + (1 - f) tanh(z^a), h = c."""
    H = c_prev.shape[-1]
    z = zx + zh
    a, f = jnp.tanh(z[:, :H]), jax.nn.sigmoid(z[:, H:])
    c = f * c_prev + (1 - f) * a
    return c, c, (a, f)


def make_backward(wrong_factor=False):
    def backward(theta, res, c_prev, c, g_h, dh, dc, noise):
        a, f = res
        ds = g_h + dh + dc  # h = c: both paths reach the state
        da = ds if wrong_factor else ds * (1 - f)  # the deliberate bug drops (1 - f)
        dz = jnp.concatenate([da * (1 - a * a), ds * (c_prev - a) * f * (1 - f)], -1)
        return jlstm.CellGrads(dz, None, None, ds * f, {}, ds)

    return backward


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def test_a_correct_user_cell_passes_every_check(capsys):
    janet = jlstm.Cell("janet", 2, janet_forward, make_backward())
    report = check_cell(janet, init_params(jax.random.key(0), janet, 3, 4))
    assert report.ok, report.table()
    assert "| step dzx |" in capsys.readouterr().out
    names = [r.quantity for r in report.rows]
    assert {"step dzx", "step dc_prev", "sequence dW", "sequence dU", "sequence dxs"} <= set(names)


def test_a_wrong_line_is_named_first():
    janet = jlstm.Cell("janet", 2, janet_forward, make_backward(wrong_factor=True))
    report = check_cell(janet, init_params(jax.random.key(0), janet, 3, 4), verbose=False)
    assert not report.ok
    assert report.first_wrong == "step dzx"
    assert any(not r.ok for r in report.rows if r.quantity.startswith("sequence"))


def test_a_user_cell_runs_like_any_other():
    janet = jlstm.Cell("janet", 2, janet_forward, make_backward())
    params = init_params(jax.random.key(0), janet, 3, 4)
    hs, (h, c) = jlstm.lstm(params, jnp.ones((2, 5, 3)), lengths=jnp.array([5, 2]))
    assert hs.shape == (2, 5, 4)
    assert bool(jnp.all(hs[1, 2:] == 0)) and bool(jnp.allclose(h, c, rtol=1e-14))
    with pytest.raises(TypeError, match="cell must be a jlstm.Cell"):
        init_params(jax.random.key(0), object(), 3, 4)
