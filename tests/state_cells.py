"""Cells written only against the documented state interface (``jlstm.Cell(state=...)``), for the tests.

- ``ELMAN``: one state, ``h' = tanh(zx + zh)``.
- ``TOY4``: four states ``(h, c, n, m)``: a gated cell state, a normaliser, a slow average.
- ``GRU``: torch's GRU with its recurrent bias ``b_hn`` inside the cell (``theta``), returning ``dzh``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jlstm import Cell, State, StateGrads
from jlstm.cells.custom import init_params


def _sig(z):
    return jax.nn.sigmoid(z)


# ------------------------------------------------------------------------------------------- Elman


def _elman_fwd(theta, zx, zh, prev, noise):
    h = jnp.tanh(zx + zh)  # h_t = tanh(x W + b + h_{t-1} U)
    return (h,), h


def _elman_bwd(theta, h, prev, new, g_y, d_new, noise):
    dz = (g_y + d_new[0]) * (1 - h * h)  # delta z = delta h * tanh'
    return StateGrads(dzx=dz, dzh=None, d_prev=(None,), dtheta={})


ELMAN = Cell("elman", 1, _elman_fwd, _elman_bwd, state=(State("h", "R"),))


# ------------------------------------------------------------------------------------- four states


def _toy_fwd(theta, zx, zh, prev, noise):
    h, c, n, m = prev
    zi, zf, zz, zo = jnp.split(zx + zh, 4, axis=-1)
    i, f, z, o = _sig(zi), _sig(zf), jnp.tanh(zz), _sig(zo)
    c2 = f * c + i * z
    n2 = f * n + i
    m2 = 0.5 * m + 0.1 * c2
    q = 1 + n2 * n2
    h2 = o * c2 / q + jnp.tanh(m2)
    return (h2, c2, n2, m2), (i, f, z, o, c, n, c2, n2, m2)


def _toy_bwd(theta, res, prev, new, g_y, d_new, noise):
    i, f, z, o, c, n, c2, n2, m2 = res
    gh = g_y + d_new[0]
    q = 1 + n2 * n2
    dm2 = d_new[3] + gh * (1 - jnp.tanh(m2) ** 2)  # h' = o c'/q + tanh m'
    dc2 = d_new[1] + gh * o / q + 0.1 * dm2  # m' = 0.5 m + 0.1 c'
    dn2 = d_new[2] - gh * o * c2 * 2 * n2 / (q * q)
    do = gh * c2 / q
    df, di, dz = dc2 * c + dn2 * n, dc2 * z + dn2, dc2 * i  # c' = f c + i z;  n' = f n + i
    dzx = jnp.concatenate([di * i * (1 - i), df * f * (1 - f), dz * (1 - z * z), do * o * (1 - o)], axis=-1)
    d_prev = (None, dc2 * f, dn2 * f, 0.5 * dm2)
    return StateGrads(dzx=dzx, dzh=None, d_prev=d_prev, dtheta={}, delta_state=dc2)


TOY4 = Cell("toy4", 4, _toy_fwd, _toy_bwd, state=(State("h", "R"), State("c"), State("n"), State("m")))


# ----------------------------------------------------------------------------- GRU with its b_hn


def _gru_fwd(theta, zx, zh, prev, noise):
    (h,) = prev
    xr, xz, xn = jnp.split(zx, 3, axis=-1)  # x W + b: b holds b_ir + b_hr, b_iz + b_hz, b_in
    hr, hz, hn = jnp.split(zh, 3, axis=-1)  # h U, no bias
    r, z = _sig(xr + hr), _sig(xz + hz)
    hb = hn + theta["b_hn"][None]  # the recurrent bias inside r * (...): not foldable into b
    n = jnp.tanh(xn + r * hb)
    return ((1 - z) * n + z * h,), (r, z, n, hb, h)


def _gru_bwd(theta, res, prev, new, g_y, d_new, noise):
    r, z, n, hb, h = res
    gh = g_y + d_new[0]
    dn = gh * (1 - z) * (1 - n * n)  # h' = (1 - z) n + z h, n = tanh(a_n)
    dz = gh * (h - n) * z * (1 - z)
    dr = dn * hb * r * (1 - r)
    dzx = jnp.concatenate([dr, dz, dn], axis=-1)
    dzh = jnp.concatenate([dr, dz, dn * r], axis=-1)  # the recurrent product's gate n sees r * (...)
    return StateGrads(dzx=dzx, dzh=dzh, d_prev=(gh * z,), dtheta={"b_hn": jnp.sum(dn * r, axis=0)})


GRU = Cell("gru", 3, _gru_fwd, _gru_bwd, state=(State("h", "R"),))


def params_for(cell, key, D, H, *, heads=None, dtype=jnp.float64, scale=1.0):
    theta = {"b_hn": 0.3 * jnp.ones((H,), dtype)} if cell is GRU else {}
    p = init_params(key, cell, D, H, theta=theta, heads=heads, dtype=dtype)
    kb = jax.random.fold_in(key, 7)
    return dataclasses.replace(
        p, W=scale * p.W, U=scale * p.U, b=0.1 * jax.random.normal(kb, p.b.shape, dtype)
    )
