"""Losses: the source's L2 and softmax cross-entropy for classifiers and language models."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def l2_loss(hs: jax.Array, ys: jax.Array) -> jax.Array:
    """The source's loss ``E = sum_t (out_t - y_t)^2 / 2`` (summed over every axis).

    Its gradient w.r.t. ``hs`` is ``hs - ys``, the source's ``Delta_t``.

    Args:
      hs: ``[..., T, H]`` outputs.  ys: labels of the same shape.

    Returns:
      A scalar.
    """
    if hs.shape != ys.shape:
        raise ValueError(f"l2_loss: ys must have the shape of hs, {hs.shape}; got {ys.shape}.")
    return 0.5 * jnp.sum(jnp.square(hs - ys))


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Mean cross-entropy of integer ``labels [...]`` under ``logits [..., K]``, over ``mask`` if given.

    Args:
      logits: ``[..., K]``.  labels: integer ``[...]``.  mask: optional ``[...]`` weights (1 = counted).

    Returns:
      A scalar, in nats.
    """
    if logits.shape[:-1] != labels.shape:
        raise ValueError(
            f"softmax_cross_entropy: labels must be {logits.shape[:-1]} (logits without the class axis); "
            f"got {labels.shape}."
        )
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    if mask is None:
        return jnp.mean(losses)
    mask = mask.astype(losses.dtype)
    return jnp.sum(losses * mask) / jnp.maximum(jnp.sum(mask), 1)
