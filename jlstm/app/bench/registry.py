"""The registry of implementations: each is a small builder, registered with ``@implementation(name)``,
that compiles one training step on a ``Problem`` and says how to read its gradient in jlstm's layout.

A builder takes ``(prob, dtype)`` and returns an ``Impl``. An entry may say when it is available (the
GPU-only ones); ``build`` refuses an unavailable one with the reason, and ``available_impls`` lists what
this machine offers. Asking whether a GPU entry is available starts JAX's backend, so do it after
``configure_threads``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from jlstm.app.bench.problem import Problem


@dataclasses.dataclass
class Impl:
    """A compiled training step: ``run()`` executes it once (blocking) and returns the loss;
    ``grads()`` returns ``(loss, dW, dU, db)`` in jlstm's layout; ``temp_bytes`` is XLA's temporary
    memory for the step (None outside XLA)."""

    name: str
    run: Callable[[], object]
    grads: Callable[[], tuple]
    temp_bytes: int | None = None


class Implementation(NamedTuple):
    """A registry entry: ``build(prob, dtype) -> Impl``; ``available()`` says whether this machine can
    run it and ``requires`` what it needs when it cannot."""

    build: Callable[[Problem, object], Impl]
    available: Callable[[], bool]
    requires: str


def _always() -> bool:
    return True


#: name -> Implementation, in the order of the tables; filled by ``@implementation``.
IMPLEMENTATIONS: dict[str, Implementation] = {}


def implementation(name: str, *, available: Callable[[], bool] = _always, requires: str = ""):
    """Register the decorated builder ``(prob, dtype) -> Impl`` under ``name``."""

    def register(builder):
        IMPLEMENTATIONS[name] = Implementation(builder, available, requires)
        return builder

    return register


def on_gpu() -> bool:
    """Whether JAX's default backend is a GPU (this starts the backend)."""
    import jax

    return jax.default_backend() == "gpu"


def available_impls() -> tuple[str, ...]:
    """The names of the implementations this machine can run: every CPU one, and on a GPU the GPU ones."""
    return tuple(name for name, entry in IMPLEMENTATIONS.items() if entry.available())


def build(name: str, prob: Problem, *, dtype=None) -> Impl:
    """Compile the training step of implementation ``name`` on ``prob``."""
    import jax

    entry = IMPLEMENTATIONS.get(name)
    if entry is None:
        raise ValueError(f"jlstm.bench.build: name must be one of {tuple(IMPLEMENTATIONS)}; got {name!r}.")
    if not entry.available():
        raise ValueError(
            f"jlstm.bench.build: {name!r} needs {entry.requires}; this machine's JAX backend is "
            f"{jax.default_backend()!r}. Choose among {available_impls()}."
        )
    # Third-party code may rely on rank promotion, which a strict caller (our tests) turns off.
    with jax.numpy_rank_promotion("allow"):
        impl = entry.build(prob, dtype or prob.xs.dtype)
    return dataclasses.replace(impl, name=name)


def jax_impl(step, args, to_jlstm: Callable[[object], tuple]) -> Impl:
    """Compile ``step(*args)`` (returning the loss and a gradient); ``to_jlstm`` maps that output to
    ``(loss, dW, dU, db)`` in jlstm's layout."""
    import jax

    compiled = jax.jit(step).lower(*args).compile()
    mem = compiled.memory_analysis()
    temp = int(mem.temp_size_in_bytes) if mem is not None else None

    def run():
        return jax.block_until_ready(compiled(*args))

    return Impl("", run, lambda: to_jlstm(run()), temp)


def flat_jlstm(out) -> tuple:
    """``(loss, (dW, dU, db))`` -> ``(loss, dW, dU, db)`` as a float and numpy arrays."""
    loss, g = out
    return (float(loss),) + tuple(np.asarray(a) for a in g)
