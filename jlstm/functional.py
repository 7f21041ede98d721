"""The public functions for every cell: ``init``, ``lstm``, ``cell`` and ``lstm_trace`` read the kind of
cell from the parameters (``LSTMParams``: the source's LSTM; ``CellParams``: a variant) and run it through
the core's machinery with its hand-written backward."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jlstm.cells import dropout as _dropout
from jlstm.cells import zoneout as _zoneout
from jlstm.cells.family import family_cell
from jlstm.cells.init import check_cell_params, init_cell, make_spec
from jlstm.cells.spec import CellParams, CellSpec, num_gates
from jlstm.core import checks as _checks
from jlstm.core import contract as _contract
from jlstm.core import params as _params
from jlstm.core import prepare as _prep
from jlstm.core import sequence as _seq
from jlstm.core.cell import cell as _vanilla_cell
from jlstm.core.cell import state_dtype
from jlstm.core.interface import Cell
from jlstm.core.params import LSTMParams, LSTMState

Params = LSTMParams | CellParams


def init(key: jax.Array, input_size: int, hidden_size: int, *, forget_bias: float = 1.0,
         dtype: jnp.dtype = jnp.float32, peephole: bool = False, proj_size: int | None = None,
         layer_norm: bool = False, cell_clip: float | None = None, proj_clip: float | None = None,
         variant: str | None = None) -> Params:  # fmt: skip
    """Initialise an LSTM layer, the source's cell or a variant.

    Args:
      key: a PRNG key.
      input_size: D.
      hidden_size: H, the width of the cell state.
      forget_bias: the initial bias of the forget gate (1.0, Gers et al. 2000).
      dtype: the parameters' dtype.
      peephole: diagonal peepholes ``p_i, p_f, p_o [H]`` (Gers & Schmidhuber 2000; o reads the new c).
      proj_size: R < H, a projection ``P [H, R]`` of the output (LSTMP, ``torch.nn.LSTM(proj_size)``).
      layer_norm: Ba et al.'s layer-normalised LSTM (haste ``LayerNormLSTM``).
      cell_clip: the bound of the carried cell state (TF1 ``LSTMCell(cell_clip)``).
      proj_clip: the bound of the projection (TF1 ``LSTMCell(proj_clip)``); needs ``proj_size``.
      variant: one of Greff et al.'s ``"NIG", "NFG", "NOG", "NIAF", "NOAF", "CIFG"``, or None.

    Returns:
      With no option set, ``LSTMParams(W [D, 4H], U [H, 4H], b [4H])`` exactly as before. Otherwise a
      ``CellParams`` (``W [D, GH]``, ``U [R, GH]``, ``b [GH]``, ``extra``, ``spec``) that ``lstm`` runs.

    Example:
      >>> params = jlstm.init(jax.random.key(0), 3, 8, peephole=True, proj_size=4)
      >>> params.W.shape, params.U.shape, params.extra["P"].shape
      ((3, 32), (4, 32), (8, 4))
    """
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"init: {name} must be a positive int; got {value!r}.")
    spec = make_spec(hidden_size, peephole=peephole, proj_size=proj_size, layer_norm=layer_norm,
                     cell_clip=cell_clip, proj_clip=proj_clip, variant=variant, where="init")  # fmt: skip
    if spec == CellSpec():
        return _params.init(key, input_size, hidden_size, forget_bias=forget_bias, dtype=dtype)
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"init: dtype must be a floating dtype; got {dtype}.")
    return init_cell(key, input_size, hidden_size, spec, forget_bias=forget_bias, dtype=dtype)


def as_cell_params(params, where: str) -> CellParams:
    """``CellParams`` as they are (checked), ``LSTMParams`` as the variant-free ``CellParams``."""
    if isinstance(params, CellParams):
        for name in ("W", "U", "b"):
            _checks._floating(f"params.{name}", getattr(params, name), where)
        check_cell_params(params, where)
        return params
    W, U, b = _checks.check_params(params, where)
    return CellParams(W, U, b, {}, CellSpec())


def _cell_of(spec, rates, where: str) -> Cell:
    if isinstance(spec, CellSpec):
        return family_cell(spec, rates)
    if rates is not None:
        raise ValueError(
            f"{where}: zoneout is built into jlstm's own cells; the {spec.name!r} cell has none."
        )
    return spec


def _weights(cp: CellParams, mU=None) -> _seq.Weights:
    theta = dict(cp.extra)
    # DropConnect: U's mask sits outside the custom_vjp, so autodiff carries dU through it.
    U = cp.U if mU is None else cp.U * mU.astype(cp.U.dtype)
    if not _cell_of(cp.spec, None, "").bias_in_projection:
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
    masks = (
        (None,) * 3 if rd is None else _dropout.draw(k_drop, rd, p.B, G, cp.input_size, R, cp.U.shape, dtype)
    )
    return (noise, *masks)


def lstm(
    params: Params,
    xs: jax.Array,
    carry: LSTMState | tuple | None = None,
    *,
    lengths: jax.Array | None = None,
    reverse: bool = False,
    backward: str = "manual",
    remat: int | str | None = None,
    compute_dtype: jnp.dtype | None = None,
    zoneout: float | tuple[float, float] | None = None,
    recurrent_dropout: float | _dropout.RecurrentDropout | None = None,
    key: jax.Array | None = None,
    training: bool | None = None,
) -> tuple[jax.Array, LSTMState]:
    """Run an LSTM layer (the source's cell or any variant) over a sequence.

    The forward is a ``lax.scan`` of the cell's equations after one product ``xs @ W + b`` per chunk of
    steps. With ``backward="manual"`` its gradient is the hand-written back-propagation through time (the
    source's equations, ``jlstm.core.backward``, or the variant's, ``jlstm.cells``) attached with
    ``jax.custom_vjp``; with ``"autodiff"`` JAX differentiates the same forward (the oracle).

    Args:
      params: ``LSTMParams`` or ``CellParams`` from ``jlstm.init``.
      xs: ``[..., T, D]``: any leading batch dims (none too), time second to last.
      carry: the initial ``(h0 [..., R], c0 [..., H])`` (broadcastable to the batch shape); None: zeros.
        R = H, or the projection width.
      lengths: optional integer array with the batch shape of ``xs``: valid steps per sequence (right
        padding). Padded steps output 0 and leave the carry unchanged; the final state is the state at
        each sequence's last valid step (the initial carry for length 0); padding gets zero gradient.
      reverse: run from the end of each sequence (its own last valid step); outputs stay aligned.
      backward: ``"manual"`` (hand-written, default) or ``"autodiff"``.
      remat: None saves every step's residuals for the backward. An int k keeps only the carry entering
        every k-th step and recomputes each chunk of k steps in the backward (memory ``~ T / k + k``
        instead of ``T``, for about one more forward). ``"auto"`` saves every step while the residuals
        (about ``T B (5H + R)`` values) fit in ``jlstm.core.prepare.AUTO_REMAT_BYTES`` (64 MiB), else
        recomputes chunks of about ``sqrt(T)`` steps (at least ``256 / B``). Manual backward only.
      compute_dtype: None computes in ``result_type(xs, *params)``; ``jnp.bfloat16``/``jnp.float16`` run
        the products in 16 bits with float32 accumulation, gates and cell state.
      zoneout: a rate p or ``(rate_c, rate_h)`` (Krueger et al. 2016).
      recurrent_dropout: a rate p (4 per-gate masks on ``h_{t-1}``, per sample, fixed over time, Keras 3)
        or ``jlstm.RecurrentDropout(rate, input_rate, tied, dropconnect)``.
      key: a PRNG key for zoneout's and dropout's masks. The stochastic options train only with a key;
        without one they run in evaluation mode (zoneout's expectation ``p * prev + (1 - p) * new``, no
        dropout).
      training: None (default): training iff ``key`` is given. True without a key is an error when a
        stochastic option is on; False ignores the key.

    Returns:
      ``(hs [..., T, R], LSTMState(h [..., R], c [..., H]))``, differentiable w.r.t. ``params``, ``xs`` and
      ``carry``, with cotangents on ``hs`` and on the final carry.

    Example:
      >>> params = jlstm.init(jax.random.key(0), input_size=3, hidden_size=5)
      >>> hs, (h, c) = jlstm.lstm(params, jnp.ones((8, 20, 3)))   # batch 8, T = 20
      >>> hs.shape, h.shape
      ((8, 20, 5), (8, 5))
    """
    where = "jlstm.lstm"
    rates = _zoneout.check_rates(zoneout, where)
    rd = _dropout.check(recurrent_dropout, where)
    train = _is_training(training, key, rates is not None or rd is not None, where)
    if isinstance(params, tuple) and rates is None and (rd is None or not train):
        return _seq.lstm(params, xs, carry, lengths=lengths, reverse=reverse, backward=backward,
                         remat=remat, compute_dtype=compute_dtype)  # fmt: skip
    _checks.check_backward(backward, where)
    remat = _prep.check_remat(remat, backward, where)
    compute_dtype = _prep.check_compute_dtype(compute_dtype, where)
    cp = as_cell_params(params, where)
    leaves = jax.tree.leaves(cp)
    xs = _checks._floating("xs", xs, where)  # before result_type, which cannot read a list
    dtype = jnp.result_type(xs, *leaves) if compute_dtype is None else compute_dtype
    p = _prep.prepare(xs, carry, lengths, D=cp.input_size, H=cp.hidden_size, R=cp.output_size, dtype=dtype,
                      where=where)  # fmt: skip
    noise, mx, mh, mU = _draw_masks(key, rates, rd, cp, p, dtype) if train else (None,) * 4
    cell = _cell_of(cp.spec, rates, where)
    if isinstance(cp.spec, Cell):  # a user's cell: its outputs checked against the interface
        _contract.check_cell_contract(cell, _weights(cp).theta, B=p.B, H=p.H, R=p.R, dtype=dtype, where=where)
    return _seq.run(cell, _weights(cp, mU), p, reverse=reverse, backward=backward, remat=remat,
                    noise=noise, mx=mx, mh=mh)  # fmt: skip


def cell(params: Params, carry: LSTMState | tuple, x: jax.Array) -> tuple[LSTMState, jax.Array]:
    """One step in evaluation mode, scan-shaped: ``(LSTMState(h, c), h)`` from ``carry = (h [..., R],
    c [..., H])`` and ``x [..., D]``. For ``LSTMParams`` the source's forward equations (see
    ``jlstm.core.cell.cell``); for a variant, one step of ``lstm``."""
    if isinstance(params, tuple):
        return _vanilla_cell(params, carry, x)
    x = _checks._floating("x", x, "jlstm.cell")
    if x.ndim < 1:
        raise ValueError(f"jlstm.cell: x must be [..., D]; got shape {x.shape}.")
    _, state = lstm(params, x[..., None, :], carry)
    return state, state.h


def lstm_trace(
    params: Params,
    xs: jax.Array,
    g_hs: jax.Array,
    carry: LSTMState | tuple | None = None,
    g_final: LSTMState | tuple | None = None,
    *,
    lengths: jax.Array | None = None,
):
    """Run the hand-written backward and return its per-step quantities, to look inside BPTT.

    Args:
      params, xs, carry, lengths: as in ``lstm`` (forward direction, evaluation mode).
      g_hs: ``[..., T, R]`` the loss's gradient w.r.t. ``hs`` (the source's ``Delta_t``).
      g_final: optional cotangents ``(g_h [..., R], g_c [..., H])`` on the final carry.

    Returns:
      ``(dparams, dxs, dcarry0, trace)``: ``trace`` is a ``jlstm.core.backward.Trace`` whose fields
      ``delta_out [..., T, R]`` (dL/d out_t in total), ``delta_state [..., T, H]``, ``delta_gates
      [..., T, GH]`` (of the input pre-activation), ``delta_x [..., T, D]`` and ``Delta_out_prev
      [..., T, R]`` (``Delta out_{t-1}``) are named as in the source.
    """
    if isinstance(params, tuple):
        return _seq.lstm_trace(params, xs, g_hs, carry, g_final, lengths=lengths)
    where = "jlstm.lstm_trace"
    cp = as_cell_params(params, where)
    xs = _checks._floating("xs", xs, where)  # before result_type, which cannot read a list
    dtype = jnp.result_type(xs, *jax.tree.leaves(cp))
    p = _prep.prepare(xs, carry, lengths, D=cp.input_size, H=cp.hidden_size, R=cp.output_size, dtype=dtype,
                      where=where)  # fmt: skip
    if isinstance(cp.spec, Cell):  # a user's cell: its outputs checked against the interface
        _contract.check_cell_contract(
            cp.spec, _weights(cp).theta, B=p.B, H=p.H, R=p.R, dtype=dtype, where=where
        )
    w = _weights(cp)
    (dW, dU, db, dth), dxs, dcarry, tr = _seq.trace(
        _cell_of(cp.spec, None, where), w, p, g_hs, g_final, where=where
    )
    extra = {k: dth[k].astype(v.dtype) for k, v in cp.extra.items()}
    db = dth["b"] if db is None else db
    grads = CellParams(dW.astype(cp.W.dtype), dU.astype(cp.U.dtype), db.astype(cp.b.dtype), extra, cp.spec)
    return grads, dxs, dcarry, tr
