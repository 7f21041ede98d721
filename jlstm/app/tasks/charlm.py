"""``charlm``: a character-level language model of the Python standard library's own source."""

from __future__ import annotations

import functools
import math
import sysconfig
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jlstm.app.tasks.problem import F32, Problem, dense, dense_init, png_figure
from jlstm.core.params import init
from jlstm.functional import lstm
from jlstm.losses import softmax_cross_entropy

EMBED = 32  # E, the width of the character embedding
VAL_LEN = 1000  # characters per held-out chunk, each read from a zero state


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


class _Corpus(NamedTuple):
    text: str
    vocab: list[str]  # V symbols, sorted
    lookup: np.ndarray  # [128] ASCII code -> symbol id
    train: np.ndarray  # [n_train] symbol ids
    val_seqs: np.ndarray  # [n, VAL_LEN + 1] held-out chunks (inputs and targets)


def _corpus() -> _Corpus:
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
    val_seqs = np.stack([val[s : s + VAL_LEN + 1] for s in range(0, len(val) - VAL_LEN - 1, VAL_LEN)])
    return _Corpus(text, vocab, lookup, train, val_seqs)


def _sampler(corpus: _Corpus):
    """``sample(params, key, prompt, n, temperature)``: ``n`` symbol ids drawn one by one after ``prompt``."""
    from jlstm.core.cell import cell

    def sample(params, key, prompt="def ", n=400, temperature=0.8):
        ptoks = jnp.asarray(corpus.lookup[[ord(c) for c in prompt]])
        # Read all of the prompt but its last character; the loop feeds that one first.
        _, carry = lstm(params["lstm"], params["embed"][ptoks[:-1]])  # xs [len - 1, E], carry [H]

        def body(state, k):
            carry, tok = state
            carry, h = cell(params["lstm"], carry, params["embed"][tok])
            nxt = jax.random.categorical(k, dense(params["head"], h) / temperature)
            return (carry, nxt.astype(tok.dtype)), nxt

        _, toks = jax.lax.scan(body, (carry, ptoks[-1]), jax.random.split(key, n))
        return toks

    return jax.jit(sample, static_argnames=("prompt", "n", "temperature"))


def build(seed: int, batch_size: int, hidden_size: int, seq_len: int) -> Problem:
    """The character model, trained on random windows of ``seq_len`` characters; metric: held-out bpc."""
    corpus = _corpus()
    text, train, vocab, V, L = corpus.text, corpus.train, corpus.vocab, len(corpus.vocab), seq_len

    def init_(key):
        k1, k2, k3 = jax.random.split(key, 3)
        return {
            "embed": 0.1 * jax.random.normal(k1, (V, EMBED), F32),
            "lstm": init(k2, EMBED, hidden_size),
            "head": dense_init(k3, hidden_size, V),
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
        return {"val_bpc": float(val_loss(params, corpus.val_seqs)) / math.log(2.0)}

    sample_jit = _sampler(corpus)

    def extras(params):
        toks = np.asarray(sample_jit(params, jax.random.key(seed), prompt="def "))
        return {"sample": "def " + "".join(vocab[int(t)] for t in toks)}

    @png_figure
    def figure(plt, params, history):
        ev = [r for r in history if "val_bpc" in r]
        fig, ax = plt.subplots(figsize=(5.5, 4))
        ax.plot([r["step"] for r in ev], [r["val_bpc"] for r in ev], marker="o", ms=3)
        ax.axhline(2.0, color="gray", lw=1, ls="--", label="target 2.0")
        ax.set(
            xlabel="step",
            ylabel="bits per character (held-out)",
            title=f"charlm on the Python stdlib ({len(text) / 1e6:.1f}M chars, {V} symbols)",
        )
        ax.legend()
        return fig

    return Problem(init_, loss, batch, evaluate, figure, extras)
