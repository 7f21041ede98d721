"""The one door: every public sequence call (``lstm``, ``lstm_trace``, ``cell``, the stacks, TBPTT, the
layers, the checker) is checked, prepared and sent to the engine here.

public call -> ``checked`` (options, parameters, the cell) -> ``prepare`` (xs, the state, lengths) ->
``jlstm.core.sequence.run`` / ``trace`` (the engine) -> the cell's forward and backward.

The parameters say which cell runs: ``LSTMParams`` and ``CellParams`` of the plain spec both run the
source's cell (``jlstm.core.vanilla``, the engine's own choice for it), a variant's spec its family
cell, a user's ``Cell`` itself.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jlstm.cells import dropout as _dropout
from jlstm.cells import zoneout as _zoneout
from jlstm.cells.family import family_cell
from jlstm.cells.init import check_cell_params
from jlstm.cells.spec import CellParams, CellSpec, num_gates
from jlstm.core import checks as _checks
from jlstm.core import contract as _contract
from jlstm.core import prepare as _prep
from jlstm.core import sequence as _seq
from jlstm.core.interface import Cell
from jlstm.core.precision import check_compute_dtype, state_dtype
from jlstm.core.state_contract import check_state_contract
from jlstm.core.vanilla import VANILLA


class Options(NamedTuple):
    """A sequence call's options, as ``jlstm.lstm`` takes them."""

    lengths: jax.Array | None = None
    reverse: bool = False
    backward: str = "manual"
    remat: int | str | None = None
    compute_dtype: jnp.dtype | None = None
    zoneout: float | tuple[float, float] | None = None
    recurrent_dropout: float | _dropout.RecurrentDropout | None = None
    key: jax.Array | None = None
    training: bool | None = None


def as_cell_params(params, where: str) -> CellParams:
    """``CellParams`` as they are (checked), ``LSTMParams`` as the variant-free ``CellParams``."""
    if isinstance(params, CellParams):
        for name in ("W", "U", "b"):
            _checks._floating(f"params.{name}", getattr(params, name), where)
        check_cell_params(params, where)
        return params
    W, U, b = _checks.check_params(params, where)
    return CellParams(W, U, b, {}, CellSpec())


def cell_of(spec, rates, where: str) -> Cell:
    """The cell that runs ``spec``: the source's own for the plain LSTM, else the family's or the user's."""
    if isinstance(spec, CellSpec):
        return VANILLA if spec == CellSpec() and rates is None else family_cell(spec, rates)
    if rates is not None:
        raise ValueError(
            f"{where}: zoneout is built into jlstm's own cells; the {spec.name!r} cell has none."
        )
    return spec


def weights(cp: CellParams, mU=None) -> _seq.Weights:
    theta = dict(cp.extra)
    # DropConnect: U's mask sits outside the custom_vjp, so autodiff carries dU through it.
    U = cp.U if mU is None else cp.U * mU.astype(cp.U.dtype)
    if not cell_of(cp.spec, None, "").bias_in_projection:
        return _seq.Weights(cp.W, U, None, theta | {"b": cp.b})
    return _seq.Weights(cp.W, U, cp.b, theta)


def _is_training(training, key, stochastic: bool, where: str) -> bool:
    if training is None:
        return key is not None
    if training and key is None and stochastic:
        raise ValueError(
            f"{where}: training=True with zoneout or recurrent_dropout needs key= (a PRNG key to draw the "
            "masks); pass key=jax.random.key(...), or training=False for evaluation mode."
        )
    return bool(training) and stochastic


def _draw_masks(key, rates, rd, cp: CellParams, p: _prep.Prepared, dtype):
    """Training masks from one key: zoneout's ``[T, B, ...]`` and dropout's ``(mx, mh, mU)``."""
    k_zone, k_drop = jax.random.split(key)
    H, R, G = cp.hidden_size, cp.output_size, num_gates(cp.spec)
    noise = None if rates is None else _zoneout.draw(k_zone, rates, p.T, p.B, H, R, state_dtype(dtype))
    if rd is None:
        return noise, None, None, None
    return (noise, *_dropout.draw(k_drop, rd, p.B, G, cp.input_size, R, cp.U.shape, dtype))


def _prepared(cp: CellParams, cell: Cell, xs, carry, lengths, compute_dtype, where: str):
    xs = _checks._floating("xs", xs, where)  # before result_type, which cannot read a list
    dtype = jnp.result_type(xs, *jax.tree.leaves(cp)) if compute_dtype is None else compute_dtype
    D, H, R = cp.input_size, cp.hidden_size, cp.output_size
    p = _prep.prepare(xs, carry, lengths, cell=cell, D=D, H=H, R=R, dtype=dtype, where=where)
    if isinstance(cp.spec, Cell):  # a user's cell: its outputs checked against the interface, by name
        check = _contract.check_cell_contract if cp.spec.state is None else check_state_contract
        check(cp.spec, weights(cp).theta, B=p.B, H=p.H, R=p.R, dtype=dtype, where=where)
    return p, dtype


def run(params, xs, carry, opts: Options, where: str):
    """``(ys [..., T, R], final state)`` of any cell: the door of ``jlstm.lstm`` and everything on it."""
    rates = _zoneout.check_rates(opts.zoneout, where)
    rd = _dropout.check(opts.recurrent_dropout, where)
    train = _is_training(opts.training, opts.key, rates is not None or rd is not None, where)
    _checks.check_backward(opts.backward, where)
    remat = _prep.check_remat(opts.remat, opts.backward, where)
    compute_dtype = check_compute_dtype(opts.compute_dtype, where)
    cp = as_cell_params(params, where)
    cell = cell_of(cp.spec, rates, where)
    if cp.U.ndim == 3 and rd is not None:
        raise ValueError(f"{where}: recurrent_dropout does not apply to block-diagonal (multi-head) U.")
    p, dtype = _prepared(cp, cell, xs, carry, opts.lengths, compute_dtype, where)
    noise, mx, mh, mU = _draw_masks(opts.key, rates, rd, cp, p, dtype) if train else (None,) * 4
    drop = _seq.Dropout(mx, mh)
    return _seq.run(
        cell,
        weights(cp, mU),
        p,
        reverse=opts.reverse,
        backward=opts.backward,
        remat=remat,
        noise=noise,
        drop=drop,
    )


def trace(params, xs, g_hs, carry, g_final, lengths, where: str):
    """``lstm_trace`` of any cell: ``(grads as CellParams, dxs, d_state0, Trace)``."""
    cp = as_cell_params(params, where)
    cell = cell_of(cp.spec, None, where)
    p, _ = _prepared(cp, cell, xs, carry, lengths, None, where)
    g, dxs, d0, tr = _seq.trace(cell, weights(cp), p, g_hs, g_final, where=where)
    extra = {k: g.theta[k].astype(v.dtype) for k, v in cp.extra.items()}
    db = g.theta["b"] if g.b is None else g.b
    grads = CellParams(g.W.astype(cp.W.dtype), g.U.astype(cp.U.dtype), db.astype(cp.b.dtype), extra, cp.spec)
    return grads, dxs, d0, tr
