"""The benchmark's problem: sizes, weights and inputs in jlstm's layout, and the (i, f, g, o) layout of
the other libraries."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

#: (T, B, D, H) of issue 6.
SIZES: tuple[tuple[int, int, int, int], ...] = (
    (50, 8, 64, 64),
    (100, 32, 128, 128),
    (100, 32, 256, 256),
    (50, 64, 512, 512),
    (1000, 8, 128, 128),
    (100, 32, 32, 256),
)
#: (T, B, D, H) of issue 2's core benchmark.
CORE_SIZES: tuple[tuple[int, int, int, int], ...] = ((100, 32, 128, 128), (1000, 8, 64, 64))

# jlstm's gate blocks are (a, i, f, o); torch, equinox, flax, lstm_ref and cuDNN use (i, f, g, o), g = a.
TO_IFGO = (1, 2, 0, 3)
FROM_IFGO = (2, 0, 1, 3)


def flops(T: int, B: int, D: int, H: int) -> float:
    """Matrix-product FLOPs of one training step: forward ``x W``, ``h U``; backward ``dW``, ``dU``, ``dh``.

    ``2 T B 4H (D + H)`` forward plus ``2 T B 4H (D + 2H)`` backward; elementwise work is left out.
    """
    return 2.0 * T * B * 4 * H * (2 * D + 3 * H)


@dataclasses.dataclass(frozen=True)
class Problem:
    """Weights ``(W [D, 4H], U [H, 4H], b [4H])`` in jlstm's layout, inputs ``xs [B, T, D]`` and the
    loss weights ``ys [B, T, H]``, as numpy arrays."""

    W: np.ndarray
    U: np.ndarray
    b: np.ndarray
    xs: np.ndarray
    ys: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int, int]:
        B, T, D = self.xs.shape
        return T, B, D, self.U.shape[0]


def make_problem(T: int, B: int, D: int, H: int, *, seed: int = 0, dtype=np.float32) -> Problem:
    rng = np.random.default_rng(seed)
    bound = 1 / np.sqrt(H)
    W = rng.uniform(-bound, bound, (D, 4 * H))
    U = rng.uniform(-bound, bound, (H, 4 * H))
    b = rng.uniform(-bound, bound, (4 * H,))
    xs = rng.standard_normal((B, T, D))
    ys = rng.standard_normal((B, T, H)) / np.sqrt(B * T * H)
    return Problem(*(a.astype(dtype) for a in (W, U, b, xs, ys)))


def blocks(a: np.ndarray, order: Sequence[int], axis: int = -1) -> np.ndarray:
    """The four gate blocks of ``a`` along ``axis``, reordered: block k of the result is ``order[k]``."""
    parts = np.split(np.asarray(a), 4, axis=axis)
    return np.concatenate([parts[k] for k in order], axis=axis)


def to_ifgo(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """jlstm's (a, i, f, o) blocks -> (i, f, g, o)."""
    return blocks(a, TO_IFGO, axis)


def from_ifgo(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """(i, f, g, o) blocks -> jlstm's (a, i, f, o)."""
    return blocks(a, FROM_IFGO, axis)


def parse_sizes(text: str) -> list[tuple[int, int, int, int]]:
    """``"100,32,128,128;1000,8,64,64"`` -> ``[(100, 32, 128, 128), (1000, 8, 64, 64)]``."""
    sizes = []
    for part in text.replace(" ", "").split(";"):
        if not part:
            continue
        vals = part.split(",")
        if len(vals) != 4 or not all(v.isdigit() and int(v) > 0 for v in vals):
            raise ValueError(f"sizes: each size must be T,B,D,H (positive ints); got {part!r}.")
        T, B, D, H = (int(v) for v in vals)
        sizes.append((T, B, D, H))
    if not sizes:  # refused here, not after the first sizes have run and the report finds nothing
        raise ValueError(f"sizes: no size in {text!r}; give one or more T,B,D,H separated by ';'.")
    return sizes
