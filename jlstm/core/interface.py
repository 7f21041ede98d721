"""The pointwise cell interface: what a cell writes, and what the sequence machinery does for it.

A cell of the LSTM family is two pointwise functions over one step. The machinery
(``jlstm.core.machinery``) does everything else: the input projection ``zx = xs @ W (+ b)`` as one
product per chunk of steps, the forward ``lax.scan`` with ``zh = h_{t-1} @ U`` inside it, the reverse
scan with ``Delta out_{t-1} = U^T . dzh_t``, the contractions ``dW, dU, db, dxs`` over all steps,
lengths, reverse, remat, low precision, stacks, TBPTT and sharding.

Per step t, with ``G`` gate blocks of width ``H`` and a recurrent width ``R`` (``H``, or the projection
width)::

    forward(theta, zx [B, GH], zh [B, GH], h_prev [B, R], c_prev [B, H], noise)
        -> (h [B, R], c [B, H], res)          # h is both the output y_t and the carried h_t
    backward(theta, res, c_prev [B, H], c [B, H], g_h [B, R], dh [B, R], dc [B, H], noise)
        -> CellGrads

``g_h`` is the loss's gradient on the output ``y_t`` (the source's ``Delta_t``), ``dh`` the gradient
reaching the carried ``h_t`` from step t+1 (``Delta out_t``) and ``dc`` the gradient reaching the
carried ``c_t`` from step t+1. ``res`` is whatever the forward chose to save (a pytree of ``[B, ...]``
arrays); ``c`` is the carried cell state the step produced (the machinery keeps it, not the cell).
``noise`` is the step's slice of the per-step noise (zoneout masks) or ``None`` in evaluation mode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax


class CellGrads(NamedTuple):
    """What a cell's backward returns for one step.

    Attributes:
      dzx: ``[B, GH]`` gradient of the input pre-activation ``zx`` (its contractions give ``dW``,
        ``dxs`` and, when the bias is in the projection, ``db``).
      dzh: ``[B, GH]`` gradient of the recurrent pre-activation ``zh``, or ``None`` when it equals
        ``dzx`` (every cell whose pre-activation is ``zx + zh``; saves a copy).
      dh_prev: ``[B, R]`` the *direct* gradient of ``h_{t-1}`` (not through ``U``: zoneout's path), or
        ``None`` for none. The machinery adds ``dzh @ U^T``.
      dc_prev: ``[B, H]`` the gradient of ``c_{t-1}``.
      dtheta: the gradients of the cell's own parameters, summed over the batch, shaped like ``theta``.
      delta_state: ``[B, H]`` the total gradient of the cell state this step (the source's
        ``delta state_t``), reported by ``lstm_trace``.
    """

    dzx: jax.Array
    dzh: jax.Array | None
    dh_prev: jax.Array | None
    dc_prev: jax.Array
    dtheta: Any
    delta_state: jax.Array


class State(NamedTuple):
    """One recurrent state of a cell: its ``name`` and its width, ``multiple`` times ``H`` (``size="H"``)
    or times the output width ``R`` (``size="R"``)."""

    name: str
    size: str = "H"
    multiple: int = 1


class StateGrads(NamedTuple):
    """What the backward of a cell with declared states returns for one step.

    Attributes:
      dzx: ``[B, GH]`` gradient of the input pre-activation ``zx``.
      dzh: ``[B, GH]`` gradient of the recurrent pre-activation ``zh`` (or None when it equals ``dzx``).
      d_prev: the *direct* gradient of every previous state, a tuple in the cell's state order (an
        entry None for none); the machinery adds ``dzh @ U^T`` to the recurrent state's.
      dtheta: the gradients of the cell's own parameters, summed over the batch, shaped like ``theta``.
      delta_state: optional, what ``lstm_trace`` reports as ``delta_state`` (``[B, width]``), or None.
    """

    dzx: jax.Array
    dzh: jax.Array | None
    d_prev: tuple
    dtheta: Any
    delta_state: jax.Array | None = None


class Cell(NamedTuple):
    """A pointwise cell with a hand-written backward.

    Attributes:
      name: for messages and reports.
      num_gates: ``G``, the number of ``H``-wide blocks of the pre-activation (``W [D, GH]``).
      forward: the step's forward (see the module docstring).
      backward: the step's hand-written backward.
      bias_in_projection: ``True`` (default): the machinery adds ``b`` to ``zx`` and computes ``db``
        from ``dzx``. ``False``: ``b`` is passed to the cell inside ``theta["b"]`` and the cell returns
        its gradient (the layer-normalised cell adds ``b`` after normalising ``x @ W``).

      state: None (default): the LSTM family's ``(h, c)`` interface of the module docstring. Or a tuple
        of ``State`` declaring any recurrent state; then (``jlstm.core.state``)::

            forward(theta, zx [B, GH], zh [B, GH], prev, noise) -> (new, res)
            backward(theta, res, prev, new, g_y [B, R], d_new, noise) -> StateGrads

        with ``prev``, ``new`` and ``d_new`` (the gradients reaching the new states from step t+1)
        tuples of ``[B, width]`` arrays in the declared order, and ``g_y`` the loss's gradient on the
        output ``y_t``.
      recurrent: with ``state``, the index of the state multiplied by ``U`` (its width must be R).
      output: with ``state``, the index of the state that is the output ``y_t`` (width R).

    A ``Cell`` is a static argument of jitted functions: build it once (e.g. with ``functools.cache``)
    so that equal cells are the same object and nothing is traced twice.
    """

    name: str
    num_gates: int
    forward: Callable[..., Any]
    backward: Callable[..., Any]
    bias_in_projection: bool = True
    state: tuple[State, ...] | None = None
    recurrent: int = 0
    output: int = 0
