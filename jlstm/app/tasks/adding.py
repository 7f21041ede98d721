"""``adding``: the adding problem of Hochreiter & Schmidhuber (1997), generated."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jlstm.app.tasks.problem import Problem, dense, dense_init, no_extras, png_figure
from jlstm.core.params import init
from jlstm.functional import lstm


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


def build(seed: int, batch_size: int, hidden_size: int, seq_len: int) -> Problem:
    """The adding problem of length ``seq_len``, regressed from the final h."""
    T = seq_len
    # The test set depends on T only ([0, T, 2] never equals a training [seed, step, 1]).
    Xte, yte = adding_batch(np.random.default_rng([0, T, 2]), 1000, T)

    def init_(key):
        k1, k2 = jax.random.split(key)
        return {"lstm": init(k1, 2, hidden_size), "head": dense_init(k2, hidden_size, 1)}

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

    @png_figure
    def figure(plt, params, history):
        pred = np.asarray(predict_jit(params, Xte))
        fig, ax = plt.subplots(figsize=(4.8, 4.5))
        ax.scatter(yte, pred, s=4, alpha=0.5)
        ax.plot([0, 2], [0, 2], color="gray", lw=1)
        ax.set(
            xlabel="target (sum of the two marked values)",
            ylabel="prediction",
            title=f"adding, T = {T}: test MSE {np.mean((pred - yte) ** 2):.4f}",
        )
        return fig

    return Problem(init_, loss, batch, evaluate, figure, no_extras)
