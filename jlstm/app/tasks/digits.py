"""``digits``: scikit-learn's 8x8 digits, read row by row (8 steps of 8 pixels), classified from h_T."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jlstm.app.tasks.problem import F32, Problem, dense, dense_init, no_extras, png_figure
from jlstm.core.params import init
from jlstm.functional import lstm
from jlstm.losses import softmax_cross_entropy


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


def _split():
    """The 80/20 split ``(Xtr, ytr, Xte, yte)``; it does not depend on the seed, so seeds compare."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32).reshape(-1, 8, 8)  # 8 steps (rows) of 8 features (pixels)
    perm = np.random.default_rng(20_000).permutation(len(X))
    n_test = len(X) // 5
    test, train = perm[:n_test], perm[n_test:]
    return X[train], y[train].astype(np.int32), X[test], y[test].astype(np.int32)


def build(seed: int, batch_size: int, hidden_size: int, seq_len: int) -> Problem:
    """The ``digits`` problem; ``seq_len`` is fixed by the data (8 rows) and not used (``TaskInfo.fixed``)."""
    Xtr, ytr, Xte, yte = _split()

    def init_(key):
        k1, k2 = jax.random.split(key)
        return {"lstm": init(k1, 8, hidden_size), "head": dense_init(k2, hidden_size, 10)}

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

    @png_figure
    def figure(plt, params, history):
        pred = np.asarray(predict(params, Xte))
        cm = np.zeros((10, 10), int)
        np.add.at(cm, (yte, pred), 1)
        fig, ax = plt.subplots(figsize=(5, 4.5))
        ax.imshow(cm, cmap="Blues")
        for i, j in np.ndindex(cm.shape):
            if cm[i, j]:
                ax.text(
                    j,
                    i,
                    cm[i, j],
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if cm[i, j] > cm.max() / 2 else "black",
                )
        ax.set(
            xlabel="predicted",
            ylabel="true",
            xticks=range(10),
            yticks=range(10),
            title=f"digits, held-out 20 %: accuracy {np.mean(pred == yte):.3f}",
        )
        return fig

    return Problem(init_, loss, batch, evaluate, figure, no_extras)
