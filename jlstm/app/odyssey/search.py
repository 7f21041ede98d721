"""The variants under study and the random search over hyperparameters (the same samples for all).

Greff et al. sampled, per trial: hidden size log-U[20, 200], learning rate log-U[1e-6, 1e-2] (SGD with
Nesterov momentum on a loss summed over the sequence, batch size 1), momentum 1 - log-U[0.01, 1] and
the standard deviation of Gaussian input noise U[0, 1]. We keep the distributions' shapes, momentum and
noise as they were, and move the learning-rate range to our loss (a mean over frames and a batch of 32),
and the hidden sizes down to what a 2-core machine trains in the budget.

Hidden sizes are bucketed: a log-uniform sample is rounded, in log space, to one of a few sizes, so that
the trials of one bucket have equal shapes and train together under ``vmap``. Padding every trial to the
largest width with a unit mask would need to know where each variant keeps its per-unit parameters (its
gate blocks, peepholes) and would spend much of the work on masked units (the mean of H^2 under
log-U[16, 64] is 0.4 of 64^2); buckets run each variant's own cell untouched and waste nothing, at the
price of a discretised hidden size and one compilation per bucket.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Greff et al.'s variants that jlstm implements, in the paper's order, as ``jlstm.init`` keywords.
#: V is the paper's baseline (the peephole LSTM); jlstm's plain cell is the paper's NP. FGR (full gate
#: recurrence) is not built in jlstm, so it is not studied.
VARIANTS: dict[str, dict] = {
    "V": {"peephole": True},
    "NIG": {"peephole": True, "variant": "NIG"},
    "NFG": {"peephole": True, "variant": "NFG"},
    "NOG": {"peephole": True, "variant": "NOG"},
    "NIAF": {"peephole": True, "variant": "NIAF"},
    "NOAF": {"peephole": True, "variant": "NOAF"},
    "NP": {},
    "CIFG": {"peephole": True, "variant": "CIFG"},
}
BASELINE = "V"
HYPERS = ("lr", "hidden", "momentum", "noise")


@dataclass(frozen=True)
class Space:
    """The search space: ranges of each hyperparameter (log-uniform unless said otherwise)."""

    lr: tuple[float, float] = (1e-2, 3.0)
    hidden: tuple[int, int] = (16, 64)
    buckets: int = 3  # hidden sizes: this many, log-spaced over `hidden`
    one_minus_momentum: tuple[float, float] = (0.01, 1.0)
    noise: tuple[float, float] = (0.0, 1.0)  # uniform

    def sizes(self) -> np.ndarray:
        """The bucketed hidden sizes, e.g. ``[16, 32, 64, 128]``."""
        lo, hi = np.log(self.hidden[0]), np.log(self.hidden[1])
        return np.unique(np.round(np.exp(np.linspace(lo, hi, self.buckets))).astype(int))


def sample(space: Space, n: int, seed: int) -> dict[str, np.ndarray]:
    """``n`` trials drawn independently: ``{"trial", "seed", "lr", "hidden", "momentum", "noise"}``.

    The same ``(space, n, seed)`` gives the same trials, which every variant then trains: trial ``k`` of
    NFG and trial ``k`` of V differ only in the cell.
    """
    if n < 1:
        raise ValueError(f"sample: n (trials) must be at least 1; got {n}.")
    rng = np.random.default_rng([seed, 1503])
    log_u = lambda lo_hi: np.exp(rng.uniform(np.log(lo_hi[0]), np.log(lo_hi[1]), n))
    lr = log_u(space.lr)
    raw_h = log_u(space.hidden)
    sizes = space.sizes()
    hidden = sizes[np.argmin(np.abs(np.log(raw_h)[:, None] - np.log(sizes)[None]), axis=1)]
    momentum = 1.0 - log_u(space.one_minus_momentum)
    noise = rng.uniform(space.noise[0], space.noise[1], n)
    return {
        "trial": np.arange(n),
        "seed": rng.integers(0, 2**31 - 1, n),
        "lr": lr.astype(np.float32),
        "hidden": hidden.astype(int),
        "momentum": momentum.astype(np.float32),
        "noise": noise.astype(np.float32),
    }
