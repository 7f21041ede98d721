"""Training tasks: data, a model head on top of ``jlstm.lstm``, a loss, metrics and a figure per task.

Every task is built by ``make(name, seed=..., batch_size=..., hidden_size=..., seq_len=...)`` into a
``Problem`` of pure functions. Its data order is a pure function of ``(seed, step)`` (a NumPy generator
seeded by ``[seed, epoch]`` or ``[seed, step]``), so a run resumed from a checkpoint at step ``k``
sees exactly the batches an uninterrupted run would. Nothing is downloaded: ``digits`` comes with
scikit-learn, ``adding`` is generated, ``charlm`` reads the Python standard library's own sources and
``gomez`` is the source document's two-step example.

Parameters are a dict ``{"lstm": LSTMParams, "head": {...}}`` (plus ``"embed"`` for ``charlm``), all
float32 whatever ``jax_enable_x64`` says, so runs are comparable bit for bit.
"""

from __future__ import annotations

import functools
import math
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jlstm.core.params import LSTMParams, init
from jlstm.core.sequence import lstm
from jlstm.losses import l2_loss, softmax_cross_entropy

F32 = jnp.float32


@dataclass(frozen=True)
class TaskInfo:
    """What the command line and the runner need to know about a task before building it."""

    name: str
    metric: str  # the key of the task's metric in summary.json
    higher_is_better: bool
    target: str  # the target with default settings, in words
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)  # steps, optimizer, lr, batch_size, ...


class Problem(NamedTuple):
    """A task built for one seed and size.

    Attributes:
      init: ``init(key) -> params``.
      loss: ``loss(params, batch) -> (loss, aux)``, jit-able; ``aux`` is a dict of scalars.
      batch: ``batch(step) -> batch``: the training batch of a step, a pure function of (seed, step).
      evaluate: ``evaluate(params) -> dict`` of Python floats (the task's metric among them).
      figure: ``figure(params, history, path)`` draws the task's own figure into a PNG.
      extras: ``extras(params) -> dict`` added to summary.json at the end (e.g. sampled text).
      first_step: optional ``first_step(params_after_step_1) -> dict`` added to summary.json.
    """

    init: Callable
    loss: Callable
    batch: Callable[[int], Any]
    evaluate: Callable[[Any], dict]
    figure: Callable[[Any, list, Path], None]
    extras: Callable[[Any], dict]
    first_step: Callable[[Any], dict] | None = None


def _dense_init(key: jax.Array, n_in: int, n_out: int) -> dict:
    bound = 1.0 / math.sqrt(n_in)
    return {"w": jax.random.uniform(key, (n_in, n_out), F32, -bound, bound), "b": jnp.zeros((n_out,), F32)}


def dense(layer: dict, x: jax.Array) -> jax.Array:
    """``x @ w + b`` for ``x [..., n_in]``, broadcasting ``b`` explicitly (rank promotion may raise)."""
    return x @ layer["w"] + jnp.expand_dims(layer["b"], tuple(range(x.ndim - 1)))


def _no_extras(params) -> dict:
    return {}


def _figure(fn):
    """Run a matplotlib drawing with the non-interactive backend, then close the figure."""

    def draw(params, history, path):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig = fn(plt, params, history)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)

    return draw


# --------------------------------------------------------------------------------------------- digits


def _epoch_order(seed: int, n: int, step: int, batch_size: int) -> np.ndarray:
    """Indices of a step's batch in a stream of per-epoch permutations seeded by (seed, epoch)."""
    pos = step * batch_size + np.arange(batch_size)
    epochs, within = pos // n, pos % n
    out = np.empty(batch_size, np.int64)
    for e in np.unique(epochs):
        perm = np.random.default_rng([seed, int(e)]).permutation(n)
        sel = epochs == e
        out[sel] = perm[within[sel]]
    return out


def _digits(seed: int, batch_size: int, hidden_size: int, seq_len: int) -> Problem:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32).reshape(-1, 8, 8)  # 8 steps (rows) of 8 features (pixels)
    # The 80/20 split does not depend on the seed, so test accuracies of different seeds compare.
    perm = np.random.default_rng(20_000).permutation(len(X))
    n_test = len(X) // 5
    test, train = perm[:n_test], perm[n_test:]
    Xtr, ytr, Xte, yte = X[train], y[train].astype(np.int32), X[test], y[test].astype(np.int32)

    def init_(key):
        k1, k2 = jax.random.split(key)
        return {"lstm": init(k1, 8, hidden_size), "head": _dense_init(k2, hidden_size, 10)}

    def logits(params, xs):
        _, (h, _) = lstm(params["lstm"], xs)
        return dense(params["head"], h)

    def loss(params, batch):
        xs, labels = batch
        lg = logits(params, xs)
        acc = jnp.mean((jnp.argmax(lg, -1) == labels).astype(F32))
        return softmax_cross_entropy(lg, labels), {"accuracy": acc}

    predict = jax.jit(lambda p, xs: jnp.argmax(logits(p, xs), -1))

    def batch(step):
        idx = _epoch_order(seed, len(Xtr), step, batch_size)
        return Xtr[idx], ytr[idx]

    def evaluate(params):
        pred = np.asarray(predict(params, Xte))
        return {"test_accuracy": float(np.mean(pred == yte))}

    @_figure
    def figure(plt, params, history):
        pred = np.asarray(predict(params, Xte))
        cm = np.zeros((10, 10), int)
        np.add.at(cm, (yte, pred), 1)
        fig, ax = plt.subplots(figsize=(5, 4.5))
        ax.imshow(cm, cmap="Blues")
        for i, j in np.ndindex(cm.shape):
            if cm[i, j]:
                ax.text(j, i, cm[i, j], ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")  # fmt: skip
        ax.set(xlabel="predicted", ylabel="true", xticks=range(10), yticks=range(10),
               title=f"digits, held-out 20 %: accuracy {np.mean(pred == yte):.3f}")  # fmt: skip
        return fig

    return Problem(init_, loss, batch, evaluate, figure, _no_extras)


# --------------------------------------------------------------------------------------------- adding


def adding_batch(rng: np.random.Generator, n: int, T: int) -> tuple[np.ndarray, np.ndarray]:
    """The adding problem (Hochreiter & Schmidhuber 1997, as in Le et al. 2015).

    Each input step is ``(value, marker)`` with values uniform in [0, 1]; exactly two markers are 1,
    one in the first half and one in the second; the target is the sum of the two marked values.
    Predicting the mean (1) scores an MSE of 1/6 = 0.167.

    Returns:
      ``xs [n, T, 2]`` and ``ys [n]``, float32.
    """
    values = rng.uniform(0.0, 1.0, (n, T)).astype(np.float32)
    first = rng.integers(0, T // 2, n)
    second = rng.integers(T // 2, T, n)
    markers = np.zeros((n, T), np.float32)
    markers[np.arange(n), first] = 1.0
    markers[np.arange(n), second] = 1.0
    ys = values[np.arange(n), first] + values[np.arange(n), second]
    return np.stack([values, markers], axis=-1), ys.astype(np.float32)


def _adding(seed: int, batch_size: int, hidden_size: int, seq_len: int) -> Problem:
    T = seq_len
    # The test set depends on T only ([0, T, 2] never equals a training [seed, step, 1]).
    Xte, yte = adding_batch(np.random.default_rng([0, T, 2]), 1000, T)

    def init_(key):
        k1, k2 = jax.random.split(key)
        return {"lstm": init(k1, 2, hidden_size), "head": _dense_init(k2, hidden_size, 1)}

    def predict(params, xs):
        _, (h, _) = lstm(params["lstm"], xs)
        return dense(params["head"], h)[..., 0]

    def loss(params, batch):
        xs, ys = batch
        return jnp.mean(jnp.square(predict(params, xs) - ys)), {}

    predict_jit = jax.jit(predict)

    def batch(step):
        return adding_batch(np.random.default_rng([seed, step, 1]), batch_size, T)

    def evaluate(params):
        pred = np.asarray(predict_jit(params, Xte))
        return {"test_mse": float(np.mean((pred - yte) ** 2))}

    @_figure
    def figure(plt, params, history):
        pred = np.asarray(predict_jit(params, Xte))
        fig, ax = plt.subplots(figsize=(4.8, 4.5))
        ax.scatter(yte, pred, s=4, alpha=0.5)
        ax.plot([0, 2], [0, 2], color="gray", lw=1)
        ax.set(xlabel="target (sum of the two marked values)", ylabel="prediction",
               title=f"adding, T = {T}: test MSE {np.mean((pred - yte) ** 2):.4f}")  # fmt: skip
        return fig

    return Problem(init_, loss, batch, evaluate, figure, _no_extras)


# --------------------------------------------------------------------------------------------- charlm


@functools.lru_cache(maxsize=2)  # reading ~3 MB of files once per process is enough
def stdlib_corpus(max_chars: int = 3_000_000) -> str:
    """Text of the Python standard library's top-level ``*.py`` files, sorted by name, concatenated.

    Non-ASCII characters become ``?`` so the vocabulary stays below 100. The corpus depends on the
    Python version (it is this interpreter's own library), never on the network.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    parts, n = [], 0
    for path in sorted(root.glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        text = text.encode("ascii", errors="replace").decode("ascii")
        parts.append(text)
        n += len(text)
        if n >= max_chars:
            break
    if not parts:
        raise FileNotFoundError(f"charlm: no *.py files under the standard library at {root}.")
    return "".join(parts)[:max_chars]


def _charlm(seed: int, batch_size: int, hidden_size: int, seq_len: int) -> Problem:
    text = stdlib_corpus()
    vocab = sorted(set(text))
    lookup = np.zeros(128, np.int32)
    lookup[[ord(c) for c in vocab]] = np.arange(len(vocab))
    ids = lookup[np.frombuffer(text.encode("ascii"), np.uint8)]
    # Held out: every 20th block of 10,000 characters (5 %), so that the validation text comes from
    # the same mix of modules as the training text; training windows never cross into it.
    block = 10_000
    n_blocks = len(ids) // block
    blocks = ids[: n_blocks * block].reshape(n_blocks, block)
    is_val = np.arange(n_blocks) % 20 == 19
    train, val = blocks[~is_val].reshape(-1), blocks[is_val].reshape(-1)
    V, E, L = len(vocab), 32, seq_len
    # Held-out chunks of 1,000 characters, each read from a zero state: [n, 1001] (inputs, targets).
    val_len = 1000
    val_seqs = np.stack([val[s : s + val_len + 1] for s in range(0, len(val) - val_len - 1, val_len)])

    def init_(key):
        k1, k2, k3 = jax.random.split(key, 3)
        return {
            "embed": 0.1 * jax.random.normal(k1, (V, E), F32),
            "lstm": init(k2, E, hidden_size),
            "head": _dense_init(k3, hidden_size, V),
        }

    def logits(params, tokens):
        hs, _ = lstm(params["lstm"], params["embed"][tokens])
        return dense(params["head"], hs)

    def loss(params, batch):
        ce = softmax_cross_entropy(logits(params, batch[:, :-1]), batch[:, 1:])
        return ce, {"bpc": ce / math.log(2.0)}

    val_loss = jax.jit(lambda p, s: softmax_cross_entropy(logits(p, s[:, :-1]), s[:, 1:]))

    def batch(step):
        offsets = np.random.default_rng([seed, step, 1]).integers(0, len(train) - L - 1, batch_size)
        return np.stack([train[o : o + L + 1] for o in offsets])

    def evaluate(params):
        return {"val_bpc": float(val_loss(params, val_seqs)) / math.log(2.0)}

    def sample(params, key, prompt="def ", n=400, temperature=0.8):
        """``n`` characters after ``prompt``, drawn one at a time from the model at ``temperature``."""
        from jlstm.core.cell import cell

        ptoks = jnp.asarray(lookup[[ord(c) for c in prompt]])
        # Read all of the prompt but its last character; the loop feeds that one first.
        _, carry = lstm(params["lstm"], params["embed"][ptoks[:-1]])  # xs [len - 1, E], carry [H]

        def body(state, k):
            carry, tok = state
            carry, h = cell(params["lstm"], carry, params["embed"][tok])
            nxt = jax.random.categorical(k, dense(params["head"], h) / temperature)
            return (carry, nxt.astype(tok.dtype)), nxt

        _, toks = jax.lax.scan(body, (carry, ptoks[-1]), jax.random.split(key, n))
        return toks

    sample_jit = jax.jit(sample, static_argnames=("prompt", "n", "temperature"))

    def extras(params):
        toks = np.asarray(sample_jit(params, jax.random.key(seed), prompt="def "))
        return {"sample": "def " + "".join(vocab[int(t)] for t in toks)}

    @_figure
    def figure(plt, params, history):
        ev = [r for r in history if "val_bpc" in r]
        fig, ax = plt.subplots(figsize=(5.5, 4))
        ax.plot([r["step"] for r in ev], [r["val_bpc"] for r in ev], marker="o", ms=3)
        ax.axhline(2.0, color="gray", lw=1, ls="--", label="target 2.0")
        ax.set(xlabel="step", ylabel="bits per character (held-out)",
               title=f"charlm on the Python stdlib ({len(text) / 1e6:.1f}M chars, {V} symbols)")  # fmt: skip
        ax.legend()
        return fig

    return Problem(init_, loss, batch, evaluate, figure, extras)


# ---------------------------------------------------------------------------------------------- gomez


def _gomez(seed: int, batch_size: int, hidden_size: int, seq_len: int) -> Problem:
    from jlstm.app import example

    xs = np.asarray(example.XS, np.float32)
    ys = np.asarray(example.YS, np.float32)
    printed = dict(example.SOURCE)

    def init_(key):
        # The source's weights; the seed plays no part. The head is empty: out_t is the prediction.
        p = LSTMParams(*(jnp.asarray(a, F32) for a in (example.W, example.U, example.B)))
        return {"lstm": p, "head": {}}

    def loss(params, batch):
        bx, by = batch
        return l2_loss(lstm(params["lstm"], bx)[0], by), {}

    loss_jit = jax.jit(lambda p: loss(p, (xs, ys))[0])
    outs_jit = jax.jit(lambda p: lstm(p["lstm"], xs)[0][:, 0])

    def batch(step):
        return xs, ys  # the whole two-step sequence every step, as in the source

    def evaluate(params):
        out = np.asarray(outs_jit(params))
        return {"final_loss": float(loss_jit(params)), "out_0": float(out[0]), "out_1": float(out[1])}

    def first_step(params):
        """Compare the weights after the first SGD step with the source's printed new W, U, b."""
        from jlstm.app.example import unit

        p = params["lstm"]
        got = {"new W^T": np.asarray(p.W).T, "new U": np.asarray(p.U)[0], "new b": np.asarray(p.b)}
        worst = 0.0
        for name, value in got.items():
            want = np.asarray(printed[name], dtype=np.float64)
            worst = max(worst, float(np.max(np.abs(value - want) / unit(printed[name]))))
        # The source rounds every intermediate to 5 digits; its new weights differ from exact
        # arithmetic by less than one unit of the last printed digit.
        return {"first_step_max_units": worst, "first_step_matches_source": worst <= 1.0}

    @_figure
    def figure(plt, params, history):
        out0 = np.asarray(outs_jit(init_(None)))  # the source's outputs before any step
        ev = [{"step": 0, "out_0": float(out0[0]), "out_1": float(out0[1])}]
        ev += [r for r in history if "out_0" in r]
        fig, ax = plt.subplots(figsize=(5.5, 4))
        steps = [r["step"] for r in ev]
        for t, color in ((0, "C0"), (1, "C1")):
            ax.plot(steps, [r[f"out_{t}"] for r in ev], color=color, label=f"out_{t}")
            ax.axhline(float(ys[t, 0]), color=color, ls="--", lw=1, label=f"label y_{t} = {ys[t, 0]}")
        ax.set(xlabel="SGD step (lr as configured)", ylabel="output",
               title="the source's two-step example: out_1 cannot reach 1.25")  # fmt: skip
        ax.legend(loc="center right", fontsize=8)
        return fig

    return Problem(init_, loss, batch, evaluate, figure, _no_extras, first_step)


# ------------------------------------------------------------------------------------------- registry

TASKS: dict[str, TaskInfo] = {
    "digits": TaskInfo(
        "digits", "test_accuracy", True, ">= 0.95 within 2 minutes on 2 CPU cores",
        "scikit-learn's 8x8 digits read row by row (8 steps of 8 pixels), classified from the final h",
        dict(steps=3000, optimizer="sgd", lr=0.5, batch_size=64, hidden_size=64, seq_len=8,
             eval_every=500, checkpoint_every=500, log_every=25, clip=1.0),
    ),
    "adding": TaskInfo(
        "adding", "test_mse", False, "< 0.01 within 10 minutes on 2 CPU cores (the mean scores 0.167)",
        "the adding problem of Hochreiter & Schmidhuber (1997), T = 100, generated",
        dict(steps=4000, optimizer="adam", lr=3e-3, batch_size=64, hidden_size=64, seq_len=100,
             eval_every=250, checkpoint_every=500, log_every=25, clip=1.0),
    ),
    "charlm": TaskInfo(
        "charlm", "val_bpc", False, "< 2.0 within 10 minutes on 2 CPU cores",
        "a character-level language model of the Python standard library's own source",
        dict(steps=5000, optimizer="adam", lr=5e-3, batch_size=32, hidden_size=128, seq_len=100,
             eval_every=250, checkpoint_every=500, log_every=25, clip=1.0),
    ),
    "gomez": TaskInfo(
        "gomez", "final_loss", False, "the first step equals the source's numbers; the loss falls",
        "the source document's two-step example (D = 2, H = 1) trained by SGD with lr 0.1",
        dict(steps=200, optimizer="sgd", lr=0.1, batch_size=1, hidden_size=1, seq_len=2,
             eval_every=10, checkpoint_every=100, log_every=1, clip=None),
    ),
}  # fmt: skip

_BUILDERS = {"digits": _digits, "adding": _adding, "charlm": _charlm, "gomez": _gomez}


def make(name: str, *, seed: int, batch_size: int, hidden_size: int, seq_len: int) -> Problem:
    """Build the task ``name`` (one of ``TASKS``) for a seed and size; see ``Problem``."""
    if name not in _BUILDERS:
        raise ValueError(f"task must be one of {sorted(_BUILDERS)}; got {name!r}.")
    return _BUILDERS[name](seed, batch_size, hidden_size, seq_len)
