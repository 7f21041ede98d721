"""Looking inside back-propagation through time: per-step gradients, and how they decay with distance.

``trace_loss(params, xs, loss_fn)`` returns the per-step quantities of the hand-written backward
(the source's ``delta out_t``, ``delta state_t``, ``delta gates_t``, ``Delta out_t``) for a sequence
and any loss of the outputs and the final carry. ``run(StudyConfig())`` is the study behind
``jlstm gradflow``: on the adding problem (the loss sits at the last step), how the norm of the
gradient ``dL/dh_t`` that reaches step ``t`` falls with the distance ``T - 1 - t`` to the loss, for an
LSTM with forget-gate bias 0, 1 and 3 and for a tanh RNN of the same size, at initialisation and
after training.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from jlstm.app.rnn import rnn, rnn_init
from jlstm.app.tasks import adding_batch, dense
from jlstm.core.backward import Trace
from jlstm.core.params import LSTMParams, LSTMState
from jlstm.functional import init, lstm, lstm_trace
from jlstm.train import make_train_step

log = logging.getLogger("jlstm.gradflow")


class LossTrace(NamedTuple):
    """What ``trace_loss`` returns.

    Attributes:
      loss: the scalar loss.
      dparams: ``LSTMParams`` gradient (the hand-written pass).
      dxs: ``[..., T, D]`` gradient w.r.t. the inputs.
      dcarry0: ``LSTMState`` gradient w.r.t. the initial carry.
      trace: ``jlstm.backward.Trace`` with ``delta_out [..., T, H]`` (dL/d out_t in total),
        ``delta_state [..., T, H]`` (dL/d state_t in total), ``delta_gates [..., T, 4H]`` (dL/d of the
        pre-activations, gates a, i, f, o), ``delta_x [..., T, D]`` and ``Delta_out_prev [..., T, H]``
        (``Delta out_{t-1}``, the part of dL/d out_{t-1} that comes back through step t).
    """

    loss: jax.Array
    dparams: LSTMParams
    dxs: jax.Array
    dcarry0: LSTMState
    trace: Trace


def trace_loss(
    params: LSTMParams,
    xs: jax.Array,
    loss_fn: Callable[[jax.Array, LSTMState], jax.Array],
    carry: LSTMState | tuple | None = None,
    *,
    lengths: jax.Array | None = None,
) -> LossTrace:
    """The hand-written backward's per-step quantities for ``loss_fn(hs, final_carry)``.

    The loss's gradients w.r.t. ``hs`` (the source's ``Delta_t``) and the final carry are taken by
    ``jax.grad`` (they are local to the loss); the recurrence back through time is
    ``jlstm.lstm_trace``, the same code as ``jlstm.lstm``'s custom_vjp.

    Args:
      params: ``LSTMParams``; xs ``[..., T, D]``; carry ``(h0, c0)`` or ``None``; lengths as in ``lstm``.
      loss_fn: ``loss_fn(hs [..., T, H], LSTMState(h [..., H], c [..., H])) -> scalar``.

    Returns:
      A ``LossTrace``; ``dparams`` equals ``jax.grad`` of ``loss_fn(*lstm(params, xs, carry))``.

    Example:
      >>> lt = trace_loss(params, xs, lambda hs, final: jnp.sum(final.h ** 2))
      >>> jnp.linalg.norm(lt.trace.delta_out, axis=-1)   # [..., T]: the gradient reaching each step
    """
    hs, final = lstm(params, xs, carry, lengths=lengths)
    loss, (g_hs, g_final) = jax.value_and_grad(loss_fn, argnums=(0, 1))(hs, final)
    dparams, dxs, dcarry0, tr = lstm_trace(params, xs, g_hs, carry, g_final, lengths=lengths)
    return LossTrace(loss, dparams, dxs, dcarry0, tr)


# ------------------------------------------------------------------------------------------- study


@dataclass(frozen=True)
class StudyConfig:
    """The gradient-flow study. Models: LSTMs with each forget bias, and a tanh RNN, all of size H."""

    steps: int = 1500  # Adam steps on adding per model (0: initialisation only)
    seq_len: int = 100
    hidden_size: int = 64
    batch_size: int = 64
    lr: float = 3e-3
    clip: float = 1.0
    forget_biases: tuple[float, ...] = (0.0, 1.0, 3.0)
    variants: tuple[str, ...] = ()  # cell variants too (forget bias 1): "peephole", "NFG", "CIFG", ...
    n_probe: int = 256  # sequences over which the gradient norms are averaged
    seed: int = 0
    out: str = "runs/gradflow"


def _models(cfg: StudyConfig) -> dict[str, tuple[str, dict]]:
    key = jax.random.key(cfg.seed)
    H = cfg.hidden_size
    out = {}
    for i, fb in enumerate(cfg.forget_biases):
        k1, k2 = jax.random.split(jax.random.fold_in(key, i))
        out[f"LSTM, forget bias {fb:g}"] = (
            "lstm",
            {"core": init(k1, 2, H, forget_bias=fb), "head": _head(k2, H)},
        )
    for j, name in enumerate(cfg.variants):
        k1, k2 = jax.random.split(jax.random.fold_in(key, 100 + j))
        opts: dict = {"peephole": True} | ({} if name == "peephole" else {"variant": name})
        out[f"LSTM, {name}"] = ("lstm", {"core": init(k1, 2, H, **opts), "head": _head(k2, H)})
    k1, k2 = jax.random.split(jax.random.fold_in(key, len(cfg.forget_biases)))
    out["tanh RNN"] = ("rnn", {"core": rnn_init(k1, 2, H), "head": _head(k2, H)})
    return out


def _head(key, H):
    bound = 1 / math.sqrt(H)
    return {
        "w": jax.random.uniform(key, (H, 1), jnp.float32, -bound, bound),
        "b": jnp.zeros((1,), jnp.float32),
    }


def _head_mse(head, h, ys):
    return jnp.mean(jnp.square(dense(head, h)[..., 0] - ys))


def _loss(kind: str):
    def loss(params, batch):
        xs, ys = batch
        h = lstm(params["core"], xs)[1].h if kind == "lstm" else rnn(params["core"], xs)[1]
        return _head_mse(params["head"], h, ys)

    return loss


_test_mse = jax.jit(lambda kind, params, batch: _loss(kind)(params, batch), static_argnums=0)


def gradient_profile(kind: str, params: dict, xs: ArrayLike, ys: ArrayLike) -> dict[str, np.ndarray]:
    """Mean over the batch of ``||dL/dh_t||`` for each step ``t`` (and ``||dL/dc_t||`` for the LSTM).

    The LSTM's come from the hand-written backward (``trace_loss``); the RNN's from autodiff w.r.t. a
    zero perturbation of each ``h_t``. ``kind`` is ``"lstm"`` or ``"rnn"``. Computed in float64
    whatever the parameters' dtype. Returns arrays ``[T]`` indexed by time.
    """
    # In float64: float32 flushes the decayed gradients of the RNN to exactly 0 after ~60 steps.
    with jax.enable_x64(True):
        p64, xs64, ys64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), (params, xs, ys))
        return {k: np.asarray(v) for k, v in _profile(kind, p64, xs64, ys64).items()}


@partial(jax.jit, static_argnums=0)
def _profile(kind, params, xs, ys):
    if kind == "lstm":
        lt = trace_loss(params["core"], xs, lambda hs, final: _head_mse(params["head"], final.h, ys))
        return {
            "grad_h": jnp.mean(jnp.linalg.norm(lt.trace.delta_out, axis=-1), axis=0),
            "grad_c": jnp.mean(jnp.linalg.norm(lt.trace.delta_state, axis=-1), axis=0),
        }
    eps = jnp.zeros(xs.shape[:2] + (params["core"]["U"].shape[0],), xs.dtype)
    g = jax.grad(lambda e: _head_mse(params["head"], rnn(params["core"], xs, e)[1], ys))(eps)
    return {"grad_h": jnp.mean(jnp.linalg.norm(g, axis=-1), axis=0)}


def _train(kind: str, params: dict, cfg: StudyConfig) -> tuple[dict, float]:
    opt = optax.chain(optax.clip_by_global_norm(cfg.clip), optax.adam(cfg.lr))
    step = make_train_step(_loss(kind), opt)
    opt_state = opt.init(params)
    for s in range(cfg.steps):
        batch = adding_batch(np.random.default_rng([cfg.seed, s, 1]), cfg.batch_size, cfg.seq_len)
        params, opt_state, _ = step(params, opt_state, batch)
    Xte, yte = adding_batch(np.random.default_rng([0, cfg.seq_len, 2]), 1000, cfg.seq_len)
    return params, float(_test_mse(kind, params, (Xte, yte)))


def run(cfg: StudyConfig = StudyConfig()) -> dict:
    """Run the study; write ``gradflow.csv``, ``gradflow.png`` and ``summary.json`` into ``cfg.out``.

    Returns:
      ``{"config", "test_mse": {model: {phase: mse}}, "decay": {model: {phase: ratio}}, "wall_seconds"}``
      (phases ``"init"`` and ``"trained"``) where ``decay`` is ``||dL/dh_0|| / ||dL/dh_{T-1}||``: how
      much of the gradient at the loss reaches the first step.
    """
    t0 = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    T = cfg.seq_len
    xs, ys = adding_batch(np.random.default_rng([cfg.seed, T, 3]), cfg.n_probe, T)
    Xte, yte = adding_batch(np.random.default_rng([0, T, 2]), 1000, T)
    rows, mse, profiles = [], {}, {}
    decay: dict[str, dict[str, float]] = {}
    for name, (kind, params) in _models(cfg).items():
        mse[name] = {"init": float(_test_mse(kind, params, (Xte, yte)))}
        phases = [("init", params)]
        if cfg.steps:
            t1 = time.perf_counter()
            trained, mse[name]["trained"] = _train(kind, params, cfg)
            phases.append(("trained", trained))
            log.info(
                "%s: %d steps in %.0f s, test MSE %.4f -> %.4f",
                name,
                cfg.steps,
                time.perf_counter() - t1,
                mse[name]["init"],
                mse[name]["trained"],
            )
        decay[name] = {}
        for phase, p in phases:
            prof = gradient_profile(kind, p, xs, ys)
            profiles[(name, phase)] = prof
            g = prof["grad_h"]
            decay[name][phase] = float(g[0] / g[-1])
            for t in range(T):
                rows.append(
                    {
                        "model": name,
                        "phase": phase,
                        "distance": T - 1 - t,
                        "step": t,
                        "grad_h_norm": float(g[t]),
                        "grad_h_relative": float(g[t] / g[-1]),
                        "grad_c_norm": float(prof["grad_c"][t]) if "grad_c" in prof else "",
                    }
                )
    with open(out / "gradflow.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    plot(profiles, cfg, mse, out / "gradflow.png")
    result = {
        "config": asdict(cfg),
        "test_mse": mse,
        "decay": decay,
        "wall_seconds": time.perf_counter() - t0,
    }
    (out / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def plot(profiles: dict, cfg: StudyConfig, mse: dict, path: Path) -> None:
    """Relative gradient norm against distance to the loss, log scale, one panel per phase."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    phases = sorted({ph for _, ph in profiles}, key=["init", "trained"].index)
    fig, axes = plt.subplots(1, len(phases), figsize=(5.2 * len(phases), 4), sharey=True, squeeze=False)
    for ax, phase in zip(axes[0], phases):
        for (name, ph), prof in profiles.items():
            if ph != phase:
                continue
            g = prof["grad_h"]
            dist = np.arange(len(g))[::-1]
            label = name + (f" (MSE {mse[name][phase]:.3f})" if phase == "trained" else "")
            ax.plot(dist, np.maximum(g / g[-1], 1e-30), label=label, ls="--" if "RNN" in name else "-")
        title = "at initialisation" if phase == "init" else f"after {cfg.steps} Adam steps on adding"
        ax.set(yscale="log", xlabel="distance to the loss, T - 1 - t (steps)", title=title)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("||dL/dh_t|| / ||dL/dh_(T-1)||")
    fig.suptitle(f"Gradient reaching step t, adding problem, T = {cfg.seq_len}, H = {cfg.hidden_size}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def describe(result: dict) -> str:
    """A short text table of the study's result."""
    lines = [f"{'model':<24}{'phase':>9}{'test MSE':>10}{'||g_0|| / ||g_T-1||':>22}"]
    for name, phases in result["decay"].items():
        for phase, ratio in phases.items():
            lines.append(f"{name:<24}{phase:>9}{result['test_mse'][name][phase]:>10.4f}{ratio:>22.3e}")
    return "\n".join(lines)
