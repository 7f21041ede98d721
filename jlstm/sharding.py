"""Data-parallel training over a ``jax.sharding.Mesh``: the batch is split, the model is copied.

The batch axis (axis 0 of every leaf of ``batch``) is sharded over the mesh axis ``"data"``;
parameters and optimizer state are replicated on every device. Each device runs the forward and the
hand-written backward (``jlstm.lstm``, a ``custom_vjp`` around ``lax.scan``) on its own slice of the
batch, and XLA inserts one all-reduce that sums the gradients (and the loss) across devices. No
activation ever leaves its device: the recurrence runs over time, never across the batch, so the
per-example work partitions without communication. The step computes exactly what the single-device
``jlstm.make_train_step`` computes, up to the order of floating-point sums.

Single host::

    from jlstm import sharding                           # not imported by ``import jlstm``
    mesh = sharding.data_mesh()                          # all devices, axis "data"
    step = sharding.make_sharded_train_step(loss_fn, optimizer, mesh)
    params = sharding.replicate(params, mesh)
    opt_state = sharding.replicate(optimizer.init(params), mesh)
    for batch in batches:                                # global batch, axis 0 divisible by mesh.size
        params, opt_state, metrics = step(params, opt_state, sharding.shard_batch(batch, mesh))

Several hosts: call ``jax.distributed.initialize()`` first in every process and give ``shard_batch`` each
process's own share of the batch (see ``docs/scaling.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jlstm.train import make_train_step

#: The mesh axis that the batch is split over.
DATA_AXIS = "data"


def data_mesh(devices: int | None = None) -> Mesh:
    """A 1-D mesh with axis ``"data"`` over the first ``devices`` devices (all of them by default).

    With several processes (after ``jax.distributed.initialize()``) ``jax.devices()`` lists the devices
    of every process, and the mesh must span all of them: ``devices`` may then only be ``None`` or the
    total count.

    Args:
      devices: how many devices, ``1 <= devices <= len(jax.devices())``; ``None`` means all.

    Returns:
      ``jax.sharding.Mesh`` of shape ``{"data": devices}``.

    Example:
      >>> mesh = sharding.data_mesh(4)      # e.g. XLA_FLAGS=--xla_force_host_platform_device_count=4
      >>> mesh.shape
      {'data': 4}
    """
    available = jax.devices()
    if devices is None:
        devices = len(available)
    if isinstance(devices, bool) or not isinstance(devices, int | np.integer):
        raise TypeError(f"data_mesh: devices must be an int or None; got {devices!r}.")
    devices = int(devices)
    if not 1 <= devices <= len(available):
        raise ValueError(
            f"data_mesh: devices must be between 1 and {len(available)} (the devices JAX sees: "
            f"{available[0].platform} x {len(available)}); got {devices}. On CPU, more devices can be "
            "simulated with XLA_FLAGS=--xla_force_host_platform_device_count=N, set before JAX starts."
        )
    if jax.process_count() > 1 and devices != len(available):
        raise ValueError(
            f"data_mesh: with {jax.process_count()} processes the mesh must span all {len(available)} "
            f"devices (every process runs the step); got devices={devices}. Pass None."
        )
    return Mesh(np.array(available[:devices]), (DATA_AXIS,))


def _check_mesh(mesh: Any, where: str) -> int:
    if not isinstance(mesh, Mesh):
        raise TypeError(
            f"{where}: mesh must be a jax.sharding.Mesh (see data_mesh); got {type(mesh).__name__}."
        )
    if DATA_AXIS not in mesh.axis_names:
        raise ValueError(f"{where}: mesh must have an axis named {DATA_AXIS!r}; got axes {mesh.axis_names}.")
    return mesh.shape[DATA_AXIS]


def _check_batch(batch: Any, n: int, where: str, what: str = "batch") -> None:
    """Every leaf needs a leading batch axis that splits evenly over the ``n`` devices of ``"data"``."""
    leaves = jax.tree_util.tree_leaves_with_path(batch)
    if not leaves:
        raise ValueError(f"{where}: {what} has no arrays.")
    for path, leaf in leaves:
        name = what + jax.tree_util.keystr(path)
        shape = np.shape(leaf)
        if len(shape) == 0:
            raise ValueError(
                f"{where}: every leaf of {what} needs a leading batch axis to split over the devices; "
                f"{name} is a scalar. Close over constants in loss_fn instead."
            )
        if shape[0] % n:
            raise ValueError(
                f"{where}: the batch axis (axis 0) of {name} must be divisible by the {n} devices of the "
                f"mesh axis {DATA_AXIS!r}; got shape {shape}. Use a batch size that is a multiple of {n} "
                f"(e.g. {max(n, shape[0] // n * n)}) or a mesh with fewer devices."
            )


def _shape_of(a: Any) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a), weak_type=getattr(a, "weak_type", False))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place a copy of every leaf of ``tree`` (params, optimizer state) on every device of ``mesh``.

    With several processes every process must pass the same values (same seed, same checkpoint).
    """
    _check_mesh(mesh, "replicate")
    return jax.device_put(tree, NamedSharding(mesh, P()))


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """Split every leaf of ``batch`` along axis 0 over the mesh axis ``"data"``.

    Args:
      batch: a pytree of arrays, each ``[B, ...]`` with the same ``B``. In a single process, the whole
        (global) batch, ``B`` divisible by the number of devices. With several processes, this process's
        share: ``B`` divisible by its number of devices; the global batch is the concatenation of the
        processes' shares in process order (``jax.make_array_from_process_local_data``).

    Returns:
      The same pytree of ``jax.Array``, leaf ``[B_global, ...]`` with device ``k`` holding rows
      ``[k * B_global / n, (k + 1) * B_global / n)``.
    """
    where = "shard_batch"
    n = _check_mesh(mesh, where)
    sharding = NamedSharding(mesh, P(DATA_AXIS))
    if jax.process_count() == 1:
        _check_batch(batch, n, where)
        return jax.device_put(batch, sharding)
    local = len({d for d in mesh.devices.flat if d.process_index == jax.process_index()})
    _check_batch(batch, local, where, what="batch (this process's share)")
    return jax.tree.map(lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a)), batch)


def make_sharded_train_step(
    loss_fn: Callable[..., Any],
    optimizer: optax.GradientTransformation,
    mesh: Mesh,
    *,
    has_aux: bool = False,
) -> Callable:
    """``jlstm.make_train_step``, compiled for data parallelism over ``mesh``.

    The step is the single-device step (same ``loss_fn`` contract, same metrics), jitted with
    ``in_shardings``: ``params`` and ``opt_state`` replicated, every leaf of ``batch`` split along
    axis 0 over ``"data"``; outputs replicated. ``loss_fn`` is written for the global batch (a mean over
    it stays a mean over the global batch); XLA's partitioner turns its reductions and the gradient
    sums into all-reduces across devices.

    Args:
      loss_fn: ``loss_fn(params, batch) -> loss``, or ``(loss, aux)`` with ``has_aux`` (``aux`` a dict
        of scalars).
      optimizer: any optax transformation.
      mesh: a mesh with an axis ``"data"`` (``data_mesh``); other axes, if any, hold replicas.
      has_aux: whether ``loss_fn`` returns ``(loss, aux)``.

    Returns:
      ``step(params, opt_state, batch) -> (params, opt_state, metrics)``; ``metrics`` holds ``loss``,
      ``grad_norm`` and ``aux``. It raises ``ValueError`` if a leaf of ``batch`` is a scalar or its
      axis 0 is not divisible by the number of devices. Inputs not yet placed (NumPy arrays, arrays on
      one device) are moved to the right sharding on each call; place them once with ``replicate`` and
      ``shard_batch`` to avoid the copies. ``step.lower(params, opt_state, batch)`` (arrays placed anywhere,
      or ``jax.ShapeDtypeStruct``) gives the lowered computation:
      ``step.lower(...).compile().as_text()`` is the partitioned HLO, where the gradients' all-reduce
      shows and no all-gather should.

    Example:
      >>> mesh = sharding.data_mesh()
      >>> step = sharding.make_sharded_train_step(loss_fn, optax.adam(1e-3), mesh)
      >>> params, opt_state, metrics = step(params, opt_state, sharding.shard_batch((xs, ys), mesh))
    """
    where = "make_sharded_train_step"
    n = _check_mesh(mesh, where)
    replicated = NamedSharding(mesh, P())
    split = NamedSharding(mesh, P(DATA_AXIS))
    # A single sharding for a whole argument applies to each of its leaves.
    jitted = jax.jit(
        make_train_step(loss_fn, optimizer, has_aux=has_aux, jit=False),
        in_shardings=(replicated, replicated, split),
        out_shardings=(replicated, replicated, replicated),
    )

    def step(params, opt_state, batch):
        _check_batch(batch, n, "sharded train step")
        return jitted(params, opt_state, batch)

    def lower(params, opt_state, batch):
        _check_batch(batch, n, "sharded train step")
        # Shapes only: jit's lower() refuses arrays already placed with another sharding, call() does not.
        return jitted.lower(*jax.tree.map(_shape_of, (params, opt_state, batch)))

    step.lower = lower  # type: ignore[attr-defined]  # jit's own lower(), for tests that read the HLO
    step.__doc__ = f"Data-parallel train step over {n} device(s) of mesh axis {DATA_AXIS!r}."
    return step
