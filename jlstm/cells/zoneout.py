"""Zoneout (Krueger et al. 2016): each unit keeps its previous value with probability p.

    c_t = d^c * c_{t-1} + (1 - d^c) * c~_t      h_t = d^h * h_{t-1} + (1 - d^h) * h~_t

with masks ``d`` in {0, 1} drawn per step, per sample and per unit (1 = keep the previous value), and
the candidates ``c~``, ``h~`` computed from the un-zoned ``c~`` as the official code does. In evaluation
``d`` is the rate itself (the expectation). Backward: ``delta new = delta out * (1 - d)`` and the direct
path ``delta prev += delta out * d``; the masks are the step's own, the same arrays the forward used.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def zone(prev, new, d):
    """``d * prev + (1 - d) * new``; ``d`` None means no zoneout."""
    return new if d is None else d * prev + (1 - d) * new


def zone_bwd(d_out, d):
    """``(delta new, delta prev)`` of ``zone``."""
    return (d_out, None) if d is None else (d_out * (1 - d), d_out * d)


def check_rates(zoneout, where: str) -> tuple[float, float] | None:
    """``None``, a rate p (both), or ``(rate_c, rate_h)``, each in [0, 1) -> ``(rate_c, rate_h)`` or None."""
    if zoneout is None:
        return None
    rates = tuple(zoneout) if isinstance(zoneout, (tuple, list)) else (zoneout, zoneout)
    if len(rates) != 2 or not all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in rates):
        raise ValueError(f"{where}: zoneout must be a rate p or a pair (rate_c, rate_h); got {zoneout!r}.")
    if not all(0 <= r < 1 for r in rates):
        raise ValueError(f"{where}: zoneout rates must lie in [0, 1); got {zoneout!r}.")
    rates = (float(rates[0]), float(rates[1]))
    return None if rates == (0.0, 0.0) else rates


def draw(key, rates: tuple[float, float], T: int, B: int, H: int, R: int, dtype) -> dict:
    """Training masks ``{"c": [T, B, H], "h": [T, B, R]}``, 1 with probability ``rate`` (a fresh mask for
    every step, sample and unit)."""
    kc, kh = jax.random.split(key)
    return {
        "c": jax.random.bernoulli(kc, rates[0], (T, B, H)).astype(dtype),
        "h": jax.random.bernoulli(kh, rates[1], (T, B, R)).astype(dtype),
    }


def step_masks(noise, rates):
    """The step's ``(d^c, d^h)``: the drawn masks in training, the rates in evaluation, None without."""
    if rates is None:
        return None, None
    if noise is None:
        return tuple(None if r == 0 else jnp.asarray(r) for r in rates)
    return noise["c"], noise["h"]
