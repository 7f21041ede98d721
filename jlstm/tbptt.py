"""Truncated back-propagation through time: a long sequence in chunks, gradients stopped between them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax


def tbptt_value_and_grad(
    loss_fn: Callable[[Any, Any, Any], tuple[jax.Array, Any]],
    params: Any,
    seqs: Any,
    carry: Any,
    *,
    chunk: int,
    axis: int = 1,
) -> tuple[jax.Array, Any, Any]:
    """Loss and gradient of a long sequence by truncated BPTT.

    The sequence is cut into ``T / chunk`` consecutive chunks. Each chunk starts from the final carry of
    the previous one with its gradient stopped (``lax.stop_gradient``), so back-propagation never
    crosses a chunk boundary and memory is that of one chunk; the losses and gradients of the chunks
    are summed. The loop over chunks is a ``lax.scan``: one compilation whatever ``T``.

    Args:
      loss_fn: ``loss_fn(params, seqs_chunk, carry) -> (loss, final_carry)``; e.g. runs
        ``jlstm.lstm(params, xs_chunk, carry)`` and returns its loss and final state.
      params: the pytree to differentiate.
      seqs: a pytree of arrays sharing the time axis ``axis`` of length ``T`` (inputs, labels...).
      carry: the initial carry (a pytree, e.g. ``LSTMState``), passed to the first chunk.
      chunk: the number of steps per chunk; must divide ``T``.
      axis: the time axis of every leaf of ``seqs`` (1 for ``[B, T, ...]``).

    Returns:
      ``(loss, grads, final_carry)``: summed loss, summed gradients (structured like ``params``), and
      the carry after the last chunk (to continue with the next part of a stream).

    Example:
      >>> def loss_fn(params, batch, carry):
      ...     xs, ys = batch
      ...     hs, final = jlstm.lstm(params, xs, carry)
      ...     return jlstm.l2_loss(hs, ys), final
      >>> loss, grads, carry = jlstm.tbptt_value_and_grad(loss_fn, params, (xs, ys), carry, chunk=50)
    """
    leaves = jax.tree.leaves(seqs)
    if not leaves:
        raise ValueError("tbptt_value_and_grad: seqs must hold at least one array.")
    T = leaves[0].shape[axis]
    for leaf in leaves:
        if leaf.shape[axis] != T:
            raise ValueError(
                f"tbptt_value_and_grad: every leaf of seqs must have the same length on axis {axis}; "
                f"got {leaf.shape[axis]} and {T}."
            )
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk <= 0 or T % chunk:
        raise ValueError(
            f"tbptt_value_and_grad: chunk must be a positive int dividing T = {T}; got {chunk!r}."
        )
    n = T // chunk

    def split(a):  # [..., T, ...] -> [n, ..., chunk, ...]
        a = a.reshape(a.shape[:axis] + (n, chunk) + a.shape[axis + 1 :])
        return jnp.moveaxis(a, axis, 0)

    chunks = jax.tree.map(split, seqs)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def body(acc, chunk_seqs):
        grads, carry = acc
        (loss, carry), g = grad_fn(params, chunk_seqs, lax.stop_gradient(carry))
        return (jax.tree.map(jnp.add, grads, g), carry), loss

    zeros = jax.tree.map(jnp.zeros_like, params)
    (grads, carry), losses = lax.scan(body, (zeros, carry), chunks)
    return jnp.sum(losses), grads, carry
