"""What every converter shares: arrays from any library as numpy, shape checks that name the argument,
and the permutation of the four gate blocks between a library's order and jlstm's (a, i, f, o)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from jlstm.core import checks as _checks
from jlstm.core.params import GATE_ORDER, LSTMParams

#: jlstm's gate blocks (``GATE_ORDER`` itself, under the name interop has exported); each library's
#: order uses the same letters (``a`` = the tanh gate).
JLSTM_GATES = GATE_ORDER


def _np(x) -> np.ndarray:
    """Any array (numpy, jax, torch, a Flax/Keras variable) as a numpy array, without changing dtype."""
    if hasattr(x, "detach"):  # torch.Tensor
        return x.detach().cpu().numpy()
    if type(x).__module__.startswith("keras"):  # keras.Variable: its numpy() warns under numpy 2
        x = x.value
    if hasattr(x, "get_value") and not isinstance(x, np.ndarray):  # flax.nnx.Variable
        x = x.get_value()
    return np.asarray(x)


def _array(where: str, name: str, x, shape: tuple[int | None, ...], what: str) -> np.ndarray:
    """``x`` as numpy with ``shape`` (None: any size); else a ValueError naming ``name`` and ``what``."""
    a = _np(x)
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"{where}: {name} must be a floating array; got dtype {a.dtype}.")
    ok = a.ndim == len(shape) and all(s is None or s == n for s, n in zip(shape, a.shape))
    if not ok:
        want = "[" + ", ".join("?" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{where}: {name} must be {what} = {want}; got shape {a.shape}.")
    return a


def _reorder(x: np.ndarray, src: Sequence[str], dst: Sequence[str], axis: int = -1) -> np.ndarray:
    """Permute the four gate blocks of ``x`` along ``axis`` from the order ``src`` to ``dst``."""
    blocks = dict(zip(src, np.split(x, 4, axis=axis)))
    return np.concatenate([blocks[g] for g in dst], axis=axis)


def _params(W: np.ndarray, U: np.ndarray, b: np.ndarray, src: Sequence[str]) -> LSTMParams:
    """Columns in gate order ``src`` -> jlstm's LSTMParams (jax arrays, dtype kept where JAX allows)."""
    return LSTMParams(*(jnp.asarray(_reorder(a, src, JLSTM_GATES)) for a in (W, U, b)))


def _layout(params, where: str, src: Sequence[str] = JLSTM_GATES, name: str = "params"):
    """Checked LSTMParams -> numpy ``(W, U, b)`` with columns in gate order ``src``."""
    p = _checks.check_params(params, f"{where}: {name}")
    return tuple(_reorder(_np(a), JLSTM_GATES, src) for a in p)


def _plain(tree) -> Any:
    """Nested mappings (a Flax/Haiku params dict, an ``nnx.State``, an ``nnx.Module``) -> nested dicts."""
    mod = type(tree).__module__ or ""
    if mod.startswith("flax.nnx") or mod.startswith("flax.core"):
        from flax import nnx

        if isinstance(tree, nnx.Module):
            tree = nnx.state(tree, nnx.Param)
        if isinstance(tree, nnx.State):
            tree = nnx.to_pure_dict(tree)
    if isinstance(tree, Mapping):
        return {str(k): _plain(v) for k, v in tree.items()}
    return tree


def _zeros_like_bias(U: np.ndarray) -> np.ndarray:
    return np.zeros((U.shape[1],), U.dtype)
