"""The manual backward's memory: XLA's temporary memory of the compiled training step, against autodiff's.

Memory is what the compiler plans, so these are exact and deterministic (nothing is timed).
"""

import jax
import jax.numpy as jnp
import pytest
from helpers import full_loss, problem, rel_err

import jlstm
from jlstm.core import prepare


def temp_mib(T, B, D, H, **kw):
    """Temp memory (MiB) of the jitted value-and-grad step of ``sum(hs * ys)`` w.r.t. the parameters."""
    params = jlstm.init(jax.random.key(0), D, H, dtype=jnp.float32)
    xs = jnp.ones((B, T, D), jnp.float32)
    ys = jnp.ones((B, T, H), jnp.float32)

    def step(p, xs, ys):
        return jax.value_and_grad(lambda p: jnp.sum(jlstm.lstm(p, xs, **kw)[0] * ys))(p)

    compiled = jax.jit(step).lower(params, xs, ys).compile()
    return compiled.memory_analysis().temp_size_in_bytes / 2**20


@pytest.fixture(scope="module")
def ratios():
    """manual / autodiff temp memory at (T, 8, 128, 128), T = 1000 and 10000."""
    size = (8, 128, 128)
    return {T: temp_mib(T, *size) / temp_mib(T, *size, backward="autodiff") for T in (1000, 10000)}


def test_manual_needs_at_most_half_of_autodiffs_memory(ratios):
    # The chunked loops hold no full-length [T, B, 4H] projection or delta gates (measured 0.36; the
    # unchunked pass held both, 0.74).
    assert ratios[1000] <= 0.5, ratios


def test_the_saving_grows_with_T(ratios):
    # autodiff keeps more per step than the saved residuals; the chunk buffers do not grow with T.
    assert ratios[10000] < ratios[1000], ratios


def test_auto_remat_saves_memory_on_long_sequences():
    full, auto = temp_mib(10000, 8, 64, 64), temp_mib(10000, 8, 64, 64, remat="auto")
    assert auto < 0.5 * full, (auto, full)


def test_auto_remat_saves_everything_when_small():
    # ~ T B (5H + R) 4 bytes = 2.5 MB saved: no recomputation, the same program as remat=None.
    assert prepare.auto_remat(100, 32, 128, 128, 4) is None
    assert temp_mib(100, 32, 128, 128, remat="auto") == temp_mib(100, 32, 128, 128)


@pytest.mark.parametrize(
    "T, B, H, R, itemsize, want",
    [
        (10000, 8, 64, 64, 4, 100),  # sqrt(T), a divisor
        (100000, 8, 64, 64, 4, 250),  # sqrt(T) = 316: the nearest divisor
        (10007, 8, 64, 64, 4, 100),  # a prime T: no divisor near, padded
        (40000, 1, 512, 512, 4, 250),  # B = 1: AUTO_REMAT_MIN_ROWS rows (256), its nearest divisor
        (1000, 8, 128, 128, 4, None),  # 24.6 MB of residuals: saved
        (1000, 8, 128, 128, 8, None),
        (3000, 8, 512, 128, 8, 50),  # float64 doubles the bytes
    ],
)
def test_auto_remat_chunk(T, B, H, R, itemsize, want):
    assert prepare.auto_remat(T, B, H, R, itemsize) == want


def test_auto_remat_gives_the_same_gradients(key, monkeypatch):
    # Thresholds lowered so that "auto" recomputes chunks of a small problem: k = isqrt(101) = 10 does
    # not divide the prime T, so the padded chunks run too; with lengths and a carry, in float64.
    monkeypatch.setattr(prepare, "AUTO_REMAT_BYTES", 0)
    monkeypatch.setattr(prepare, "AUTO_REMAT_MIN_ROWS", 1)
    assert prepare.auto_remat(101, 3, 4, 4, 8) == 10
    params, xs, c0 = problem(key, (3,), T=101)
    lengths = jnp.array([101, 57, 0])
    grad = jax.grad(full_loss, argnums=(0, 1, 2))
    want = grad(params, xs, c0, "manual", lengths=lengths)
    got = grad(params, xs, c0, "manual", lengths=lengths, remat="auto")
    assert rel_err(got, want) < 1e-10
    hs, final = jlstm.lstm(params, xs, c0, lengths=lengths, remat="auto")
    assert rel_err((hs, final), jlstm.lstm(params, xs, c0, lengths=lengths)) < 1e-14


def test_auto_remat_is_accepted_by_every_cell(key):
    params = jlstm.init(key, 3, 4, peephole=True, dtype=jnp.float64)
    xs = jax.random.normal(key, (2, 7, 3), jnp.float64)
    hs, _ = jlstm.lstm(params, xs, remat="auto")
    assert jnp.array_equal(hs, jlstm.lstm(params, xs)[0])


@pytest.mark.parametrize("bad", ["Auto", "sqrt", 0, True])
def test_remat_rejects_other_values(key, bad):
    params, xs, _ = problem(key, (2,))
    with pytest.raises(ValueError, match="'auto'"):
        jlstm.lstm(params, xs, remat=bad)


def test_auto_remat_needs_the_manual_backward(key):
    params, xs, _ = problem(key, (2,))
    with pytest.raises(ValueError, match="manual"):
        jlstm.lstm(params, xs, backward="autodiff", remat="auto")
