"""``gomez``: the source document's two-step example (D = 2, H = 1), with the source's own weights."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jlstm.app.tasks.problem import F32, Problem, no_extras, png_figure
from jlstm.core.params import LSTMParams
from jlstm.functional import lstm
from jlstm.losses import l2_loss


def _first_step_check(printed: dict):
    """``first_step(params)``: the weights after one SGD step against the source's printed new W, U, b."""
    from jlstm.app.example import unit

    def first_step(params):
        p = params["lstm"]
        got = {"new W^T": np.asarray(p.W).T, "new U": np.asarray(p.U)[0], "new b": np.asarray(p.b)}
        worst = 0.0
        for name, value in got.items():
            want = np.asarray(printed[name], dtype=np.float64)
            worst = max(worst, float(np.max(np.abs(value - want) / unit(printed[name]))))
        # The source rounds every intermediate to 5 digits; its new weights differ from exact
        # arithmetic by less than one unit of the last printed digit.
        return {"first_step_max_units": worst, "first_step_matches_source": worst <= 1.0}

    return first_step


def build(seed: int, batch_size: int, hidden_size: int, seq_len: int) -> Problem:
    """The source's example; its sizes are fixed (``TaskInfo.fixed``) and the seed plays no part."""
    from jlstm.app import example

    xs = np.asarray(example.XS, np.float32)
    ys = np.asarray(example.YS, np.float32)

    def init_(key):
        # The source's weights. The head is empty: out_t is the prediction.
        p = LSTMParams(*(jnp.asarray(a, F32) for a in (example.W, example.U, example.B)))
        return {"lstm": p, "head": {}}

    def loss(params, batch):
        bx, by = batch
        return l2_loss(lstm(params["lstm"], bx)[0], by), {}

    loss_jit = jax.jit(lambda p: loss(p, (xs, ys))[0])
    outs_jit = jax.jit(lambda p: lstm(p["lstm"], jnp.asarray(xs))[0][:, 0])

    def batch(step):
        return xs, ys  # the whole two-step sequence every step, as in the source

    def evaluate(params):
        out = np.asarray(outs_jit(params))
        return {"final_loss": float(loss_jit(params)), "out_0": float(out[0]), "out_1": float(out[1])}

    @png_figure
    def figure(plt, params, history):
        out0 = np.asarray(outs_jit(init_(None)))  # the source's outputs before any step
        ev = [{"step": 0, "out_0": float(out0[0]), "out_1": float(out0[1])}]
        ev += [r for r in history if "out_0" in r]
        fig, ax = plt.subplots(figsize=(5.5, 4))
        steps = [r["step"] for r in ev]
        for t, color in ((0, "C0"), (1, "C1")):
            ax.plot(steps, [r[f"out_{t}"] for r in ev], color=color, label=f"out_{t}")
            ax.axhline(float(ys[t, 0]), color=color, ls="--", lw=1, label=f"label y_{t} = {ys[t, 0]}")
        ax.set(
            xlabel="SGD step (lr as configured)",
            ylabel="output",
            title="the source's two-step example: out_1 cannot reach 1.25",
        )
        ax.legend(loc="center right", fontsize=8)
        return fig

    first_step = _first_step_check(dict(example.SOURCE))
    return Problem(init_, loss, batch, evaluate, figure, no_extras, first_step)
