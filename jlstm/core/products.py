"""The products of the recurrence, optionally with dropout masks on their inputs.

Without masks these are plain matrix products. With variational dropout (Gal & Ghahramani 2016, Keras 3
``recurrent_dropout``) each gate block sees its own mask on the product's input, fixed over time:
``z^g = (x * M_g) @ W_g``. A mask is ``[B, G', K]`` with ``G'`` = the number of gate blocks (per-gate
masks) or 1 (one tied mask), ``K`` the input width; it broadcasts over a leading time axis.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jlstm.core.precision import matmul


def _blocks(M: jax.Array, g: int) -> jax.Array:
    """``[K, GH]`` -> ``[K, g, GH / g]``."""
    return M.reshape(M.shape[0], g, M.shape[1] // g)


def _lead(mask: jax.Array, ndim: int) -> jax.Array:
    """``[B, G', K]`` with leading unit axes to broadcast against ``[..., B, G', K]`` of rank ``ndim``."""
    return mask.reshape((1,) * (ndim - mask.ndim) + mask.shape)


def product(x: jax.Array, M: jax.Array, mask: jax.Array | None, acc) -> jax.Array:
    """``(x * mask_g) @ M_g`` for every gate block g: ``x [..., B, K]``, ``M [K, GH]`` -> ``[..., B, GH]``."""
    if mask is None:
        return matmul(x, M, acc)
    m = _lead(mask, x.ndim + 1)
    if mask.shape[-2] == 1:  # tied: one mask for every gate, a plain product of the masked input
        return matmul(x * m[..., 0, :], M, acc)
    g = mask.shape[-2]
    z = jnp.einsum("...gk,kgh->...gh", x[..., None, :] * m, _blocks(M, g), preferred_element_type=acc)
    return z.reshape(z.shape[:-2] + (M.shape[1],))


def product_T(dz: jax.Array, M: jax.Array, M_T: jax.Array, mask: jax.Array | None, acc) -> jax.Array:
    """The transpose of ``product``: ``sum_g (dz_g @ M_g^T) * mask_g``, ``dz [..., B, GH]`` -> ``[.., B, K]``.

    ``M_T`` is ``M.T`` materialised once by the caller (used on the unmasked path).
    """
    if mask is None:
        return matmul(dz, M_T, acc)
    m = _lead(mask, dz.ndim + 1)
    if mask.shape[-2] == 1:
        return matmul(dz, M_T, acc) * m[..., 0, :]
    g = mask.shape[-2]
    dzg = dz.reshape(dz.shape[:-1] + (g, dz.shape[-1] // g))
    out = jnp.einsum("...gh,kgh->...gk", dzg, _blocks(M, g), preferred_element_type=acc)
    return jnp.sum(out * m, axis=-2)


def outer(x: jax.Array, dz: jax.Array, mask: jax.Array | None, acc) -> jax.Array:
    """``sum_{t,b} (x * mask_g)^T dz_g`` for ``x [k, B, K]``, ``dz [k, B, GH]`` -> ``[K, GH]``.

    One contraction over time and batch together, as ``dot_general`` (a reshape to ``[k * B, ...]``
    would merge a sharded batch axis into time and make XLA all-gather it).
    """
    if mask is None or mask.shape[-2] == 1:
        xm = x if mask is None else x * mask[None, :, 0]
        return lax.dot_general(xm, dz, (((0, 1), (0, 1)), ((), ())), preferred_element_type=acc)
    g = mask.shape[-2]
    dzg = dz.reshape(dz.shape[:-1] + (g, dz.shape[-1] // g))
    out = jnp.einsum("tbgk,tbgh->kgh", x[..., None, :] * mask[None], dzg, preferred_element_type=acc)
    return out.reshape(out.shape[0], -1)


# Block-diagonal (multi-head) recurrent weights: ``U [heads, R / heads, G H / heads]``, each head's last
# axis gate-major (``G`` blocks of ``H / heads``), so that head k maps its slice of the recurrent state
# onto its slice of every gate of the ``[B, G H]`` pre-activation the cell reads (sLSTM, FlashRNN).


def _heads(U: jax.Array, G: int) -> jax.Array:
    """``[heads, R / heads, G dh]`` -> ``[heads, R / heads, G, dh]``."""
    return U.reshape(U.shape[0], U.shape[1], G, U.shape[2] // G)


def rec_product(h: jax.Array, U: jax.Array, G: int, mask: jax.Array | None, acc) -> jax.Array:
    """``zh = h @ U`` for a dense ``U [R, GH]`` (with dropout masks) or a block-diagonal one."""
    if U.ndim == 2:
        return product(h, U, mask, acc)
    hb = h.reshape(h.shape[:-1] + U.shape[:2])
    z = jnp.einsum("...kr,krgd->...gkd", hb, _heads(U, G), preferred_element_type=acc)
    return z.reshape(h.shape[:-1] + (G * U.shape[0] * (U.shape[2] // G),))


def rec_product_T(dz: jax.Array, U: jax.Array, U_T: jax.Array, G: int, mask, acc) -> jax.Array:
    """The transpose of ``rec_product``: ``dz [..., GH]`` -> ``[..., R]``."""
    if U.ndim == 2:
        return product_T(dz, U, U_T, mask, acc)
    dzb = dz.reshape(dz.shape[:-1] + (G, U.shape[0], U.shape[2] // G))
    out = jnp.einsum("...gkd,krgd->...kr", dzb, _heads(U, G), preferred_element_type=acc)
    return out.reshape(dz.shape[:-1] + (U.shape[0] * U.shape[1],))


def rec_outer(h: jax.Array, dz: jax.Array, U: jax.Array, G: int, mask, acc) -> jax.Array:
    """``dU = sum_{t,b} h_{t-1} (x) dz_t`` shaped like ``U``: ``h [k, B, R]``, ``dz [k, B, GH]``."""
    if U.ndim == 2:
        return outer(h, dz, mask, acc)
    hb = h.reshape(h.shape[:-1] + U.shape[:2])
    dzb = dz.reshape(dz.shape[:-1] + (G, U.shape[0], U.shape[2] // G))
    out = jnp.einsum("tbkr,tbgkd->krgd", hb, dzb, preferred_element_type=acc)
    return out.reshape(U.shape)
