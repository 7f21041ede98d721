"""The rematerialisation option of the manual backward: same gradients, less saved memory."""

import jax
import jax.numpy as jnp
import pytest
from helpers import full_loss, problem, rel_err

import jlstm


@pytest.mark.parametrize("k", [1, 3, 5, 7])
@pytest.mark.parametrize("kw", [{}, {"lengths": [5, 2, 0]}, {"lengths": [5, 2, 0], "reverse": True}])
def test_remat_equals_autodiff(key, k, kw):
    params, xs, c0 = problem(key, (3,), T=5)
    kw = {n: (jnp.asarray(v) if n == "lengths" else v) for n, v in kw.items()}
    grad = jax.grad(full_loss, argnums=(0, 1, 2))
    want = grad(params, xs, c0, "autodiff", **kw)
    got = grad(params, xs, c0, "manual", remat=k, **kw)
    assert rel_err(got, want) < 1e-12
    hs, final = jlstm.lstm(params, xs, c0, remat=k, **kw)
    hs2, final2 = jlstm.lstm(params, xs, c0, **kw)
    assert rel_err((hs, final), (hs2, final2)) < 1e-14


def _temp_bytes(**kw):
    params = jlstm.init(jax.random.key(0), 4, 16, dtype=jnp.float32)
    xs = jnp.ones((2, 1024, 4), jnp.float32)
    f = jax.jit(jax.grad(lambda p: jnp.sum(jlstm.lstm(p, xs, **kw)[0] ** 2)))
    return f.lower(params).compile().memory_analysis().temp_size_in_bytes


def test_remat_saves_memory():
    full, remat = _temp_bytes(), _temp_bytes(remat=32)
    # Without remat the gates alone are T * B * 4H * 4 bytes = 512 KiB.
    assert full > 1024 * 4 * 2 * 64
    assert remat < 0.5 * full, (remat, full)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "4"])
def test_remat_must_be_a_positive_int(key, bad):
    params, xs, _ = problem(key, (2,))
    with pytest.raises(ValueError, match="remat"):
        jlstm.lstm(params, xs, remat=bad)


def test_remat_needs_the_manual_backward(key):
    params, xs, _ = problem(key, (2,))
    with pytest.raises(ValueError, match="manual"):
        jlstm.lstm(params, xs, backward="autodiff", remat=2)
