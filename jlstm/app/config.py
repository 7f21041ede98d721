"""The configuration of a training run: ``Config`` (what ``jlstm train`` was given), ``Resolved`` (the
task's defaults filled in) and the optax optimizers a config may name.

``runner`` re-exports every name here: callers and tests know them as ``runner.<name>``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import optax

from jlstm.app import tasks as tasks_lib


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
        for name in (
            "steps",
            "batch_size",
            "hidden_size",
            "seq_len",
            "eval_every",
            "checkpoint_every",
            "log_every",
            "devices",
        ):
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


_OPTIMIZERS = (
    "sgd",
    "adam",
    "adamw",
    "rmsprop",
    "adagrad",
    "adabelief",
    "lion",
    "nadam",
    "lamb",
    "radam",
    "yogi",
    "novograd",
    "sm3",
    "fromage",
    "noisy_sgd",
    "adamax",
)


def optimizer_fn(name: str):
    """The optax optimizer constructor called ``name`` (e.g. ``"sgd"``, ``"adam"``)."""
    if name not in _OPTIMIZERS or not callable(getattr(optax, name, None)):
        known = [n for n in _OPTIMIZERS if callable(getattr(optax, n, None))]
        raise ValueError(
            f"optimizer must be an optax optimizer taking a learning rate, one of {known}; got {name!r}."
        )
    return getattr(optax, name)


def make_optimizer(config: Resolved) -> optax.GradientTransformation:
    """The optax transformation of a resolved config: optional global-norm clipping, then the optimizer."""
    opt = optimizer_fn(config.optimizer)(learning_rate=config.lr)
    if config.clip:
        opt = optax.chain(optax.clip_by_global_norm(config.clip), opt)
    return opt
