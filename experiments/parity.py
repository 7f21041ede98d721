"""Parity table: jlstm against torch, Flax (linen, nnx), Keras 3, Haiku and Equinox, in float64.

    python experiments/parity.py            # all libraries
    python experiments/parity.py torch haiku

Prints, per library and configuration, the largest absolute difference of the outputs (sequence and
final state) and of the gradients (weights, inputs, initial state); the logic is ``jlstm.app.parity``.
"""

import os
import pathlib
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")  # before anything imports keras: jax.grad needs it

import jax

jax.config.update("jax_enable_x64", True)

from jlstm.app import parity  # noqa: E402


def main(libraries: list[str] | None = None) -> str:
    table = parity.format_table(parity.parity_rows(libraries or None))
    print(table)
    out = pathlib.Path("runs/parity")
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table + "\n")
    return table


if __name__ == "__main__":
    main(sys.argv[1:])
