"""The introspection API (trace_loss) against autodiff, and the gradient-flow study."""

import csv
import json

import jax
import jax.numpy as jnp
import numpy as np
from helpers import problem, rel_err
from jax import lax

import jlstm
from jlstm.app import gradflow
from jlstm.core.cell import activate, step


def _perturbed_loss(params, xs, carry, e_h, e_c, e_z, loss_fn):
    """An LSTM written out step by step, with zero perturbations added to z_t, c_t and h_t.

    The gradient w.r.t. e_h[t] is dL/dh_t in total, w.r.t. e_c[t] is dL/dc_t and w.r.t. e_z[t] is
    dL/dz_t (pre-activations): what the source calls delta out_t, delta state_t and delta gates_t.
    """

    def body(carry, inp):
        h, c = carry
        x, eh, ec, ez = inp
        gates = activate(x @ params.W + h @ params.U + params.b[None] + ez)
        h, c = step(gates, c)
        c = c + ec
        # h_t = tanh(c_t) o_t uses the perturbed c_t, so dL/de_c is the total dL/dc_t.
        h = jnp.tanh(c) * gates[..., 3 * params.hidden_size :] + eh
        return (h, c), h

    swap = lambda a: jnp.swapaxes(a, 0, 1)  # noqa: E731
    (h, c), hs = lax.scan(body, tuple(carry), tuple(map(swap, (xs, e_h, e_c, e_z))))
    return loss_fn(swap(hs), jlstm.LSTMState(h, c))


def test_trace_loss_agrees_with_autodiff_step_by_step(key):
    params, xs, c0 = problem(key, (3,), T=6, D=3, H=4)
    w = jnp.sin(jnp.arange(3 * 6 * 4, dtype=jnp.float64)).reshape(3, 6, 4)

    def loss_fn(hs, final):
        return jnp.sum(w * hs**2) + jnp.sum(jnp.cos(final.h)) + 0.7 * jnp.sum(final.c**2)

    lt = gradflow.trace_loss(params, xs, loss_fn, c0)
    # Parameters, inputs and initial carry: the same as jax.grad through the autodiff forward.
    full = lambda p, x, c: loss_fn(*jlstm.lstm(p, x, c, backward="autodiff"))  # noqa: E731
    loss, want = jax.value_and_grad(full, argnums=(0, 1, 2))(params, xs, c0)
    np.testing.assert_allclose(lt.loss, loss, rtol=1e-13)
    assert rel_err((lt.dparams, lt.dxs, lt.dcarry0), want) < 1e-11
    # Per-step quantities: autodiff w.r.t. perturbations inside a step-by-step LSTM.
    zeros_h = jnp.zeros((3, 6, 4))
    zeros_z = jnp.zeros((3, 6, 16))
    g_h, g_c, g_z = jax.grad(_perturbed_loss, argnums=(3, 4, 5))(
        params, xs, c0, zeros_h, zeros_h, zeros_z, loss_fn
    )
    np.testing.assert_allclose(lt.trace.delta_out, g_h, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(lt.trace.delta_state, g_c, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(lt.trace.delta_gates, g_z, rtol=1e-10, atol=1e-13)
    # Delta out_{t-1} = U^T . delta gates_t (the corrected formula of the source).
    np.testing.assert_allclose(lt.trace.Delta_out_prev, g_z @ params.U.T, rtol=1e-10, atol=1e-13)
    assert float(jnp.min(jnp.abs(g_h))) > 0  # the loss reaches every step, so the check means something


def test_rnn_perturbation_gradient_is_dl_dh():
    """The tanh RNN's dL/dh_t from the zero-perturbation trick equals a hand-unrolled chain rule."""
    p = gradflow.rnn_init(jax.random.key(1), 2, 3)
    p = jax.tree.map(lambda a: a.astype(jnp.float64) * 3.0, p)
    xs = jax.random.normal(jax.random.key(2), (2, 5, 2), jnp.float64)
    hs, hT = gradflow.rnn(p, xs)
    # The last step's gradient is the loss's; each earlier one is U (1 - h^2) times the next.
    loss = lambda e: jnp.sum(jnp.sin(gradflow.rnn(p, xs, e)[1]))  # noqa: E731
    g = jax.grad(loss)(jnp.zeros((2, 5, 3)))
    want = [None] * 5
    want[4] = np.cos(np.asarray(hT))
    for t in (3, 2, 1, 0):
        want[t] = (want[t + 1] * (1 - np.asarray(hs[:, t + 1]) ** 2)) @ np.asarray(p["U"]).T
    np.testing.assert_allclose(g, np.stack(want, 1), rtol=1e-12)


def test_forget_bias_keeps_gradient_alive_where_the_rnn_loses_it():
    cfg = gradflow.StudyConfig(steps=0, seq_len=40, hidden_size=16, forget_biases=(3.0,))
    models = gradflow._models(cfg)
    xs, ys = gradflow.adding_batch(np.random.default_rng(0), 32, 40)
    (k_lstm, p_lstm), (k_rnn, p_rnn) = models["LSTM, forget bias 3"], models["tanh RNN"]
    g_lstm = gradflow.gradient_profile(k_lstm, p_lstm, xs, ys)["grad_h"]
    g_rnn = gradflow.gradient_profile(k_rnn, p_rnn, xs, ys)["grad_h"]
    assert g_lstm.shape == g_rnn.shape == (40,)
    # Relative to the loss step, 39 steps back.
    assert g_lstm[0] / g_lstm[-1] > 100 * g_rnn[0] / g_rnn[-1]


def test_study_models_are_the_three_lstms_and_the_rnn():
    models = gradflow._models(gradflow.StudyConfig(hidden_size=3))
    assert list(models) == ["LSTM, forget bias 0", "LSTM, forget bias 1", "LSTM, forget bias 3", "tanh RNN"]
    fb3 = models["LSTM, forget bias 3"][1]["core"]
    np.testing.assert_array_equal(fb3.b[6:9], 3.0)
    assert models["tanh RNN"][1]["core"]["U"].shape == (3, 3)


def test_study_smoke(tmp_path):
    cfg = gradflow.StudyConfig(steps=2, seq_len=6, hidden_size=4, batch_size=4, n_probe=5,
                               forget_biases=(1.0,), out=str(tmp_path))  # fmt: skip
    result = gradflow.run(cfg)
    rows = list(csv.DictReader((tmp_path / "gradflow.csv").read_text().splitlines()))
    assert len(rows) == 2 * 2 * 6  # models x phases x steps
    assert {r["model"] for r in rows} == {"LSTM, forget bias 1", "tanh RNN"}
    at_loss = [float(r["grad_h_relative"]) for r in rows if r["distance"] == "0"]
    assert at_loss == [1.0] * 4
    assert (tmp_path / "gradflow.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert set(saved["decay"]["tanh RNN"]) == {"init", "trained"}
    assert saved["test_mse"]["tanh RNN"]["init"] > 0
    assert "tanh RNN" in gradflow.describe(result)


def test_study_takes_cell_variants(tmp_path):
    cfg = gradflow.StudyConfig(steps=1, seq_len=6, hidden_size=4, batch_size=4, n_probe=5, forget_biases=(),
                               variants=("peephole", "NFG"), out=str(tmp_path))  # fmt: skip
    models = gradflow._models(cfg)
    assert list(models) == ["LSTM, peephole", "LSTM, NFG", "tanh RNN"]
    assert models["LSTM, NFG"][1]["core"].spec == jlstm.CellSpec(variant="NFG", peephole=True)
    result = gradflow.run(cfg)
    # Its gradients come from lstm_trace of the NFG cell's own hand-written backward.
    assert np.isfinite(result["decay"]["LSTM, NFG"]["trained"]) and result["decay"]["LSTM, NFG"]["init"] > 0
