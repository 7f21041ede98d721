"""Cell and projection clipping (TF1 ``LSTMCell(cell_clip=..., proj_clip=...)``).

The clipped value is the carried one. Its gradient passes where ``|v| <= clip`` and is zero strictly
outside: TF's convention, where a tie goes through. ``jnp.clip``'s autodiff gives 0.5 at a tie, so the
forward is written as a select, whose autodiff agrees with the hand-written mask everywhere.
"""

from __future__ import annotations

import jax.numpy as jnp


def clip(v, bound):
    """``(clip(v, -bound, bound), passes)`` with ``passes = |v| <= bound`` (None when not clipping)."""
    if bound is None:
        return v, None
    passes = jnp.abs(v) <= bound
    return jnp.where(passes, v, jnp.sign(v) * bound), passes


def clip_bwd(d, passes):
    """``d * 1[|v| <= bound]``."""
    return d if passes is None else jnp.where(passes, d, 0)
