"""One jitted optax training step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax


def make_train_step(
    loss_fn: Callable[..., Any],
    optimizer: optax.GradientTransformation,
    *,
    has_aux: bool = False,
    jit: bool = True,
) -> Callable:
    """Build ``step(params, opt_state, batch) -> (params, opt_state, metrics)``.

    Args:
      loss_fn: ``loss_fn(params, batch) -> loss`` (a scalar), or ``(loss, aux)`` with ``has_aux``
        where ``aux`` is a dict of scalar metrics merged into ``metrics``.
      optimizer: any optax transformation, e.g. ``optax.sgd(0.1)`` as in the source.
      has_aux: whether ``loss_fn`` returns ``(loss, aux)``.
      jit: compile the step with ``jax.jit`` (traced once per input shape/dtype).

    Returns:
      The step; ``metrics`` holds ``loss`` and ``grad_norm`` (the global norm before the update).

    Example:
      >>> opt = optax.sgd(0.1)
      >>> step = jlstm.make_train_step(lambda p, b: jlstm.l2_loss(jlstm.lstm(p, b[0])[0], b[1]), opt)
      >>> params, opt_state, metrics = step(params, opt.init(params), (xs, ys))
    """

    def step(params, opt_state, batch):
        out, grads = jax.value_and_grad(loss_fn, has_aux=has_aux)(params, batch)
        loss, aux = out if has_aux else (out, {})
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), **aux}
        return params, opt_state, metrics

    return jax.jit(step) if jit else step
