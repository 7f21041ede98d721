"""The training loop behind ``jlstm train``: config, one jitted optax step, logs, checkpoints, resume.

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
``params_digest`` as an uninterrupted run with the same seed.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import optax

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
from jlstm.app.metrics import plot_history

# The checkpoint and metrics names are re-exported: callers and tests know them as runner.<name>.
__all__ = ["CHECKPOINT", "PREVIOUS", "Config", "Diverged", "Interrupted", "Resolved", "RunError",
           "load_checkpoint", "load_latest_checkpoint", "make_mesh", "make_optimizer", "optimizer_fn",
           "params_digest", "plot_history", "save_checkpoint", "train"]  # fmt: skip

log = logging.getLogger("jlstm.runner")


@dataclass(frozen=True)
class Config:
    """A training run. ``None`` means the task's default (see ``jlstm.tasks.TASKS``).

    A new command-line option of ``jlstm train`` only needs a field here of the same name: the
    command forwards every option to ``Config`` by name.
    """

    task: str
    steps: int | None = None
    seed: int = 0
    out: str | None = None  # default runs/<task>
    resume: bool = False
    overwrite: bool = False  # start again in an out that holds a run (its run files are removed first)
    optimizer: str | None = None  # any optax optimizer that takes a learning rate: sgd, adam, ...
    lr: float | None = None
    batch_size: int | None = None
    clip: float | None = None  # global-norm clipping; 0 turns a task's default clipping off
    hidden_size: int | None = None
    seq_len: int | None = None  # T for adding, the unroll length for charlm
    eval_every: int | None = None
    checkpoint_every: int | None = None
    log_every: int | None = None
    progress: bool = True
    devices: int | None = None  # data-parallel over the first N local devices; None: all that divide B

    def __post_init__(self):
        if self.task not in tasks_lib.TASKS:
            raise ValueError(f"task must be one of {sorted(tasks_lib.TASKS)}; got {self.task!r}.")
        for name in ("steps", "batch_size", "hidden_size", "seq_len", "eval_every", "checkpoint_every",
                     "log_every", "devices"):  # fmt: skip
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
                raise ValueError(f"{name} must be a positive integer; got {v!r}.")
        if self.lr is not None and not (isinstance(self.lr, int | float) and self.lr > 0):
            raise ValueError(f"lr must be a positive number; got {self.lr!r}.")
        if self.clip is not None and not (isinstance(self.clip, int | float) and self.clip >= 0):
            raise ValueError(f"clip must be a non-negative number (0 = no clipping); got {self.clip!r}.")
        if self.optimizer is not None:
            optimizer_fn(self.optimizer)  # raises a ValueError naming the optimizers it knows
        if self.resume and self.overwrite:  # the one continues the run in out, the other starts it again
            raise ValueError("resume and overwrite exclude each other; got both. Pass one of them.")
        tasks_lib.check_fixed(self.task, self)  # else gomez's H = 1 would be recorded as the H given

    def resolved(self) -> Resolved:
        """This config with every ``None`` replaced by the task's default."""
        defaults = tasks_lib.TASKS[self.task].defaults
        fill = {k: defaults[k] for k in defaults if getattr(self, k) is None}
        if self.out is None:
            fill["out"] = str(Path("runs") / self.task)
        if self.clip == 0:
            fill["clip"] = None
        return Resolved(**{**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, **fill})


@dataclass(frozen=True, kw_only=True)
class Resolved(Config):
    """``Config.resolved()``: the task's defaults filled in, so every field but ``clip`` is set."""

    steps: int
    out: str
    optimizer: str
    lr: float
    batch_size: int
    hidden_size: int
    seq_len: int
    eval_every: int
    checkpoint_every: int
    log_every: int


_OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "adabelief", "lion", "nadam", "lamb",
               "radam", "yogi", "novograd", "sm3", "fromage", "noisy_sgd", "adamax")  # fmt: skip


def optimizer_fn(name: str):
    """The optax optimizer constructor called ``name`` (e.g. ``"sgd"``, ``"adam"``)."""
    if name not in _OPTIMIZERS or not callable(getattr(optax, name, None)):
        known = [n for n in _OPTIMIZERS if callable(getattr(optax, n, None))]
        raise ValueError(f"optimizer must be an optax optimizer taking a learning rate, one of {known}; "
                         f"got {name!r}.")  # fmt: skip
    return getattr(optax, name)


def make_optimizer(config: Resolved) -> optax.GradientTransformation:
    """The optax transformation of a resolved config: optional global-norm clipping, then the optimizer."""
    opt = optimizer_fn(config.optimizer)(learning_rate=config.lr)
    if config.clip:
        opt = optax.chain(optax.clip_by_global_norm(config.clip), opt)
    return opt


# ------------------------------------------------------------------------------------------- the loop


def make_mesh(config: Resolved):
    """The data-parallel mesh of a resolved config: ``config.devices`` local devices over the batch.

    ``None`` takes the most local devices (at most all) that divide the batch size, so a batch of 1
    (``gomez``) still runs on a machine with several devices.
    """
    n = config.devices
    if n is None:
        n = max(k for k in range(1, len(jax.devices()) + 1) if config.batch_size % k == 0)
    elif config.batch_size % n:
        raise ValueError(f"devices: the batch size {config.batch_size} must be divisible by the number "
                         f"of devices; got devices={n}. Use --batch-size a multiple of {n}.")  # fmt: skip
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
        raise RunError(f"cannot write the run's output in {where}: {e.strerror or e}. "
                       "Choose another --out or free some space.") from e  # fmt: skip


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
    problem = tasks_lib.make(cfg.task, seed=cfg.seed, batch_size=cfg.batch_size,
                             hidden_size=cfg.hidden_size, seq_len=cfg.seq_len)  # fmt: skip
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
    with metrics.MetricsLog(out / metrics.METRICS, task=cfg.task, steps=cfg.steps, start=start,
                            wall_before=wall_before, progress=cfg.progress) as mlog:  # fmt: skip
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
        raise Diverged(diverged_message(cfg.task, done, "the loss is " + str(rec["loss"]),
                                        Path(cfg.out) / CHECKPOINT))  # fmt: skip
    ev = None
    if evaluate:
        ev = problem.evaluate(params)
        rec.update(ev)
        shown = "  ".join(f"{k} {v:.4g}" for k, v in ev.items())
        log.info("step %d  loss %.4f  %s", done, rec["loss"], shown)
    mlog.write(rec)
    return rec["loss"], ev
