"""The backward equations of source 002 ("The backward components") for one step.

Through time they run in ``jlstm.core.machinery`` (the reverse scan, ``Delta out_{t-1} = U^T . delta
gates_t`` and the contractions ``dW``, ``dU``, ``db``, ``dxs``), with ``jlstm.core.vanilla.VANILLA`` as
the cell whose backward is ``backward_step`` below.

Notation (source -> code), per step t, all ``[B, H]`` unless said otherwise:

    Delta_t            g_h        cotangent of out_t from the loss (``hs``'s cotangent)
    Delta out_t        dh         dL/d out_t flowing back from step t+1 (carry of the reverse scan)
    delta state_{t+1} * f_{t+1}
                       dc         dL/d state_t flowing back from step t+1 (carry of the reverse scan)
    delta gates_t      dgates     ``[B, 4H]``, blocks (a, i, f, o)

The source's errata are handled: ``Delta out_{t-1} = U^T . delta gates_t`` uses the gates of step t
(the source's t=0 line uses gates_1 by mistake; its printed number already uses gates_0), and
``dU`` pairs ``delta gates_t`` with ``out_{t-1}`` (``out_{-1}`` is the initial ``h0``).

Dtypes (the policy of ``jlstm.lstm``): ``U``, ``W``, ``xs``, ``hs`` and the cotangent of ``hs`` are in the
compute dtype; the gates, states and every carry of the reverse scan (``dh``, ``dc``) in its state dtype
(``cell.state_dtype``: float32 under 16-bit compute). ``delta gates`` is computed in the state dtype and
rounded to the compute dtype once, as the operand of ``dgates @ U^T`` and of the contractions, which
accumulate in the state dtype. With float32 or float64 throughout every cast is a no-op.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax


class StepGrads(NamedTuple):
    """What one backward step produces, named as in the source."""

    delta_out: jax.Array  # delta out_t = Delta_t + Delta out_t                  [B, H]
    delta_state: jax.Array  # delta state_t                                       [B, H]
    delta_gates: jax.Array  # (delta a_t, delta i_t, delta f_t, delta o_t)       [B, 4H]
    dc_prev: jax.Array  # delta state_t * f_t: what state_{t-1} receives          [B, H]


def backward_step(
    gates: jax.Array,
    c: jax.Array,
    c_prev: jax.Array,
    g_h: jax.Array,
    dh: jax.Array,
    dc: jax.Array,
) -> StepGrads:
    """One step of the source's backward equations, the pointwise part.

    The remaining line, ``Delta out_{t-1} = U^T . delta gates_t``, is a product: the sequence machinery
    (``jlstm.core.machinery.chunk_backward``) computes it, so that ``U^T`` is transposed once per call.

    Args:
      gates: ``[B, 4H]`` the activated gates (a, i, f, o) of step t, saved by the forward.
      c: ``[B, H]`` state_t.  c_prev: ``[B, H]`` state_{t-1}.
      g_h: ``[B, H]`` Delta_t.  dh: ``[B, H]`` Delta out_t.  dc: ``[B, H]`` delta state_{t+1} * f_{t+1}.
    """
    H = c.shape[-1]
    a, i, f, o = (gates[..., k * H : (k + 1) * H] for k in range(4))
    tanh_c = jnp.tanh(c)  # recomputed rather than saved: one tanh is cheaper than [T, B, H] of memory
    delta_out = g_h + dh  # delta out_t = Delta_t + Delta out_t
    delta_state = delta_out * o * (1 - tanh_c * tanh_c) + dc  # ... + delta state_{t+1} * f_{t+1}
    # The four gate equations, one column block each; every one is (a factor) * (its gate's derivative):
    #   delta a_t = delta state_t * i_t           * (1 - a_t^2)
    #   delta i_t = delta state_t * a_t           * i_t * (1 - i_t)
    #   delta f_t = delta state_t * state_{t-1}   * f_t * (1 - f_t)
    #   delta o_t = delta out_t   * tanh(state_t) * o_t * (1 - o_t)
    # Written as one [B, 4H] product (factor) * (derivative) so that XLA emits one concatenate and one
    # fusion per step instead of four block-wise fusions and a concatenate (measured 0.73x vs 0.85x the
    # time of plain jax.grad at T, B, D, H = 100, 32, 128, 128 against selecting tiled blocks).
    factor = jnp.concatenate([delta_state * i, delta_state * a, delta_state * c_prev, delta_out * tanh_c], -1)
    is_a = lax.broadcasted_iota(jnp.int32, gates.shape, gates.ndim - 1) < H
    derivative = jnp.where(is_a, 1 - gates * gates, gates * (1 - gates))  # tanh' on a, sigmoid' on i, f, o
    delta_gates = factor * derivative
    return StepGrads(delta_out, delta_state, delta_gates, delta_state * f)


class Trace(NamedTuple):
    """Per-step quantities of the backward pass, time-major ``[T, B, ...]``."""

    delta_out: jax.Array
    delta_state: jax.Array
    delta_gates: jax.Array
    delta_x: jax.Array
    Delta_out_prev: jax.Array
