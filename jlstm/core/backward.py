"""The backward equations of source 002 ("The backward components"), one step and through time.

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

from jlstm.core.cell import matmul, state_dtype


class StepGrads(NamedTuple):
    """What one backward step produces, named as in the source."""

    delta_out: jax.Array  # delta out_t = Delta_t + Delta out_t                  [B, H]
    delta_state: jax.Array  # delta state_t                                       [B, H]
    delta_gates: jax.Array  # (delta a_t, delta i_t, delta f_t, delta o_t)       [B, 4H]
    Delta_out_prev: jax.Array  # Delta out_{t-1} = U^T . delta gates_t           [B, H]
    dc_prev: jax.Array  # delta state_t * f_t: what state_{t-1} receives          [B, H]


def backward_step(
    U: jax.Array,
    gates: jax.Array,
    c: jax.Array,
    c_prev: jax.Array,
    g_h: jax.Array,
    dh: jax.Array,
    dc: jax.Array,
) -> StepGrads:
    """One step of the source's backward equations.

    Args:
      U: ``[H, 4H]`` recurrent weights.
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
    # Delta out_{t-1} = U^T . delta gates_t   (erratum: gates_t)
    Delta_out_prev = matmul(delta_gates.astype(U.dtype), U.T, delta_gates.dtype)
    return StepGrads(delta_out, delta_state, delta_gates, Delta_out_prev, delta_state * f)


class Residuals(NamedTuple):
    """What the forward saves for the hand-written backward (time-major): the gates and the states.

    ``hs`` is the forward's own output (no extra memory). The state entering each step is saved rather
    than the state leaving it: the backward then carries state_t from the step after, so neither a
    shifted copy of the states nor ``c0`` is needed.
    """

    W: jax.Array  # [D, 4H]
    U: jax.Array  # [H, 4H]
    xs: jax.Array  # [T, B, D]
    h0: jax.Array  # [B, H]
    hs: jax.Array  # [T, B, H]  out_t (zero at padded steps)
    gates: jax.Array  # [T, B, 4H] activated gates
    c_prevs: jax.Array  # [T, B, H]  state_{t-1}, the state entering step t
    cT: jax.Array  # [B, H]  the final state
    mask: jax.Array | None  # [T, B] bool, True at valid steps; None: every step is valid


class Grads(NamedTuple):
    """Cotangents of the time-major primal inputs. ``W``, ``U``, ``b`` are in the state dtype (the
    accumulation dtype: float32 under 16-bit compute) for the caller to cast to each parameter's own
    dtype; ``xs``, ``h0``, ``c0`` are in the dtypes of ``xs``, ``h0`` and ``cT``."""

    W: jax.Array
    U: jax.Array
    b: jax.Array
    xs: jax.Array
    h0: jax.Array
    c0: jax.Array


class Trace(NamedTuple):
    """Per-step quantities of the backward pass, time-major ``[T, B, ...]``."""

    delta_out: jax.Array
    delta_state: jax.Array
    delta_gates: jax.Array
    delta_x: jax.Array
    Delta_out_prev: jax.Array


def reverse_scan(
    U: jax.Array,
    gates: jax.Array,
    c_prevs: jax.Array,
    cT: jax.Array,
    mask: jax.Array | None,
    g_hs: jax.Array,
    g_hT: jax.Array,
    g_cT: jax.Array,
    *,
    trace: bool = False,
):
    """The reverse ``lax.scan`` of ``backward_step`` over ``[T, B, ...]`` residuals.

    Returns ``(dh0, dc0), out`` where ``out`` is ``dgates [T, B, 4H]`` (in ``U``'s dtype, the compute
    dtype), or with ``trace`` the tuple ``(dgates, delta_out, delta_state, Delta_out_prev)``. ``dh0`` and
    ``dc0`` are in ``cT``'s dtype, the state dtype (the caller rounds ``dh0`` to ``h0``'s dtype).
    """
    masked = mask is not None
    cd, sd = U.dtype, cT.dtype
    # U^T materialised once, outside the loop: XLA would otherwise contract against U's transposed
    # layout in every step, which the CPU's matrix kernels run 10-25 % slower (measured).
    U_T = lax.optimization_barrier(U.T)

    def body(carry, inp):
        dh, dc, c = carry
        if masked:
            g, c_prev, g_h, m = inp
        else:
            g, c_prev, g_h = inp
        # Looked up at trace time, so a test can substitute a wrong step and see the checks fail.
        s = backward_step(U, g, c, c_prev, g_h.astype(sd), dh, dc)
        # Delta out_{t-1} = U^T . delta gates_t, backward_step's own line, against the pre-transposed U^T
        # (XLA drops the step's unused s.Delta_out_prev).
        dgates = s.delta_gates.astype(cd)  # the 16-bit operand, under 16-bit compute
        dh_prev, dc_prev = matmul(dgates, U_T, sd), s.dc_prev
        if masked:
            # A padded step is the identity on the carry and has no gates: pass (dh, dc) through.
            m = m[:, None]
            dgates = jnp.where(m, dgates, 0)
            dh_prev = jnp.where(m, dh_prev, dh)
            dc_prev = jnp.where(m, dc_prev, dc)
        out = (dgates, s.delta_out, s.delta_state, dh_prev) if trace else dgates
        return (dh_prev, dc_prev, c_prev), out

    xs_in = (gates, c_prevs, g_hs) + ((mask,) if masked else ())
    (dh0, dc0, _), out = lax.scan(body, (g_hT.astype(sd), g_cT.astype(sd), cT), xs_in, reverse=True)
    return (dh0, dc0), out


def contractions(
    W: jax.Array, xs: jax.Array, h_prevs: jax.Array, dgates: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """``dW, dU, db, dxs`` from all steps' ``dgates [T, B, 4H]``, each one contraction over (t, b).

    The operands are in the compute dtype; ``dW``, ``dU``, ``db`` are accumulated and returned in
    ``state_dtype`` of it (float32 under 16-bit compute), ``dxs`` is returned in ``xs``'s dtype.

    Contracted as ``dot_general`` over both axes rather than after a reshape to ``[T * B, ...]``: the
    reshape merges the batch axis into time, so under a data-parallel sharding of B XLA all-gathers
    the activations first (seen in the HLO); on one CPU device the two ran equally fast (measured).
    """
    acc = state_dtype(dgates.dtype)
    tb = (((0, 1), (0, 1)), ((), ()))  # contract over t and b together
    # delta W = sum_t x_t (x) delta gates_t;   delta U = sum_t out_{t-1} (x) delta gates_t
    dW = lax.dot_general(xs, dgates, tb, preferred_element_type=acc)
    dU = lax.dot_general(h_prevs, dgates, tb, preferred_element_type=acc)
    db = jnp.sum(dgates, axis=(0, 1), dtype=acc)  # delta b = sum_t delta gates_t
    dxs = matmul(dgates, W.T, acc).astype(xs.dtype)  # delta x_t = W^T . delta gates_t
    return dW, dU, db, dxs


def bptt(
    res: Residuals, g_hs: jax.Array, g_hT: jax.Array, g_cT: jax.Array, *, trace: bool = False
) -> tuple[Grads, Trace | None]:
    """Back-propagation through time: a reverse ``lax.scan`` of ``backward_step``, then contractions.

    Cotangents on the final carry (``g_hT``, ``g_cT``) seed the recurrence: ``Delta out_{T-1}`` starts
    at ``g_hT`` and ``delta state_T * f_T`` at ``g_cT``. Only ``dgates @ U^T`` is inside the loop;
    ``dW``, ``dU``, ``db`` and ``dxs`` are single contractions over all steps afterwards.
    """
    (dh0, dc0), out = reverse_scan(
        res.U, res.gates, res.c_prevs, res.cT, res.mask, g_hs, g_hT, g_cT, trace=trace
    )
    dgates = out[0] if trace else out  # [T, B, 4H]
    h_prevs = jnp.concatenate([res.h0[None], res.hs[:-1]], axis=0)  # out_{t-1}, [T, B, H]
    dW, dU, db, dxs = contractions(res.W, res.xs, h_prevs, dgates)
    grads = Grads(dW, dU, db, dxs, dh0.astype(res.h0.dtype), dc0)
    if not trace:
        return grads, None
    _, delta_out, delta_state, Delta_out_prev = out
    return grads, Trace(delta_out, delta_state, dgates, dxs, Delta_out_prev)
