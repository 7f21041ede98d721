"""``check_cell``'s one-step comparison for a cell that declares its states (``Cell.state``).

The cell's hand-written ``backward`` against ``jax.vjp`` of its own ``forward`` on random inputs,
quantity by quantity: ``dzx``, ``dzh``, the direct gradient of every previous state, every parameter
of ``theta``. The loss's gradient ``g_y`` reaches the output state, ``d_new`` every new state.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jlstm.core.interface import Cell
from jlstm.core.state import widths


def state_step_pairs(cell: Cell, theta, H: int, R: int, key) -> list[tuple]:
    """``(quantity, hand-written, autodiff)`` for one step of a state cell, in float64."""
    G, B = cell.num_gates, 3
    sizes = widths(cell, H, R)
    k = iter(jax.random.split(key, 4 + 2 * len(sizes)))
    normal = lambda shape: jax.random.normal(next(k), shape, jnp.float64)  # noqa: E731
    zx, zh, g_y = normal((B, G * H)), normal((B, G * H)), normal((B, R))
    prev = tuple(normal((B, n)) for n in sizes)
    d_new = tuple(normal((B, n)) for n in sizes)

    def f(zx, zh, prev, theta):
        return tuple(cell.forward(theta, zx, zh, prev, None)[0])

    new, vjp = jax.vjp(f, zx, zh, prev, theta)
    ct = tuple(d + g_y if j == cell.output else d for j, d in enumerate(d_new))
    a_zx, a_zh, a_prev, a_th = vjp(ct)
    res = cell.forward(theta, zx, zh, prev, None)[1]
    s = cell.backward(theta, res, prev, new, g_y, d_new, None)
    pairs = [("step dzx", s.dzx, a_zx), ("step dzh", s.dzx if s.dzh is None else s.dzh, a_zh)]
    for st, p, mine, ref in zip(cell.state, prev, s.d_prev, a_prev):  # type: ignore[arg-type]
        # The machinery adds dzh @ U^T to the recurrent state's; autodiff here sees only the direct path.
        pairs.append((f"step d{st.name}_prev (direct)", jnp.zeros_like(p) if mine is None else mine, ref))
    pairs += [(f"step d{name}", s.dtheta[name], a_th[name]) for name in theta]
    return pairs
