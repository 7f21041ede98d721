"""Variational recurrent dropout (Gal & Ghahramani 2016; Keras 3 ``LSTM(recurrent_dropout=...)``) and
DropConnect on ``U`` (haste's ``dropout``).

Masks sit on the inputs of the products, ``z^g = (x * M^x_g) W_g + (h_{t-1} * M^h_g) U_g + b_g``, one per
sample, fixed over time, with values in {0, 1 / (1 - p)}. Per gate (4 masks, as Keras) by default, or
one tied mask. DropConnect multiplies ``U`` by one mask per call, shared by every step and sample. The
masks are drawn once from the key, outside the scan, and the same arrays enter the forward and the
hand-written backward (``jlstm.core.products``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax


class RecurrentDropout(NamedTuple):
    """Dropout options of ``jlstm.lstm``: ``rate`` on ``h_{t-1}`` before ``h @ U`` (Keras
    ``recurrent_dropout``); ``input_rate`` on ``x`` before ``x @ W`` (Keras ``dropout``); ``tied``: one mask
    for all gates instead of one per gate; ``dropconnect``: the rate of a mask on ``U`` itself."""

    rate: float = 0.0
    input_rate: float = 0.0
    tied: bool = False
    dropconnect: float = 0.0


def check(recurrent_dropout, where: str) -> RecurrentDropout | None:
    if recurrent_dropout is None:
        return None
    rd = recurrent_dropout
    if not isinstance(rd, RecurrentDropout):
        if isinstance(rd, bool) or not isinstance(rd, (int, float)):
            raise ValueError(
                f"{where}: recurrent_dropout must be a rate p or jlstm.RecurrentDropout(...); got {rd!r}."
            )
        rd = RecurrentDropout(rate=float(rd))
    for name in ("rate", "input_rate", "dropconnect"):
        v = getattr(rd, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
            raise ValueError(f"{where}: recurrent_dropout.{name} must lie in [0, 1); got {v!r}.")
    return None if rd.rate == rd.input_rate == rd.dropconnect == 0 else rd


def _mask(key, rate, shape, dtype):
    if rate == 0:
        return None
    return jax.random.bernoulli(key, 1 - rate, shape).astype(dtype) / (1 - rate)


def draw(key, rd: RecurrentDropout, B: int, G: int, D: int, R: int, U_shape, dtype):
    """``(mx [B, G', D], mh [B, G', R], mU [R, GH])`` or None for each, with ``G'`` = 1 if tied else G."""
    kx, kh, ku = jax.random.split(key, 3)
    g = 1 if rd.tied else G
    return (
        _mask(kx, rd.input_rate, (B, g, D), dtype),
        _mask(kh, rd.rate, (B, g, R), dtype),
        _mask(ku, rd.dropconnect, U_shape, dtype),
    )
