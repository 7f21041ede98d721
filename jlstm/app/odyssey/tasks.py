"""The study's three tasks, each a stand-in for one of Greff et al.'s, all frame-wise and local.

* ``jsb``: JSB Chorales itself (polyphonic music; next-frame prediction with 88 sigmoid outputs,
  frame-wise Bernoulli negative log-likelihood in nats per frame), rebuilt from music21's corpus.
* ``digitstream``: stands in for TIMIT (frame-wise classification of continuous-valued input frames
  in an unsegmented stream). A stream is a row-by-row scan of scikit-learn's 8x8 digits placed one after
  another with Gaussian pixel noise; the target of every frame (row) is the class of the digit it
  belongs to. Metric: frame classification error in %.
* ``charlm``: stands in for IAM Online (a character-level task: the paper's model emits characters from
  pen strokes; ours predicts the next character of the Python standard library's source, one-hot in).
  Metric: bits per character.

Every task gives its training data as arrays and a jittable ``sample(data, key)`` that draws a batch on
the device (so a whole training run is one jitted call, and the data order a pure function of the key),
fixed validation and test sets, a jittable ``features`` (raw inputs to float32 frames ``[B, T, D]``)
and a ``kind`` of output layer.
"""

from __future__ import annotations

import math
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

F32 = jnp.float32
TASK_NAMES = ("jsb", "digitstream", "charlm")


@dataclass(frozen=True)
class Sizes:
    """How big a task is built: training batch and window, evaluation set size and length."""

    batch_size: int = 16
    seq_len: int = 64
    n_eval: int = 128  # sequences in each of the validation and test sets (jsb: at most its pieces)
    max_pieces: int | None = None  # jsb: parse only the first N corpus files (quick mode)
    corpus_chars: int = 1_000_000  # charlm: characters read from the standard library


class Split(NamedTuple):
    """A fixed evaluation set: raw ``inputs``, ``targets`` and ``mask [B, T]`` (1 = scored frame)."""

    inputs: np.ndarray
    targets: np.ndarray
    mask: np.ndarray


class Task(NamedTuple):
    """A built task. ``kind`` is ``"softmax"`` (integer targets ``[B, T]``) or ``"sigmoid"`` (binary
    targets ``[B, T, O]``); ``sample(data, key) -> (inputs, targets)``, a training batch;
    ``features(inputs) -> [B, T, D]`` float32."""

    name: str
    stands_for: str
    metric: str
    kind: str
    input_size: int
    output_size: int
    data: dict
    sample: Callable[[dict, jax.Array], tuple[jax.Array, jax.Array]]
    features: Callable[[jax.Array], jax.Array]
    valid: Split
    test: Split


def frame_terms(kind: str, metric: str, logits, targets):
    """Per-frame training loss and metric ``[B, T]`` from ``logits [B, T, O]``."""
    if kind == "sigmoid":  # frame-wise Bernoulli NLL, summed over keys (the usual JSB number, nats/frame)
        nll = jnp.sum(jnp.logaddexp(0.0, logits) - targets * logits, axis=-1)
        return nll, nll
    logz = jax.nn.logsumexp(logits, axis=-1)
    picked = jnp.sum(logits * jax.nn.one_hot(targets, logits.shape[-1], dtype=logits.dtype), axis=-1)
    loss = logz - picked
    if metric == "bpc":
        return loss, loss / math.log(2.0)
    return loss, 100.0 * (jnp.argmax(logits, axis=-1) != targets).astype(F32)  # frame error in %


def masked_mean(values, mask):
    """Mean of ``values [B, T]`` over the frames where ``mask [B, T]`` is 1."""
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def evaluation_set(task: Task) -> tuple[Split, int]:
    """Validation and test sets in one ``Split`` (padded to one length, the padding masked), so that one
    forward pass scores both; returns it and the number of validation sequences (the first rows)."""
    T = max(task.valid.mask.shape[1], task.test.mask.shape[1])

    def pad(a):
        return np.pad(a, [(0, 0), (0, T - a.shape[1])] + [(0, 0)] * (a.ndim - 2))

    both = Split(*(np.concatenate([pad(a), pad(b)]) for a, b in zip(task.valid, task.test)))
    return both, task.valid.mask.shape[0]


def build(name: str, sizes: Sizes) -> Task:
    """Build task ``name`` (one of ``TASK_NAMES``) at ``sizes``."""
    builders = {"jsb": _jsb, "digitstream": _digitstream, "charlm": _charlm}
    if name not in builders:
        raise ValueError(f"tasks: name must be one of {TASK_NAMES}; got {name!r}.")
    return builders[name](sizes)


def _ones(shape) -> np.ndarray:
    return np.ones(shape, np.float32)


def _windows(seq: jax.Array, starts: jax.Array, length: int) -> jax.Array:
    """``seq[s : s + length]`` for every ``s`` in ``starts [B]``: ``[B, length, ...]``."""
    return jax.vmap(lambda s: jax.lax.dynamic_slice_in_dim(seq, s, length))(starts)


# ------------------------------------------------------------------------------------------------ jsb


def _jsb(sizes: Sizes) -> Task:
    from jlstm.app.odyssey import jsb

    parts = jsb.load(sizes.max_pieces)
    L = sizes.seq_len
    train = [r for r in parts["train"] if len(r) > L]
    if not train:
        raise ValueError(f"jsb: no training chorale is longer than seq_len={L}; use a smaller seq_len.")
    # The pieces end to end, and every start of a window of L + 1 frames inside one piece.
    offsets = np.cumsum([0] + [len(r) for r in train])
    starts = np.concatenate([np.arange(o, o + len(r) - L) for o, r in zip(offsets, train)])
    data = {"roll": np.concatenate(train).astype(np.float32), "starts": starts.astype(np.int32)}

    def sample(data, key):
        pick = jax.random.randint(key, (sizes.batch_size,), 0, data["starts"].shape[0], jnp.int32)
        w = _windows(data["roll"], data["starts"][pick], L + 1)  # [B, L + 1, 88]
        return w[:, :-1], w[:, 1:]

    def whole(rolls):  # whole pieces from a zero state, padded at the end and masked
        rolls = rolls[: sizes.n_eval]
        T = max(len(r) for r in rolls) - 1
        x = np.zeros((len(rolls), T + 1, jsb.KEYS), np.float32)
        mask = np.zeros((len(rolls), T), np.float32)
        for k, r in enumerate(rolls):
            x[k, : len(r)] = r
            mask[k, : len(r) - 1] = 1
        return Split(x[:, :-1], x[:, 1:], mask)

    return Task(
        "jsb",
        "JSB Chorales",
        "nll",
        "sigmoid",
        jsb.KEYS,
        jsb.KEYS,
        data,
        sample,
        lambda x: x,
        whole(parts["valid"]),
        whole(parts["test"]),
    )


# ---------------------------------------------------------------------------------------- digitstream


def _digitstream(sizes: Sizes) -> Task:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32).reshape(-1, 8, 8)  # a digit is 8 frames (rows) of 8 pixels
    perm = np.random.default_rng(20_000).permutation(len(X))  # split by image, independent of seed
    fifth = len(X) // 5
    idx = {"test": perm[:fifth], "valid": perm[fifth : 2 * fifth], "train": perm[2 * fifth :]}
    k = max(1, sizes.seq_len // 8)  # digits per stream

    def stream(rng, pool, n):
        pick = pool[rng.integers(0, len(pool), (n, k))]  # [n, k] image indices
        xs = X[pick].reshape(n, 8 * k, 8) + rng.normal(0, 0.1, (n, 8 * k, 8)).astype(np.float32)
        return xs.astype(np.float32), np.repeat(y[pick], 8, axis=1).astype(np.int32)

    def fixed(part, salt):
        xs, ys = stream(np.random.default_rng([salt, k]), idx[part], sizes.n_eval)
        return Split(xs, ys, _ones(ys.shape))

    data = {"images": X[idx["train"]], "labels": y[idx["train"]].astype(np.int32)}

    def sample(data, key):  # the same stream as `stream`, drawn on the device
        k_pick, k_noise = jax.random.split(key)
        B = sizes.batch_size
        pick = jax.random.randint(k_pick, (B, k), 0, data["labels"].shape[0], jnp.int32)
        xs = data["images"][pick].reshape(B, 8 * k, 8)
        xs = xs + 0.1 * jax.random.normal(k_noise, xs.shape, F32)
        return xs, jnp.repeat(data["labels"][pick], 8, axis=1)

    return Task(
        "digitstream",
        "TIMIT",
        "frame_error",
        "softmax",
        8,
        10,
        data,
        sample,
        lambda x: x,
        fixed("valid", 1),
        fixed("test", 2),
    )


# --------------------------------------------------------------------------------------------- charlm

VOCAB = "\t\n" + "".join(chr(c) for c in range(32, 127))  # 97 symbols; anything else reads as "?"


def stdlib_text(max_chars: int) -> str:
    """The Python standard library's top-level ``*.py`` sources, sorted by name, up to ``max_chars``."""
    root = Path(sysconfig.get_paths()["stdlib"])
    parts, n = [], 0
    for path in sorted(root.glob("*.py")):
        parts.append(path.read_text(encoding="utf-8", errors="replace"))
        n += len(parts[-1])
        if n >= max_chars:
            break
    if not parts:
        raise FileNotFoundError(f"charlm: no *.py files under the standard library at {root}.")
    return "".join(parts)[:max_chars]


def _charlm(sizes: Sizes) -> Task:
    if sizes.corpus_chars < 200_000:
        raise ValueError(
            f"charlm: corpus_chars must be at least 200,000 (20 blocks); got {sizes.corpus_chars}."
        )
    lookup = np.full(128, VOCAB.index("?"), np.int32)
    lookup[[ord(c) for c in VOCAB]] = np.arange(len(VOCAB))
    raw = np.frombuffer(stdlib_text(sizes.corpus_chars).encode("ascii", "replace"), np.uint8)
    ids = lookup[raw]
    # Blocks of 10,000 characters: every 20th is validation, the one after it test, the rest training.
    block = 10_000
    blocks = ids[: len(ids) // block * block].reshape(-1, block)
    which = np.arange(len(blocks)) % 20
    train, val, test = (blocks[sel].reshape(-1) for sel in (which < 18, which == 18, which == 19))
    L = sizes.seq_len

    def chunks(text):
        n = min(sizes.n_eval, (len(text) - 1) // (L + 1))
        w = text[: n * (L + 1)].reshape(n, L + 1)
        return Split(w[:, :-1], w[:, 1:], _ones((n, L)))

    def sample(data, key):
        starts = jax.random.randint(key, (sizes.batch_size,), 0, data["ids"].shape[0] - L - 1, jnp.int32)
        w = _windows(data["ids"], starts, L + 1)  # [B, L + 1]
        return w[:, :-1], w[:, 1:]

    features = lambda tokens: jax.nn.one_hot(tokens, len(VOCAB), dtype=F32)
    return Task(
        "charlm",
        "IAM Online",
        "bpc",
        "softmax",
        len(VOCAB),
        len(VOCAB),
        {"ids": train},
        sample,
        features,
        chunks(val),
        chunks(test),
    )
