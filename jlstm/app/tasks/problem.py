"""What every task is made of: ``TaskInfo`` (known before building), ``Problem`` (built), a dense head."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

F32 = jnp.float32


@dataclass(frozen=True)
class TaskInfo:
    """What the command line and the runner need to know about a task before building it."""

    name: str
    metric: str  # the key of the task's metric in summary.json
    higher_is_better: bool
    target: str  # the target with default settings, in words
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)  # steps, optimizer, lr, batch_size, ...
    # The sizes (batch_size, hidden_size, seq_len) that the task's data fix, each with why: another value
    # would be recorded in summary.json but not used, so ``check_fixed`` refuses it.
    fixed: dict[str, str] = field(default_factory=dict)


class Problem(NamedTuple):
    """A task built for one seed and size.

    Attributes:
      init: ``init(key) -> params``.
      loss: ``loss(params, batch) -> (loss, aux)``, jit-able; ``aux`` is a dict of scalars.
      batch: ``batch(step) -> batch``: the training batch of a step, a pure function of (seed, step).
      evaluate: ``evaluate(params) -> dict`` of Python floats (the task's metric among them).
      figure: ``figure(params, history, path)`` draws the task's own figure into a PNG.
      extras: ``extras(params) -> dict`` added to summary.json at the end (e.g. sampled text).
      first_step: optional ``first_step(params_after_step_1) -> dict`` added to summary.json.
    """

    init: Callable
    loss: Callable
    batch: Callable[[int], Any]
    evaluate: Callable[[Any], dict]
    figure: Callable[[Any, list, Path], None]
    extras: Callable[[Any], dict]
    first_step: Callable[[Any], dict] | None = None


def dense_init(key: jax.Array, n_in: int, n_out: int) -> dict:
    """A float32 dense layer ``{"w": [n_in, n_out], "b": [n_out]}``: w uniform in +-1/sqrt(n_in), b 0."""
    bound = 1.0 / math.sqrt(n_in)
    return {"w": jax.random.uniform(key, (n_in, n_out), F32, -bound, bound), "b": jnp.zeros((n_out,), F32)}


def dense(layer: dict, x: jax.Array) -> jax.Array:
    """``x @ w + b`` for ``x [..., n_in]``, broadcasting ``b`` explicitly (rank promotion may raise)."""
    return x @ layer["w"] + jnp.expand_dims(layer["b"], tuple(range(x.ndim - 1)))


def no_extras(params) -> dict:
    """The ``extras`` of a task that adds nothing to summary.json."""
    return {}


def png_figure(fn):
    """Run a matplotlib drawing with the non-interactive backend, then close the figure."""

    def draw(params, history, path):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig = fn(plt, params, history)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)

    return draw
