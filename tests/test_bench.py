"""The benchmark's gradient-equality checks at a tiny size (no timings here)."""

import numpy as np
import pytest

from jlstm.app import bench


@pytest.fixture(scope="module")
def built():
    prob = bench.make_problem(5, 3, 4, 6, dtype=np.float64)
    return prob, [bench.build(name, prob) for name in bench.ALL_IMPLS]


def test_every_implementation_gives_the_same_gradient(built):
    _, impls = built
    errs = bench.check_gradients(impls, rtol=1e-10)
    assert set(errs) == set(bench.ALL_IMPLS)


def test_gradients_are_not_trivially_equal(built):
    prob, impls = built
    loss, dW, dU, db = impls[0].grads()
    assert dW.shape == prob.W.shape and dU.shape == prob.U.shape and db.shape == prob.b.shape
    for g in (dW, dU, db):
        assert np.max(np.abs(g)) > 1e-4
    # Every gate block gets a distinct gradient, so a permuted gate order could not pass.
    blocks = np.split(db, 4)
    assert min(np.max(np.abs(x - y)) for i, x in enumerate(blocks) for y in blocks[i + 1 :]) > 1e-6


def test_check_gradients_catches_a_wrong_layout(built):
    _, impls = built
    good = impls[0]
    wrong = bench.Impl("wrong", good.run, lambda: (lambda g: (g[0], g[1], g[2], g[3][::-1]))(good.grads()))
    with pytest.raises(AssertionError, match="wrong"):
        bench.check_gradients([good, wrong], rtol=1e-6)


def test_parse_sizes_and_errors():
    assert bench.parse_sizes("100,32,128,128; 1000,8,64,64") == [(100, 32, 128, 128), (1000, 8, 64, 64)]
    with pytest.raises(ValueError, match="T,B,D,H"):
        bench.parse_sizes("100,32,128")
    with pytest.raises(ValueError, match="name must be one of"):
        bench.build("nope", bench.make_problem(2, 1, 1, 1))
