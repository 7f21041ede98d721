"""Argument preparation for the sequence functions: checks, one flat batch axis, dtypes, time-major
layout, reversal within each sequence's length, and the choice of chunk length."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jlstm.core import checks as _checks
from jlstm.core import state as _state
from jlstm.core.params import LSTMState

#: Rows (chunk steps x batch) the default chunk aims for: enough for the chunk's products to run near
#: full speed, few enough that its ``[k, B, GH]`` projection and delta gates stay in cache and small
#: beside the saved residuals (4096 held three 8 MiB chunk buffers at T=1000, B=8, H=128: 0.56x
#: autodiff's temp memory; 1024 gives 0.36x and measured no slower on the CPU, docs/performance.md).
CHUNK_ROWS = 1024

#: remat="auto" saves every step while the saved residuals (``[T, B, 5H + R]`` in the state dtype: the
#: gates, the cell states, the outputs) take at most this many bytes; above, it recomputes chunks.
AUTO_REMAT_BYTES = 64 * 2**20

#: The fewest rows (chunk steps x batch) remat="auto" gives a chunk, so that small batches keep
#: products large enough to run well.
AUTO_REMAT_MIN_ROWS = 256


class Prepared(NamedTuple):
    """Inputs flattened to one batch axis ``B``: ``xs [B, T, D]`` in the compute dtype, ``state0`` the
    initial state as a tuple of ``[B, width]`` arrays in their dtypes (``jlstm.core.state``), ``lengths
    [B]`` (clamped into [0, T]) or None; ``state_type`` the NamedTuple the final state is returned as."""

    batch_shape: tuple[int, ...]
    T: int
    B: int
    H: int
    R: int
    xs: jax.Array
    state0: tuple
    lengths: jax.Array | None
    state_type: type = LSTMState

    def unflatten(self, ys, final: tuple):
        """``ys [B, T, R]`` and the final state ``[B, width]`` each -> the caller's batch shape."""
        ys = ys.reshape(self.batch_shape + ys.shape[1:])
        return ys, self.state_type(*(v.reshape(self.batch_shape + v.shape[1:]) for v in final))


def prepare(xs, carry, lengths, *, cell, D: int, H: int, R: int, dtype, where: str) -> Prepared:
    """Check ``xs [..., T, D]``, ``carry`` (the cell's state, each ``[..., width]`` broadcastable to the
    batch shape, or None for zeros) and ``lengths``; flatten the batch to one axis."""
    xs = _checks.check_xs(xs, D, where)
    batch_shape = tuple(xs.shape[:-2])
    T = xs.shape[-2]
    B = math.prod(batch_shape)
    sizes, dts = _state.widths(cell, H, R), _state.dtypes(cell, dtype)
    if carry is None:
        state0 = tuple(jnp.zeros((B, n), t) for n, t in zip(sizes, dts))
    else:
        given = _checks.check_state(carry, _state.as_state_cell(cell), batch_shape, sizes, where)
        state0 = tuple(
            jnp.broadcast_to(v.astype(t), batch_shape + (n,)).reshape(B, n)
            for v, t, n in zip(given, dts, sizes)
        )
    if lengths is not None:
        lengths = _checks.check_lengths(lengths, batch_shape, T, where).reshape(B)
    xs = xs.astype(dtype).reshape(B, T, D)
    return Prepared(batch_shape, T, B, H, R, xs, state0, lengths, _state.state_type(cell))


def reverse_time(xs: jax.Array, lengths: jax.Array | None) -> jax.Array:
    """Reverse ``[B, T, ...]`` along time; with lengths, each sequence within its own valid prefix."""
    if lengths is None:
        return jnp.flip(xs, axis=1)
    T = xs.shape[1]
    t = jnp.arange(T)[None, :]
    idx = jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)  # an involution: [B, T]
    idx = idx.reshape(idx.shape + (1,) * (xs.ndim - 2))
    return jnp.take_along_axis(xs, idx, axis=1)


def time_major(xs: jax.Array, lengths: jax.Array | None) -> tuple[jax.Array | None, jax.Array]:
    """``xs [B, T, D]`` -> ``(mask [T, B] or None, xs [T, B, D])`` with the padding zeroed, so that it
    never reaches dW, even if it holds NaN."""
    mask = None
    if lengths is not None:
        mask = jnp.arange(xs.shape[1])[:, None] < lengths[None, :]
        xs = jnp.where(mask.T[:, :, None], xs, 0)
    return mask, jnp.swapaxes(xs, 0, 1)


def default_chunk(T: int, B: int) -> int:
    """The chunk length without remat: the largest divisor of T in ``[target / 2, target]`` with
    ``target = CHUNK_ROWS / B`` (so no step is padded), else ``target`` itself (T is then padded with
    masked steps, the identity on the carry: a few selects per step, but no full-length buffer)."""
    target = max(1, CHUNK_ROWS // max(B, 1))
    if T <= target:
        return T
    for k in range(target, max(1, target // 2) - 1, -1):
        if T % k == 0:
            return k
    return target


def _near_divisor(T: int, k: int) -> int:
    """A divisor of T in ``[k / 2, 2k]``, the nearest to k (no padded step), else k itself."""
    divisors = [d for d in range(max(1, k // 2), min(T, 2 * k) + 1) if T % d == 0]
    return min(divisors, key=lambda d: (abs(d - k), -d)) if divisors else k


def auto_remat(T: int, B: int, H: int, R: int, itemsize: int) -> int | None:
    """The chunk length of ``remat="auto"``: None (save every step) when the saved residuals, about
    ``T B (5H + R) itemsize`` bytes, fit in ``AUTO_REMAT_BYTES``; else about ``sqrt(T)`` steps (the
    saved carries ``T / k`` and one chunk's residuals ``k`` balance there, whatever B), at least
    ``AUTO_REMAT_MIN_ROWS / B`` so that small batches keep large products, and a divisor of T near it
    when there is one (no padded steps)."""
    if T * B * (5 * H + R) * itemsize <= AUTO_REMAT_BYTES:
        return None
    k = max(math.isqrt(T), -(-AUTO_REMAT_MIN_ROWS // max(B, 1)))
    return min(T, _near_divisor(T, k))


def check_remat(remat, backward: str, where: str):
    """None, ``"auto"`` or a positive int k, with the manual backward."""
    if remat is None:
        return None
    auto = isinstance(remat, str) and remat == "auto"
    if not auto and (isinstance(remat, bool) or not isinstance(remat, int) or remat < 1):
        raise ValueError(
            f"{where}: remat must be None, 'auto' or a positive int k (keep every k-th carry); got {remat!r}."
        )
    if backward != "manual":
        raise ValueError(f"{where}: remat applies to backward='manual' only; got backward={backward!r}.")
    return remat
