"""Run the registered comparisons and write their rows as a Markdown table."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import jax

from jlstm.app.parity.common import LIBRARIES, ParityRow, Sizes, dtype_name

log = logging.getLogger("jlstm.app.parity")
_DEFAULT_SIZES = Sizes()


def parity_rows(
    libraries: Sequence[str] | None = None, *, seed: int = 0, sizes: Sizes = _DEFAULT_SIZES
) -> list[ParityRow]:
    """Run every library against jlstm and return one row per configuration.

    Each library draws its own weights, runs its own forward and computes its own gradients (torch
    autograd; ``jax.grad`` for the JAX libraries) of a loss touching the outputs and the final state;
    jlstm does the same after ``jlstm.interop`` converted the weights. Enable ``jax_enable_x64`` first
    for a float64 comparison (float32 otherwise). Keras needs ``KERAS_BACKEND=jax`` set before it is
    imported.

    Args:
      libraries: names from ``LIBRARIES`` (default: all). A library that is not installed gives a row
        with NaN differences and the reason in ``note``.
      seed: the seed of the inputs and of the JAX libraries' weights.
      sizes: ``T, B, D, H``.

    Returns:
      A list of ``ParityRow``.
    """
    names = list(LIBRARIES) if libraries is None else list(libraries)
    unknown = [n for n in names if n not in LIBRARIES]
    if unknown:
        raise ValueError(f"parity_rows: libraries must be among {list(LIBRARIES)}; got unknown {unknown}.")
    key = jax.random.key(seed)
    rows: list[ParityRow] = []
    for k, name in enumerate(names):
        try:
            rows.extend(LIBRARIES[name](jax.random.fold_in(key, k), sizes))
        except ImportError as e:
            log.warning("parity: %s skipped: %s", name, e)
            rows.append(ParityRow(name, "-", dtype_name(), math.nan, math.nan, f"skipped: {e}"))
    return rows


def format_table(rows: Sequence[ParityRow]) -> str:
    """The rows as a Markdown table: library, configuration, dtype, max |diff| of outputs and of gradients."""
    head = ("library", "layers / directions", "dtype", "max |d outputs|", "max |d gradients|", "note")
    body = [(r.library, r.config, r.dtype, f"{r.out_diff:.2e}", f"{r.grad_diff:.2e}", r.note) for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, body)])
