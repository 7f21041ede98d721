"""The training loop behind ``jlstm train``: config, one jitted optax step, logs, checkpoints, resume.

``train(Config(task="digits"))`` writes into ``config.out`` (default ``runs/<task>``):

- ``metrics.jsonl``: one JSON object per logged step (``step``, ``loss``, ``grad_norm``,
  ``steps_per_second``, ``wall_seconds`` and, at evaluations, the task's metrics);
- ``summary.json``: the task, steps, seed, ``final_loss``, ``wall_seconds``, the task's metric,
  ``params_digest`` (sha256 of the final parameters' bytes) and the resolved config;
- ``loss.png`` (training loss and the task's metric against steps) and ``<task>.png`` (the task's figure);
- ``checkpoint/state.npz``: parameters, optimizer state, step and elapsed time, written to a temporary
  file and renamed over the previous one, which is kept as ``checkpoint/state.prev.npz``; a checkpoint
  that cannot be read (truncated, corrupted) is reported and the previous one is used.

A non-finite loss or non-finite parameters stop the run (``Diverged``) before anything is saved, so
the last good checkpoint is never overwritten. An ``--out`` that cannot be written (a file in the way,
a full disk) gives a ``RunError`` naming the path and the reason.

The data order is a pure function of ``(seed, step)`` and the checkpoint holds the whole optimizer
state, so ``resume=True`` after any interruption (Ctrl-C, SIGKILL) ends with the same
``params_digest`` as an uninterrupted run with the same seed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jlstm import sharding
from jlstm.app import tasks as tasks_lib

log = logging.getLogger("jlstm.runner")

CHECKPOINT = Path("checkpoint") / "state.npz"
PREVIOUS = Path("checkpoint") / "state.prev.npz"

# Fields that must agree between a checkpoint and the run resuming it (``steps`` may grow).
_RESUME_FIELDS = ("task", "seed", "optimizer", "lr", "batch_size", "clip", "hidden_size", "seq_len")


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

    def resolved(self) -> Config:
        """This config with every ``None`` replaced by the task's default."""
        defaults = tasks_lib.TASKS[self.task].defaults
        fill = {k: defaults[k] for k in defaults if getattr(self, k) is None}
        if self.out is None:
            fill["out"] = str(Path("runs") / self.task)
        if self.clip == 0:
            fill["clip"] = None
        return dataclasses.replace(self, **fill)


_OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "adabelief", "lion", "nadam", "lamb",
               "radam", "yogi", "novograd", "sm3", "fromage", "noisy_sgd", "adamax")  # fmt: skip


def optimizer_fn(name: str):
    """The optax optimizer constructor called ``name`` (e.g. ``"sgd"``, ``"adam"``)."""
    if name not in _OPTIMIZERS or not callable(getattr(optax, name, None)):
        known = [n for n in _OPTIMIZERS if callable(getattr(optax, n, None))]
        raise ValueError(f"optimizer must be an optax optimizer taking a learning rate, one of {known}; "
                         f"got {name!r}.")  # fmt: skip
    return getattr(optax, name)


def make_optimizer(config: Config) -> optax.GradientTransformation:
    """The optax transformation of a resolved config: optional global-norm clipping, then the optimizer."""
    opt = optimizer_fn(config.optimizer)(learning_rate=config.lr)
    if config.clip:
        opt = optax.chain(optax.clip_by_global_norm(config.clip), opt)
    return opt


def params_digest(params: Any) -> str:
    """sha256 over every leaf's shape, dtype and bytes, in ``jax.tree.leaves`` order (dict keys sorted)."""
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(params):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: Path, params, opt_state, step: int, wall_seconds: float, config: Config) -> None:
    """Write ``(params, opt_state)`` and the step to ``path`` atomically (temp file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    leaves = jax.tree.leaves((params, opt_state))
    arrays = {f"leaf_{i:04d}": np.asarray(x) for i, x in enumerate(leaves)}
    meta = {"step": step, "wall_seconds": wall_seconds, "config": dataclasses.asdict(config)}
    arrays["meta"] = np.asarray(json.dumps(meta))
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-written file behind
        raise
    if path.exists():
        os.replace(path, _previous(path))  # between the two renames, the previous one is still there
    os.replace(tmp, path)  # atomic: a reader sees the old checkpoint or the new one, never half


def _previous(path: Path) -> Path:
    return path.with_name(path.stem + ".prev" + path.suffix)


class RunError(Exception):
    """A run that cannot go on for a reason outside the model: unwritable output, no usable checkpoint."""


class Diverged(RunError):
    """The loss or the parameters became NaN or Inf; nothing was saved after the last good step."""


def load_latest_checkpoint(path: Path, template) -> tuple[Any, dict] | None:
    """The newest readable checkpoint among ``path`` and the previous one kept beside it.

    A checkpoint that cannot be read (truncated, corrupted, of another configuration) is logged with
    the reason and the previous one is tried. Returns None if there is neither file; raises
    ``RunError`` naming both reasons if neither can be read.
    """
    reasons = []
    for candidate in (path, _previous(path)):
        if not candidate.exists():
            continue
        try:
            loaded = load_checkpoint(candidate, template)
        except Exception as e:  # noqa: BLE001 - zipfile, pickle and numpy raise many kinds
            reasons.append(f"{candidate}: {type(e).__name__}: {e}")
            log.warning("checkpoint %s cannot be read (%s: %s); trying the previous one", candidate,
                        type(e).__name__, e)  # fmt: skip
            continue
        if reasons:
            log.warning("resuming from the previous checkpoint %s (step %d)", candidate, loaded[1]["step"])
        return loaded
    if reasons:
        raise RunError("no readable checkpoint: " + "; ".join(reasons))
    return None


def load_checkpoint(path: Path, template) -> tuple[Any, dict]:
    """Read a checkpoint into the structure of ``template`` (``(params, opt_state)``); returns it and meta."""
    leaves, treedef = jax.tree.flatten(template)
    # Our own file handle: np.load leaks its own when the file is truncated.
    with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        got = [z[f"leaf_{i:04d}"] for i in range(len(leaves))]
        extra = len([k for k in z.files if k.startswith("leaf_")]) - len(leaves)
    if extra:
        raise ValueError(
            f"checkpoint {path} holds {len(leaves) + extra} arrays; this run needs {len(leaves)}."
        )
    for i, (a, b) in enumerate(zip(got, leaves)):
        if a.shape != b.shape or a.dtype != b.dtype:
            raise ValueError(f"checkpoint {path}: array {i} is {a.shape} {a.dtype}; expected {b.shape} "
                             f"{b.dtype}. Was it written by another configuration?")  # fmt: skip
    return jax.tree.unflatten(treedef, [jnp.asarray(a) for a in got]), meta


# ------------------------------------------------------------------------------------------- the loop


def make_mesh(config: Config):
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


def _all_finite(tree) -> bool:
    return all(bool(np.all(np.isfinite(np.asarray(x)))) for x in jax.tree.leaves(tree))


class Interrupted(Exception):
    """Training stopped by Ctrl-C after writing a checkpoint; ``step`` is the last completed step."""

    def __init__(self, step: int, out: Path):
        super().__init__(f"interrupted after step {step}; checkpoint in {out / CHECKPOINT}")
        self.step, self.out = step, out


def _read_history(path: Path, upto: int | None = None) -> list[dict]:
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if upto is None or r["step"] <= upto]


def _progress(config: Config):
    if not config.progress:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn(f"[bold]{config.task}[/]"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[rate]:.0f} steps/s"),
        TimeRemainingColumn(),
    )  # fmt: skip


def train(config: Config) -> dict:
    """Train ``config.task``; write metrics, plots, checkpoints and ``summary.json`` into ``config.out``.

    Returns:
      The summary (also written to ``summary.json``).

    Raises:
      Interrupted: on Ctrl-C, after saving a checkpoint that ``resume=True`` continues from.
      Diverged: when the loss or the parameters become NaN or Inf (the last good checkpoint is kept).
      RunError: when ``config.out`` cannot be written, or no checkpoint can be read to resume from.
    """
    try:
        return _train(config)
    except OSError as e:
        where = e.filename or config.out
        raise RunError(f"cannot write the run's output in {where}: {e.strerror or e}. "
                       "Choose another --out or free some space.") from e  # fmt: skip


def _train(config: Config) -> dict:
    cfg = config.resolved()
    info = tasks_lib.TASKS[cfg.task]
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path, metrics_path = out / CHECKPOINT, out / "metrics.jsonl"
    problem = tasks_lib.make(cfg.task, seed=cfg.seed, batch_size=cfg.batch_size,
                             hidden_size=cfg.hidden_size, seq_len=cfg.seq_len)  # fmt: skip
    opt = make_optimizer(cfg)
    mesh = make_mesh(cfg)
    params = problem.init(jax.random.key(cfg.seed))
    opt_state = opt.init(params)

    for stale in ckpt_path.parent.glob(ckpt_path.name + ".tmp*"):  # left by a process killed mid-write
        stale.unlink()
    start, wall_before = 0, 0.0
    loaded = load_latest_checkpoint(ckpt_path, (params, opt_state)) if cfg.resume else None
    if loaded is not None:
        (params, opt_state), meta = loaded
        for k in _RESUME_FIELDS:
            if meta["config"][k] != getattr(cfg, k):
                raise ValueError(
                    f"resume: {k} is {getattr(cfg, k)!r} but the checkpoint in {out} was "
                    f"written with {meta['config'][k]!r}; use the same value or another --out."
                )
        start, wall_before = meta["step"], meta["wall_seconds"]
        if start > cfg.steps:
            raise ValueError(f"resume: the checkpoint is at step {start}, past steps={cfg.steps}.")
        log.info("resuming %s from step %d", cfg.task, start)
    elif cfg.resume:  # no checkpoint at all: a fresh start
        log.warning("resume: no checkpoint in %s; starting from step 0", out)
    # Lines logged after the checkpoint was written belong to the lost part of the run.
    history = _read_history(metrics_path, upto=start) if start else []
    metrics_path.write_text("".join(json.dumps(r) + "\n" for r in history))

    traces = []

    def loss_fn(p, batch):
        traces.append(1)  # runs at trace time only: counts compilations of the step
        return problem.loss(p, batch)

    step_fn = sharding.make_sharded_train_step(loss_fn, opt, mesh, has_aux=True)
    params, opt_state = sharding.replicate((params, opt_state), mesh)  # after a resume, too
    state = (params, opt_state, start)  # replaced in one assignment, so Ctrl-C never sees it half-done
    extra: dict = {}
    last_loss = history[-1]["loss"] if history else float("nan")  # a resumed, finished run keeps its own
    last_eval: dict | None = None
    t0 = time.perf_counter()
    t_log, s_log = t0, start
    bar = _progress(cfg)
    task_id = (
        bar.add_task("train", total=cfg.steps, completed=start, loss=float("nan"), rate=0.0) if bar else None
    )
    if bar:
        bar.start()
    try:
        with open(metrics_path, "a") as mf:
            for s in range(start, cfg.steps):
                p, o, m = step_fn(state[0], state[1], sharding.shard_batch(problem.batch(s), mesh))
                state = (p, o, s + 1)
                done = s + 1
                if done == 1 and problem.first_step is not None:
                    extra.update(problem.first_step(p))
                last = done == cfg.steps
                if done % cfg.log_every == 0 or last or done % cfg.eval_every == 0:
                    now = time.perf_counter()
                    rec = {k: float(v) for k, v in m.items()}
                    rate = (done - s_log) / max(now - t_log, 1e-9)
                    rec.update(step=done, steps_per_second=rate, wall_seconds=wall_before + now - t0)
                    t_log, s_log = now, done
                    last_loss = rec["loss"]
                    if not np.isfinite(last_loss):
                        raise Diverged(_diverged(cfg, done, "the loss is " + str(last_loss), ckpt_path))
                    if done % cfg.eval_every == 0 or last:
                        ev = last_eval = problem.evaluate(p)
                        rec.update(ev)
                        log.info("step %d  loss %.4f  %s", done, rec["loss"],
                                 "  ".join(f"{k} {v:.4g}" for k, v in ev.items()))  # fmt: skip
                    mf.write(json.dumps(rec) + "\n")
                    mf.flush()
                    history.append(rec)
                    if bar:
                        bar.update(task_id, completed=done, loss=rec["loss"], rate=rate)
                if done % cfg.checkpoint_every == 0 and not last:
                    _check_finite(cfg, done, p, o, m, ckpt_path)
                    save_checkpoint(ckpt_path, p, o, done, wall_before + time.perf_counter() - t0, cfg)
    except KeyboardInterrupt:
        params, opt_state, done = state
        if not _all_finite((params, opt_state)):
            raise Diverged(_diverged(cfg, done, "the parameters are not finite", ckpt_path)) from None
        save_checkpoint(ckpt_path, params, opt_state, done, wall_before + time.perf_counter() - t0, cfg)
        raise Interrupted(done, out) from None
    finally:
        if bar:
            bar.stop()

    params, opt_state, done = state
    wall = wall_before + time.perf_counter() - t0
    _check_finite(cfg, done, params, opt_state, None, ckpt_path)
    save_checkpoint(ckpt_path, params, opt_state, done, wall, cfg)
    final_eval = last_eval if last_eval is not None and start < cfg.steps else problem.evaluate(params)
    summary = {
        "task": cfg.task,
        "steps": cfg.steps,
        "seed": cfg.seed,
        "final_loss": last_loss,
        "wall_seconds": wall,
        "metric": info.metric,
        **final_eval,
        "params_digest": params_digest(params),
        "resumed_from_step": start,
        "steps_per_second": (cfg.steps - start) / max(wall - wall_before, 1e-9),
        "traces": len(traces),
        "devices": mesh.size,
        "config": dataclasses.asdict(cfg),
        **extra,
        **problem.extras(params),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_history(history, info.metric, out / "loss.png", title=cfg.task)
    problem.figure(params, history, out / f"{cfg.task}.png")
    return summary


def _diverged(cfg: Config, step: int, what: str, ckpt_path: Path) -> str:
    kept = f"the last good checkpoint ({ckpt_path}) is kept" if ckpt_path.exists() else "no checkpoint"
    return (f"{cfg.task}: training diverged at step {step}: {what}; {kept}. Try a smaller --lr or "
            "--clip.")  # fmt: skip


def _check_finite(cfg: Config, step: int, params, opt_state, metrics, ckpt_path: Path) -> None:
    """Never save a non-finite state: a NaN step would otherwise overwrite the last good checkpoint."""
    if metrics is not None and not np.isfinite(float(metrics["loss"])):
        raise Diverged(_diverged(cfg, step, f"the loss is {float(metrics['loss'])}", ckpt_path))
    if not _all_finite((params, opt_state)):
        raise Diverged(_diverged(cfg, step, "the parameters are not finite", ckpt_path))


def plot_history(history: list[dict], metric: str, path: Path, title: str = "") -> None:
    """Training loss (log scale) and the evaluated ``metric`` against steps, side by side, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6))
    a1.plot([r["step"] for r in history], [r["loss"] for r in history], lw=1)
    a1.set(xlabel="step", ylabel="training loss", yscale="log", title=f"{title}: training loss")
    ev = [r for r in history if metric in r]
    a2.plot([r["step"] for r in ev], [r[metric] for r in ev], marker="o", ms=3)
    a2.set(xlabel="step", ylabel=metric, title=f"{title}: {metric}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
