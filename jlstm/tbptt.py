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
    n = _num_chunks(seqs, chunk, axis)

    def split(a):  # [..., T, ...] -> [n, ..., chunk, ...]
        a = a.reshape(a.shape[:axis] + (n, chunk) + a.shape[axis + 1 :])
        return jnp.moveaxis(a, axis, 0)

    chunks = jax.tree.map(split, seqs)
    carry = _cast_carry(loss_fn, params, jax.tree.map(lambda a: a[0], chunks), carry)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def body(acc, chunk_seqs):
        grads, carry = acc
        (loss, carry), g = grad_fn(params, chunk_seqs, lax.stop_gradient(carry))
        grads = jax.tree.map(lambda a, b: a + b.astype(a.dtype), grads, g)
        return (grads, carry), loss.astype(jnp.promote_types(loss.dtype, jnp.float32))

    # Gradients summed over chunks in at least float32, rounded once to each parameter's dtype.
    zeros = jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), jnp.promote_types(p.dtype, jnp.float32)), params)
    (grads, carry), losses = lax.scan(body, (zeros, carry), chunks)
    grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, params)
    return jnp.sum(losses), grads, carry


def _num_chunks(seqs: Any, chunk: int, axis: int) -> int:
    """``T / chunk``, after checking that every leaf of ``seqs`` has length ``T`` and ``chunk`` divides it."""
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
    return T // chunk


def _cast_carry(loss_fn: Callable, params: Any, first: Any, carry: Any) -> Any:
    """``carry`` cast to the structure and dtypes of ``loss_fn``'s final carry on the chunk ``first``.

    The scan's carry must keep one structure and dtype, e.g. a float32 cell state under bfloat16 compute.
    """
    out = jax.eval_shape(lambda c: loss_fn(params, first, c)[1], carry)
    out_def: Any = jax.tree.structure(out)  # Any: jaxlib's PyTreeDef has no comparison in its stubs
    if out_def != jax.tree.structure(carry):
        raise ValueError(
            "tbptt_value_and_grad: loss_fn must return a final carry shaped like the carry it takes; "
            f"got {jax.tree.structure(out)} for {jax.tree.structure(carry)}."
        )
    return jax.tree.map(lambda c, o: jnp.asarray(c).astype(o.dtype), carry, out)
