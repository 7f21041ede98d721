"""The source's worked example: every printed number beside jlstm's, with the errata.

Run: python experiments/worked_example.py   (the same as `jlstm example`)
"""

import jax

jax.config.update("jax_enable_x64", True)

from jlstm.app import example  # noqa: E402

if __name__ == "__main__":
    print(example.report())
