"""Training tasks: data, a model head on top of ``jlstm.lstm``, a loss, metrics and a figure per task.

Every task is built by ``make(name, seed=..., batch_size=..., hidden_size=..., seq_len=...)`` into a
``Problem`` of pure functions. Its data order is a pure function of ``(seed, step)`` (a NumPy generator
seeded by ``[seed, epoch]`` or ``[seed, step]``), so a run resumed from a checkpoint at step ``k``
sees exactly the batches an uninterrupted run would. Nothing is downloaded: ``digits`` comes with
scikit-learn, ``adding`` is generated, ``charlm`` reads the Python standard library's own sources and
``gomez`` is the source document's two-step example.

Parameters are a dict ``{"lstm": LSTMParams, "head": {...}}`` (plus ``"embed"`` for ``charlm``), all
float32 whatever ``jax_enable_x64`` says, so runs are comparable bit for bit.

Each task is a module with a ``build(seed, batch_size, hidden_size, seq_len) -> Problem``; a new task is
one module and one entry in ``TASKS`` and ``_BUILDERS`` below. A task whose data fix a size (``gomez``'s
sizes, ``digits``' 8 rows) declares it in ``TaskInfo.fixed``, and ``check_fixed`` refuses another value,
so that a run never records a size it did not use.
"""

from __future__ import annotations

from jlstm.app.tasks import adding, charlm, digits, gomez
from jlstm.app.tasks.adding import adding_batch
from jlstm.app.tasks.charlm import stdlib_corpus
from jlstm.app.tasks.digits import _epoch_order as _epoch_order  # for tests of the data order
from jlstm.app.tasks.problem import F32, Problem, TaskInfo, dense

__all__ = [
    "F32",
    "TASKS",
    "Problem",
    "TaskInfo",
    "adding_batch",
    "check_fixed",
    "dense",
    "make",
    "stdlib_corpus",
]

TASKS: dict[str, TaskInfo] = {
    "digits": TaskInfo(
        "digits",
        "test_accuracy",
        True,
        ">= 0.95 within 2 minutes on 2 CPU cores",
        "scikit-learn's 8x8 digits read row by row (8 steps of 8 pixels), classified from the final h",
        dict(
            steps=3000,
            optimizer="sgd",
            lr=0.5,
            batch_size=64,
            hidden_size=64,
            seq_len=8,
            eval_every=500,
            checkpoint_every=500,
            log_every=25,
            clip=1.0,
        ),
        fixed=dict(seq_len="the digits are read row by row, 8 rows of 8 pixels"),
    ),
    "adding": TaskInfo(
        "adding",
        "test_mse",
        False,
        "< 0.01 within 10 minutes on 2 CPU cores (the mean scores 0.167)",
        "the adding problem of Hochreiter & Schmidhuber (1997), T = 100, generated",
        dict(
            steps=4000,
            optimizer="adam",
            lr=3e-3,
            batch_size=64,
            hidden_size=64,
            seq_len=100,
            eval_every=250,
            checkpoint_every=500,
            log_every=25,
            clip=1.0,
        ),
    ),
    "charlm": TaskInfo(
        "charlm",
        "val_bpc",
        False,
        "< 2.0 within 10 minutes on 2 CPU cores",
        "a character-level language model of the Python standard library's own source",
        dict(
            steps=5000,
            optimizer="adam",
            lr=5e-3,
            batch_size=32,
            hidden_size=128,
            seq_len=100,
            eval_every=250,
            checkpoint_every=500,
            log_every=25,
            clip=1.0,
        ),
    ),
    "gomez": TaskInfo(
        "gomez",
        "final_loss",
        False,
        "the first step equals the source's numbers; the loss falls",
        "the source document's two-step example (D = 2, H = 1) trained by SGD with lr 0.1",
        dict(
            steps=200,
            optimizer="sgd",
            lr=0.1,
            batch_size=1,
            hidden_size=1,
            seq_len=2,
            eval_every=10,
            checkpoint_every=100,
            log_every=1,
            clip=None,
        ),
        fixed=dict(
            batch_size="the source's example is one sequence",
            hidden_size="the source's example has H = 1",
            seq_len="the source's example has two steps",
        ),
    ),
}

_BUILDERS = {"digits": digits.build, "adding": adding.build, "charlm": charlm.build, "gomez": gomez.build}


def make(name: str, *, seed: int, batch_size: int, hidden_size: int, seq_len: int) -> Problem:
    """Build the task ``name`` (one of ``TASKS``) for a seed and size; see ``Problem``."""
    if name not in _BUILDERS:
        raise ValueError(f"task must be one of {sorted(_BUILDERS)}; got {name!r}.")
    return _BUILDERS[name](seed, batch_size, hidden_size, seq_len)


def check_fixed(name: str, options) -> None:
    """Refuse a size that the task ``name`` fixes itself (``TaskInfo.fixed``) given another value.

    ``options`` is anything with the sizes as attributes (a ``Config``); ``None`` means the task's default.
    """
    info = TASKS[name]
    for option, why in info.fixed.items():
        value, used = getattr(options, option, None), info.defaults[option]
        if value is not None and value != used:
            flag = "--" + option.replace("_", "-")
            raise ValueError(
                f"{name} does not take {option} ({flag}): {why}, so it is fixed at {used}; got {value!r}. "
                f"Leave {flag} out."
            )
