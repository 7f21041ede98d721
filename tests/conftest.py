import jax
import pytest

# float64 for the manual-vs-autodiff comparisons; float32 tests ask for float32 explicitly.
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key():
    return jax.random.key(0)
