"""A population of small LSTMs trained in one jitted call: ``vmap`` over hyperparameters and seeds.

The trials of a bucket (one variant, one task, one hidden size) have equal shapes, so their parameters
are stacked along a leading trial axis ``[n, ...]`` and one jitted function trains all of them: it
initialises them, runs ``lax.scan`` over SGD steps of ``vmap`` over trials, evaluates every trial on
the validation and test sets every ``eval_every`` steps, and returns the metrics. The batches are drawn
on the device from a key that depends on the step only, so every trial and every variant sees the same
data; trials differ in initialisation seed, learning rate, momentum and input noise (traced arrays, so
one compilation serves every sample). The cell and its gradient are ``jlstm.lstm`` with its default,
hand-written backward. One call and one compilation per bucket: compiling dominates small runs.

Optimiser: SGD with Nesterov momentum, as Greff et al. (``v <- mu v - lr g``; ``p <- p + mu v - lr g``).
A step whose loss or update is not finite is skipped for that trial and counted, so a diverging trial
keeps its last finite parameters and is scored by them (the paper scored such trials too).
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import jlstm
from jlstm.app.odyssey.tasks import F32, Task, evaluation_set, frame_terms, masked_mean


class Hyper(NamedTuple):
    """Per-trial hyperparameters, each ``[n]`` (scalars inside ``vmap``)."""

    lr: jax.Array
    momentum: jax.Array
    noise: jax.Array


class Plan(NamedTuple):
    """How long a trial trains: ``steps`` in all (a multiple of ``eval_every``), evaluated every
    ``eval_every`` steps; ``data_seed`` fixes the order of the batches."""

    steps: int
    eval_every: int
    data_seed: int = 0


def init_model(task: Task, hidden: int, cell: dict, key: jax.Array) -> dict:
    """One trial's parameters: ``{"lstm": jlstm.init(..., **cell), "head": {"w": [H, O], "b": [O]}}``."""
    k1, k2 = jax.random.split(key)
    bound = 1.0 / math.sqrt(hidden)
    head = {
        "w": jax.random.uniform(k2, (hidden, task.output_size), F32, -bound, bound),
        "b": jnp.zeros((task.output_size,), F32),
    }
    return {"lstm": jlstm.init(k1, task.input_size, hidden, **cell), "head": head}


def forward(params: dict, xs: jax.Array) -> jax.Array:
    """Logits ``[B, T, O]`` of every frame of ``xs [B, T, D]`` (one LSTM layer and a dense output)."""
    hs, _ = jlstm.lstm(params["lstm"], xs)
    return hs @ params["head"]["w"] + params["head"]["b"][None, None]


def _sgd_step(task: Task):
    """One trial's training step ``(state, hyper, key, inputs, targets) -> (state, (loss, ok))``."""

    def loss_fn(params, xs, targets):
        return jnp.mean(frame_terms(task.kind, task.metric, forward(params, xs), targets)[0])

    def step(state, hyper, key, inputs, targets):
        params, vel = state
        xs = task.features(inputs)
        xs = xs + hyper.noise * jax.random.normal(key, xs.shape, F32)  # Greff et al.'s input noise
        loss, g = jax.value_and_grad(loss_fn)(params, xs, targets)
        mu, lr = hyper.momentum, hyper.lr
        vel_new = jax.tree.map(lambda v, d: mu * v - lr * d, vel, g)
        params_new = jax.tree.map(lambda p, v, d: p + mu * v - lr * d, params, vel_new, g)
        ok = jnp.isfinite(loss)
        for leaf in jax.tree.leaves(params_new):
            ok = ok & jnp.all(jnp.isfinite(leaf))
        new = jax.tree.map(lambda a, b: jnp.where(ok, a, b), (params_new, vel_new), state)
        return new, (loss, ok)

    return step


def population_fn(task: Task, plan: Plan, n_valid: int):
    """``run(params [n, ...], seeds [n], hyper, data, evalset) -> (loss, skipped, valid, test)``, each
    ``[E, n]`` (E = steps / eval_every evaluations): the whole training of ``n`` trials, to be jitted.
    ``evalset`` is ``tasks.evaluation_set``'s: validation (the first ``n_valid`` rows) and test."""
    many = jax.vmap(_sgd_step(task), in_axes=(0, 0, 0, None, None))

    def metrics(params, split):
        is_valid = (jnp.arange(split.mask.shape[0]) < n_valid).astype(F32)[:, None]  # [B, 1]

        def one(p):
            m = frame_terms(task.kind, task.metric, forward(p, task.features(split.inputs)), split.targets)[1]
            return masked_mean(m, split.mask * is_valid), masked_mean(m, split.mask * (1.0 - is_valid))

        return jax.vmap(one)(params)

    def run(params, seeds, hyper, data, evalset):
        keys = jax.vmap(jax.random.key)(seeds)
        trial_keys = jax.vmap(jax.random.fold_in, (0, None))(keys, 1)  # not the keys of the initialisation
        data_key = jax.random.key(plan.data_seed)

        def train_step(state, s):
            inputs, targets = task.sample(data, jax.random.fold_in(data_key, s))
            return many(state, hyper, jax.vmap(jax.random.fold_in, (0, None))(trial_keys, s), inputs, targets)

        def segment(state, e):
            steps = e * plan.eval_every + jnp.arange(plan.eval_every, dtype=jnp.int32)
            state, (losses, oks) = lax.scan(train_step, state, steps)
            return state, (losses[-1], jnp.sum(~oks, axis=0), *metrics(state[0], evalset))

        state = (params, jax.tree.map(jnp.zeros_like, params))
        n_evals = plan.steps // plan.eval_every
        _, out = lax.scan(segment, state, jnp.arange(n_evals, dtype=jnp.int32))
        return out

    return run


def init_population(task: Task, cell: dict, hidden: int, seeds: np.ndarray):
    """Every trial's ``init_model`` from ``jax.random.key(seed)``, stacked along a leading trial axis.

    Run eagerly, one trial at a time, outside the jitted training: the random draws of the
    initialisation then compile once per shape for the whole study (not once per bucket; inside a
    bucket's program they were a quarter of its compile time).
    """
    trials = [init_model(task, hidden, cell, jax.random.key(int(s))) for s in seeds]
    return jax.tree.map(lambda *a: jnp.stack(a), *trials)


def compile_population(task: Task, cell: dict, hidden: int, plan: Plan, n: int, fast_compile: bool = False):
    """``population_fn`` compiled for ``n`` trials of ``cell`` with ``hidden`` units:
    ``run(init_population(...), seeds, hyper, data, evalset)``.

    ``fast_compile`` turns XLA's backend optimisation off: about 3x faster to compile and 3x slower to
    run, the right trade for the quick smoke test, where compiling is nearly all of the time.
    """
    if plan.steps < plan.eval_every or plan.steps % plan.eval_every:
        raise ValueError(
            f"plan: steps must be a positive multiple of eval_every={plan.eval_every}; got {plan.steps}."
        )
    seeds = jax.ShapeDtypeStruct((n,), jnp.uint32)
    params = jax.eval_shape(lambda: init_population(task, cell, hidden, np.arange(n)))
    hyper = Hyper(*(jax.ShapeDtypeStruct((n,), F32) for _ in Hyper._fields))  # type: ignore[arg-type]
    evalset, n_valid = evaluation_set(task)
    shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), (task.data, evalset))
    lowered = jax.jit(population_fn(task, plan, n_valid)).lower(params, seeds, hyper, *shapes)
    return lowered.compile({"xla_backend_optimization_level": 0} if fast_compile else None)  # type: ignore[dict-item]


def hyper_arrays(trials: dict[str, np.ndarray]) -> tuple[jax.Array, Hyper]:
    """The seeds ``[n]`` (uint32) and ``Hyper`` of ``trials`` as device arrays."""
    return jnp.asarray(trials["seed"], jnp.uint32), Hyper(
        *(jnp.asarray(trials[k], F32) for k in Hyper._fields)
    )


def train_bucket(
    task: Task,
    cell: dict,
    hidden: int,
    trials: dict[str, np.ndarray],
    plan: Plan,
    fast_compile: bool = False,
    compiled=None,
) -> dict:
    """Train the trials of one bucket together; each is scored at its best validation evaluation.

    Args:
      task: the built task.  cell: ``jlstm.init`` keywords of the variant.  hidden: the bucket's H.
      trials: ``{"seed", "lr", "momentum", "noise"}`` arrays ``[n]``.
      plan: steps, evaluation interval, data order.
      fast_compile: see ``compile_population``.
      compiled: ``compile_population``'s executable for these arguments, if compiled already.

    Returns:
      ``valid`` (best validation metric), ``test`` (the test metric there: early stopping, as the
      paper), ``best_step``, ``final_loss`` (training loss of the last step) and ``skipped`` (non-finite
      steps), each ``[n]``; ``compile_seconds``, ``init_seconds`` (eager, compiles once per shape) and
      ``run_seconds`` (the training and evaluations) of the bucket.
    """
    t0 = time.perf_counter()
    run = compiled or compile_population(task, cell, hidden, plan, len(trials["seed"]), fast_compile)
    t1 = time.perf_counter()
    params = init_population(task, cell, hidden, trials["seed"])
    jax.block_until_ready(params)
    t2 = time.perf_counter()
    out = run(params, *hyper_arrays(trials), task.data, evaluation_set(task)[0])
    loss, skipped, val, tst = (np.asarray(a) for a in out)
    t3 = time.perf_counter()
    val = np.where(np.isfinite(val), val, np.inf)
    best = np.argmin(val, axis=0)  # [n]: the evaluation with the best validation metric
    cols = np.arange(val.shape[1])
    return {
        "valid": val[best, cols],
        "test": tst[best, cols],
        "best_step": (best + 1) * plan.eval_every,
        "final_loss": loss[-1],
        "skipped": skipped.sum(axis=0),
        "compile_seconds": t1 - t0,
        "init_seconds": t2 - t1,
        "run_seconds": t3 - t2,
    }
