"""The source's worked example, to its printed precision."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

import jlstm
from jlstm.app import example

ROWS = example.rows()


def _printed_from(value: float, printed: str, unit: float) -> bool:
    """The source prints values rounded, or sometimes truncated, to its last digit."""
    p = float(printed)
    d = round(-math.log10(unit))
    return abs(value - p) <= 0.5 * unit + 1e-12 or math.trunc(value * 10**d) / 10**d == p


def test_every_printed_quantity_is_listed():
    names = {r.name.split("[")[0] for r in ROWS}
    for t in (0, 1):
        for q in ("a", "i", "f", "o", "state", "out", "Delta", "delta out", "delta state",
                  "delta gates", "delta x"):  # fmt: skip
            assert f"{q}_{t}" in names
    assert {"Delta out_0", "Delta out_-1", "dW^T", "dU", "db", "new W^T", "new U", "new b"} <= names
    assert len(ROWS) == 64  # 12 forward + 20 backward + 16 gradients + 16 updated parameters


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_replaying_each_source_line_gives_its_printed_digits(row):
    # jlstm's equations applied to the source's own printed inputs give the printed number.
    assert _printed_from(row.replayed, row.source, row.unit), row


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_exact_values_agree_within_the_sources_propagated_rounding(row):
    # The source reuses rounded intermediates; the worst case (dW[1,1]) is 2.14 units of the last digit.
    assert abs(row.exact - float(row.source)) <= 2.5 * row.unit, row


@pytest.mark.parametrize("name", ["a_0", "i_0", "f_0", "o_0", "Delta out_-1", "new U[3]"])
def test_quantities_without_upstream_rounding_match_to_half_a_unit(name):
    row = next(r for r in ROWS if r.name == name)
    assert abs(row.exact - float(row.source)) <= 0.5 * row.unit


def test_erratum_delta_out_minus_one_uses_gates_0():
    ex = example.computed()
    U = np.asarray(example.U)[0]
    assert ex["Delta out_-1"] == pytest.approx(U @ ex["delta gates_0"], abs=1e-15)
    # The formula as printed (gates_1) would give Delta out_0 again, not the printed -0.00343.
    assert abs(U @ ex["delta gates_1"] - (-0.00343)) > 1e-2


def test_one_sgd_step_with_the_train_step_helper():
    import optax

    p = example.params()
    xs, ys = jnp.asarray(example.XS), jnp.asarray(example.YS)
    opt = optax.sgd(example.LEARNING_RATE)
    step = jlstm.make_train_step(lambda q, b: jlstm.l2_loss(jlstm.lstm(q, b[0])[0], b[1]), opt)
    new, _, metrics = step(p, opt.init(p), (xs, ys))
    want = dict(example.SOURCE)
    np.testing.assert_allclose(new.W.T, np.asarray(want["new W^T"], float), atol=1e-5)
    np.testing.assert_allclose(new.U[0], np.asarray(want["new U"], float), atol=1e-5)
    np.testing.assert_allclose(new.b, np.asarray(want["new b"], float), atol=1e-5)
    expected_loss = 0.5 * ((0.5363134 - 0.5) ** 2 + (0.7719811 - 1.25) ** 2)
    assert float(metrics["loss"]) == pytest.approx(expected_loss, rel=1e-6)


def test_report_names_every_erratum():
    text = example.report()
    assert "gates_0" in text and "unreachable" in text and "out_{-1}" in text
    assert text.count("\n") > 65
