"""A user's own cell through the documented interface, and check_cell pointing at a wrong line."""

import jax
import jax.numpy as jnp
import pytest

import jlstm
from jlstm.cells.custom import init_params
from jlstm.testing import check_cell


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
    # The bug is in the a block alone (block 0 of a, f): the row says which block, not only dzx.
    assert report.rows[0].note == "wrong in gate block 0 (columns 0:4) of 2"
    assert any(not r.ok for r in report.rows if r.quantity.startswith("sequence"))
    # The finite-difference row keeps check_grads's own message (and its relative difference), not only inf.
    fd = report.rows[-1]
    assert fd.quantity == "finite differences (manual)" and not fd.ok
    assert fd.note.startswith("check_grads raised AssertionError:") and "Not equal to tolerance" in fd.note
    assert 0 < fd.rel_err < float("inf")
    assert "check_grads raised AssertionError: Not equal to tolerance" in report.table()


def test_a_user_cell_runs_like_any_other():
    janet = jlstm.Cell("janet", 2, janet_forward, make_backward())
    params = init_params(jax.random.key(0), janet, 3, 4)
    hs, (h, c) = jlstm.lstm(params, jnp.ones((2, 5, 3)), lengths=jnp.array([5, 2]))
    assert hs.shape == (2, 5, 4)
    assert bool(jnp.all(hs[1, 2:] == 0)) and bool(jnp.allclose(h, c, rtol=1e-14))
    with pytest.raises(TypeError, match="cell must be a jlstm.Cell"):
        init_params(jax.random.key(0), object(), 3, 4)


# ---------------------------------------------------------------- delta_state, the finite-difference note


def _rows(cell, params):
    from jlstm.testing import _step_rows

    theta = dict(params.extra) | ({} if cell.bias_in_projection else {"b": params.b})
    rows = _step_rows(cell, theta, params.hidden_size, params.output_size, jax.random.key(1))
    return {r.quantity: r for r in rows}


def test_a_wrong_delta_state_is_named():
    good = make_backward()

    def backward(*args):
        s = good(*args)
        return s._replace(delta_state=2 * s.delta_state)  # what lstm_trace would report, off by 2

    janet = jlstm.Cell("janet", 2, janet_forward, backward)
    rows = _rows(janet, init_params(jax.random.key(0), janet, 3, 4, dtype=jnp.float64))
    assert [n for n, r in rows.items() if not r.ok] == ["step delta_state"]  # the one wrong line
    assert rows["step delta_state"].rel_err == pytest.approx(1.0)
    assert (
        _rows(
            jlstm.Cell("janet", 2, janet_forward, good),
            init_params(jax.random.key(0), janet, 3, 4, dtype=jnp.float64),
        )["step delta_state"].rel_err
        < 1e-14
    )


def test_the_delta_state_row_agrees_with_the_built_in_cells():
    # delta_state = d_n + dc + (p_o's term), masked by the clip: what reaches it changes with the output
    # activation (NOAF), peepholes, the projection and layer norm; the gates a, i, f (NIG, NFG, NIAF, CIFG)
    # enter dz and dc_prev, not delta_state. (Every variant, NOG too, plain and with every option, agrees:
    # checked once, 1.1e-16 at most; four gates only here, as each gate count compiles its ops anew.)
    # Without a cell clip: where it is active jlstm's delta_state is the gradient of the unclipped sum.
    from jlstm.cells.family import family_cell

    every = dict(peephole=True, proj_size=2, layer_norm=True)
    for variant, opts in [(None, {}), (None, every), ("NOAF", every)]:
        p = jlstm.init(jax.random.key(0), 3, 4, variant=variant, dtype=jnp.float64, **opts)
        p = p if isinstance(p, jlstm.CellParams) else jlstm.CellParams(*p, {}, jlstm.CellSpec())
        row = _rows(family_cell(p.spec, None), p)["step delta_state"]
        assert row.ok and not row.note, (variant, opts, row)


# ---------------------------------------------------------------- malformed cells: the field is named


def beta_forward(theta, zx, zh, h_prev, c_prev, noise):
    """JANET with its own parameter: f = s(z^f - beta) (the paper's shift, per unit)."""
    H = c_prev.shape[-1]
    z = zx + zh
    a, f = jnp.tanh(z[:, :H]), jax.nn.sigmoid(z[:, H:] - theta["beta"][None])
    c = f * c_prev + (1 - f) * a
    return c, c, (a, f)


def beta_backward(summed=True, keys=("beta",)):
    def backward(theta, res, c_prev, c, g_h, dh, dc, noise):
        a, f = res
        ds = g_h + dh + dc
        dz_f = ds * (c_prev - a) * f * (1 - f)
        dz = jnp.concatenate([ds * (1 - f) * (1 - a * a), dz_f], -1)
        dbeta = -dz_f.sum(0) if summed else -dz_f  # the bug: a gradient per sample
        return jlstm.CellGrads(dz, None, None, ds * f, {k: dbeta for k in keys}, ds)

    return backward


def beta_params(cell, key=0):
    return init_params(jax.random.key(key), cell, 3, 4, theta={"beta": jnp.full((4,), 0.5)})


def _everywhere(cell, params, match, kind=ValueError):
    """The same message, naming the cell, from lstm, lstm_trace (B = 2) and check_cell (B = 3)."""
    xs = jnp.ones((2, 5, 3))
    named = f"the {cell.name!r} cell's {match}"
    with pytest.raises(kind, match="^jlstm.lstm: " + named):
        jlstm.lstm(params, xs)
    with pytest.raises(kind, match="^jlstm.lstm_trace: " + named):
        jlstm.lstm_trace(params, xs, jnp.ones((2, 5, params.output_size)))
    with pytest.raises(kind, match="^check_cell: " + named):
        check_cell(cell, params, verbose=False)


def test_a_forward_of_the_wrong_width_is_named():
    def forward(theta, zx, zh, h_prev, c_prev, noise):
        h, c, res = janet_forward(theta, zx, zh, h_prev, c_prev, noise)
        return jnp.concatenate([h, h], -1), c, res

    cell = jlstm.Cell("janet", 2, forward, make_backward())
    _everywhere(
        cell,
        init_params(jax.random.key(0), cell, 3, 4),
        r"forward returned h of shape \(\d, 8\)",
    )


def test_a_cell_state_of_another_dtype_is_named():
    def forward(theta, zx, zh, h_prev, c_prev, noise):
        h, c, res = janet_forward(theta, zx, zh, h_prev, c_prev, noise)
        return h, c.astype(jnp.float32), res

    cell = jlstm.Cell("janet", 2, forward, make_backward())
    match = r"forward returned c of shape \(\d, 4\) dtype float32; expected .* dtype float64"
    _everywhere(cell, init_params(jax.random.key(0), cell, 3, 4, dtype=jnp.float64), match, TypeError)


def test_a_dzx_of_the_wrong_shape_is_named():
    good = make_backward()

    def backward(*args):
        s = good(*args)
        return s._replace(dzx=s.dzx[:, :-1])

    cell = jlstm.Cell("janet", 2, janet_forward, backward)
    match = r"backward returned dzx of shape \(\d, 7\) dtype float64; expected shape \(\d, 8\)"
    _everywhere(cell, init_params(jax.random.key(0), cell, 3, 4), match)


def test_a_missing_dtheta_entry_is_named():
    cell = jlstm.Cell("janet-beta", 2, beta_forward, beta_backward(keys=()))
    _everywhere(cell, beta_params(cell), r"backward returned dtheta of keys \[\] \(missing \['beta'\]\)")


def test_a_dtheta_not_summed_over_the_batch_is_named():
    cell = jlstm.Cell("janet-beta", 2, beta_forward, beta_backward(summed=False))
    match = r"backward returned dtheta\['beta'\] of shape \(\d, 4\) .*expected shape \(4,\) "
    match += "(.*)not summed over the batch"
    _everywhere(cell, beta_params(cell), match)


def test_an_error_in_the_cells_own_code_names_the_cell():
    cell = jlstm.Cell("janet-beta", 2, beta_forward, beta_backward())
    params = init_params(jax.random.key(0), cell, 3, 4)  # no theta: theta["beta"] is missing
    _everywhere(cell, params, r"forward raised KeyError .*: 'beta'")


def test_params_of_another_gate_count_are_refused():
    janet = jlstm.Cell("janet", 2, janet_forward, make_backward())
    four = jlstm.init(jax.random.key(0), 3, 4)  # W [3, 16], U [4, 16]: read with G = 2, H = 8 but R = 4
    mixed = jlstm.CellParams(*four, {}, janet)
    _everywhere(
        janet,
        mixed,
        r"forward returned h of shape \(\d, 8\).* as if params were built for another num_gates than 2",
    )
    with pytest.raises(
        ValueError,
        match=r"params were built for the 'lstm4' cell \(params.spec, 4 gates\), not for the 'janet' cell",
    ):
        check_cell(janet, init_params(jax.random.key(0), jlstm.Cell("lstm4", 4, janet_forward, None), 3, 4))
    with pytest.raises(
        ValueError, match=r"check_cell: params were built for the built-in cell CellSpec\(.*peephole=True"
    ):
        check_cell(janet, jlstm.init(jax.random.key(0), 3, 4, peephole=True))
    odd = jlstm.CellParams(jnp.ones((3, 9)), jnp.ones((4, 9)), jnp.ones(9), {}, janet)
    with pytest.raises(
        ValueError,
        match=r"check_cell: params.W must be \[D, GH\] with G = cell.num_gates = 2 .* got shape \(3, 9\)",
    ):
        check_cell(janet, odd)
