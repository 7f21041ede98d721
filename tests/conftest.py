import jax
import pytest

# float64 for the manual-vs-autodiff comparisons; float32 tests ask for float32 explicitly.
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key():
    return jax.random.key(0)


def pytest_configure(config):
    # -n N: whole files per worker (xdist's --dist loadfile), so that a module's expensive fixture
    # (subprocesses with simulated devices, a study run, a built benchmark) runs once, not once per
    # worker: the sharding fixture took 100 s of CPU when both workers ran it. (xdist_group marks would
    # be finer, but pytest-xdist 3.8's loadgroup no longer tags the test ids under pytest 9.2.)
    if getattr(config.option, "dist", "no") == "load" and not hasattr(config, "workerinput"):
        config.option.dist = "loadfile"
