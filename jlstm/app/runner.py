"""The training loop behind ``jlstm train``: one jitted optax step, logs, checkpoints, resume.

``train(Config(task="digits"))`` writes into ``config.out`` (default ``runs/<task>``):

- ``metrics.jsonl``: one JSON object per logged step (``step``, ``loss``, ``grad_norm``,
  ``steps_per_second``, ``wall_seconds`` and, at evaluations, the task's metrics);
- ``summary.json``: the task, steps, seed, ``final_loss``, ``wall_seconds``, the task's metric,
  ``params_digest`` (sha256 of the final parameters' bytes) and the resolved config;
- ``loss.png`` (training loss and the task's metric against steps) and ``<task>.png`` (the task's figure);
- ``checkpoint/state.npz``: parameters, optimizer state, step and elapsed time, and ``state.prev.npz``,
  the one before, used when the latest cannot be read (see ``checkpoint``).

A run locks ``config.out``; one that holds files is refused unless ``resume`` or ``overwrite`` (``rundir``).
A non-finite loss or parameters stop the run (``Diverged``) before anything is saved, so the last good
checkpoint is never overwritten; an unwritable ``--out`` (a file in the way, a full disk) is a ``RunError``.

The data order is a pure function of ``(seed, step)`` and the checkpoint holds the whole optimizer
state, so ``resume=True`` after any interruption (Ctrl-C, SIGKILL) ends with the same
``params_digest`` as an uninterrupted run with the same seed. The run's ``Config`` is in ``config``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from jlstm import sharding
from jlstm.app import checkpoint, metrics, rundir
from jlstm.app import tasks as tasks_lib
from jlstm.app.checkpoint import (
    CHECKPOINT,
    PREVIOUS,
    Diverged,
    Interrupted,
    RunError,
    check_finite,
    diverged_message,
    load_checkpoint,
    load_latest_checkpoint,
    params_digest,
    save_checkpoint,
)
from jlstm.app.config import Config, Resolved, make_optimizer, optimizer_fn
from jlstm.app.metrics import plot_history

# The config, checkpoint and metrics names are re-exported: callers and tests know them as runner.<name>.
__all__ = [
    "CHECKPOINT",
    "PREVIOUS",
    "Config",
    "Diverged",
    "Interrupted",
    "Resolved",
    "RunError",
    "load_checkpoint",
    "load_latest_checkpoint",
    "make_mesh",
    "make_optimizer",
    "optimizer_fn",
    "params_digest",
    "plot_history",
    "save_checkpoint",
    "train",
]

log = logging.getLogger("jlstm.runner")


def make_mesh(config: Resolved):
    """The data-parallel mesh of a resolved config: ``config.devices`` local devices over the batch.

    ``None`` takes the most local devices (at most all) that divide the batch size, so a batch of 1
    (``gomez``) still runs on a machine with several devices.
    """
    n = config.devices
    if n is None:
        n = max(k for k in range(1, len(jax.devices()) + 1) if config.batch_size % k == 0)
    elif config.batch_size % n:
        raise ValueError(
            f"devices: the batch size {config.batch_size} must be divisible by the number "
            f"of devices; got devices={n}. Use --batch-size a multiple of {n}."
        )
    return sharding.data_mesh(n)


def train(config: Config) -> dict:
    """Train ``config.task``; write metrics, plots, checkpoints and ``summary.json`` into ``config.out``.

    Returns:
      The summary (also written to ``summary.json``).

    Raises:
      Interrupted: on Ctrl-C, after saving a checkpoint that ``resume=True`` continues from.
      Diverged: when the loss or the parameters become NaN or Inf (the last good checkpoint is kept).
      RunError: when ``config.out`` cannot be written or another run holds it, or no checkpoint reads.
      ValueError: a ``config.out`` that holds files without resume or overwrite; resume with another config.
    """
    cfg = config.resolved()
    try:
        with rundir.claim(Path(cfg.out), resume=cfg.resume, overwrite=cfg.overwrite):
            return _train(cfg)
    except OSError as e:
        where = e.filename or cfg.out
        raise RunError(
            f"cannot write the run's output in {where}: {e.strerror or e}. "
            "Choose another --out or free some space."
        ) from e


class _Ended(NamedTuple):
    """Where the loop left a run: its state after the last step and what the summary needs of it."""

    params: Any
    opt_state: Any
    step: int
    last_loss: float
    last_eval: dict | None  # the evaluation of the last step, if the loop ran it
    extra: dict  # the task's first_step check


def _train(cfg: Resolved) -> dict:
    out = Path(cfg.out)
    # Looked up at call time (not imported by name), so that a patched tasks.make takes effect.
    problem = tasks_lib.make(
        cfg.task, seed=cfg.seed, batch_size=cfg.batch_size, hidden_size=cfg.hidden_size, seq_len=cfg.seq_len
    )
    opt = make_optimizer(cfg)
    mesh = make_mesh(cfg)
    params = problem.init(jax.random.key(cfg.seed))
    (params, opt_state), start, wall_before = checkpoint.restore(cfg, out, (params, opt.init(params)))
    traces = []

    def loss_fn(p, batch):
        traces.append(1)  # runs at trace time only: counts compilations of the step
        return problem.loss(p, batch)

    step_fn = sharding.make_sharded_train_step(loss_fn, opt, mesh, has_aux=True)
    params, opt_state = sharding.replicate((params, opt_state), mesh)  # after a resume, too
    with metrics.MetricsLog(
        out / metrics.METRICS,
        task=cfg.task,
        steps=cfg.steps,
        start=start,
        wall_before=wall_before,
        progress=cfg.progress,
    ) as mlog:
        end = _loop(cfg, problem, step_fn, mesh, (params, opt_state, start), mlog)
    return _finish(cfg, problem, end, mlog, traces=len(traces), devices=mesh.size)


def _finish(cfg: Resolved, problem, end: _Ended, mlog, *, traces: int, devices: int) -> dict:
    """The final checkpoint, ``summary.json`` and the figures of a run that reached ``cfg.steps``."""
    out, start, wall_before, wall = Path(cfg.out), mlog.start, mlog.wall_before, mlog.wall()
    ckpt_path = out / CHECKPOINT
    check_finite(cfg.task, end.step, end.params, end.opt_state, None, ckpt_path)
    save_checkpoint(ckpt_path, end.params, end.opt_state, end.step, wall, cfg)
    ran_eval = end.last_eval is not None and start < cfg.steps
    final_eval = end.last_eval if end.last_eval is not None and ran_eval else problem.evaluate(end.params)
    summary = {
        "task": cfg.task,
        "steps": cfg.steps,
        "seed": cfg.seed,
        "final_loss": end.last_loss,
        "wall_seconds": wall,
        "metric": tasks_lib.TASKS[cfg.task].metric,
        **final_eval,
        "params_digest": params_digest(end.params),
        "resumed_from_step": start,
        "steps_per_second": (cfg.steps - start) / max(wall - wall_before, 1e-9),
        "traces": traces,
        "devices": devices,
        "config": dataclasses.asdict(cfg),
        **end.extra,
        **problem.extras(end.params),
    }
    metrics.write_summary(out, summary)
    metrics.plot_history(mlog.history, summary["metric"], out / "loss.png", title=cfg.task)
    problem.figure(end.params, mlog.history, out / f"{cfg.task}.png")
    return summary


def _loop(cfg: Resolved, problem, step_fn, mesh, state: tuple, mlog: metrics.MetricsLog) -> _Ended:
    """Steps ``state[2] + 1`` to ``cfg.steps``: log, evaluate and checkpoint as configured.

    On Ctrl-C, checkpoints the last completed step (if it is finite) and raises ``Interrupted``.
    """
    ckpt_path = Path(cfg.out) / CHECKPOINT
    extra: dict = {}
    # A resumed run with no step left keeps the loss it logged last.
    last_loss = mlog.history[-1]["loss"] if mlog.history else float("nan")
    last_eval: dict | None = None
    try:
        for s in range(state[2], cfg.steps):
            p, o, m = step_fn(state[0], state[1], sharding.shard_batch(problem.batch(s), mesh))
            state = (p, o, s + 1)  # replaced in one assignment, so Ctrl-C never sees it half-done
            done = s + 1
            if done == 1 and problem.first_step is not None:
                extra.update(problem.first_step(p))
            last = done == cfg.steps
            evaluate = done % cfg.eval_every == 0 or last
            if done % cfg.log_every == 0 or evaluate:
                last_loss, ev = _log_step(cfg, problem, mlog, done, p, m, evaluate)
                last_eval = ev if evaluate else last_eval
            if done % cfg.checkpoint_every == 0 and not last:
                check_finite(cfg.task, done, p, o, m, ckpt_path)
                save_checkpoint(ckpt_path, p, o, done, mlog.wall(), cfg)
    except KeyboardInterrupt:
        checkpoint.save_interrupted(cfg, Path(cfg.out), state, mlog.wall())
    return _Ended(state[0], state[1], state[2], last_loss, last_eval, extra)


def _log_step(cfg: Resolved, problem, mlog: metrics.MetricsLog, done: int, params, m, evaluate: bool):
    """Write the row of step ``done`` (evaluated if ``evaluate``); returns its loss and evaluation."""
    rec = mlog.row(done, m)
    if not np.isfinite(rec["loss"]):
        raise Diverged(
            diverged_message(cfg.task, done, "the loss is " + str(rec["loss"]), Path(cfg.out) / CHECKPOINT)
        )
    ev = None
    if evaluate:
        ev = problem.evaluate(params)
        rec.update(ev)
        shown = "  ".join(f"{k} {v:.4g}" for k, v in ev.items())
        log.info("step %d  loss %.4f  %s", done, rec["loss"], shown)
    mlog.write(rec)
    return rec["loss"], ev
