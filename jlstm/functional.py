"""The public functions for every cell: ``init``, ``lstm``, ``cell`` and ``lstm_trace`` read the kind of
cell from the parameters (``LSTMParams``: the source's LSTM; ``CellParams``: a variant) and run it through
the core's machinery with its hand-written backward."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jlstm import boundary as _door
from jlstm.boundary import as_cell_params
from jlstm.cells import dropout as _dropout
from jlstm.cells.init import init_cell, make_spec
from jlstm.cells.spec import CellParams, CellSpec
from jlstm.core import checks as _checks
from jlstm.core import params as _params
from jlstm.core.params import LSTMParams, LSTMState

__all__ = ["Params", "as_cell_params", "cell", "init", "lstm", "lstm_trace", "rnn"]

Params = LSTMParams | CellParams


def init(
    key: jax.Array,
    input_size: int,
    hidden_size: int,
    *,
    forget_bias: float = 1.0,
    dtype: jnp.dtype = jnp.float32,
    peephole: bool = False,
    proj_size: int | None = None,
    layer_norm: bool = False,
    cell_clip: float | None = None,
    proj_clip: float | None = None,
    variant: str | None = None,
) -> Params:
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
    spec = make_spec(
        hidden_size,
        peephole=peephole,
        proj_size=proj_size,
        layer_norm=layer_norm,
        cell_clip=cell_clip,
        proj_clip=proj_clip,
        variant=variant,
        where="init",
    )
    if spec == CellSpec():
        return _params.init(key, input_size, hidden_size, forget_bias=forget_bias, dtype=dtype)
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"init: dtype must be a floating dtype; got {dtype}.")
    return init_cell(key, input_size, hidden_size, spec, forget_bias=forget_bias, dtype=dtype)


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
    opts = _door.Options(
        lengths, reverse, backward, remat, compute_dtype, zoneout, recurrent_dropout, key, training
    )
    return _door.run(params, xs, carry, opts, "jlstm.lstm")


def cell(params: Params, carry: LSTMState | tuple, x: jax.Array) -> tuple[LSTMState, jax.Array]:
    """One step in evaluation mode, scan-shaped: ``(state, y)`` from ``carry`` (for the LSTM family
    ``(h [..., R], c [..., H])``, returning ``(LSTMState(h, c), h)``) and ``x [..., D]``: one step of
    ``lstm``, through the same door."""
    where = "jlstm.cell"
    x = _checks._floating("x", x, where)
    D = params.W.shape[0] if hasattr(params, "W") and getattr(params.W, "ndim", 0) == 2 else None
    if x.ndim < 1 or (D is not None and x.shape[-1] != D):
        want = "[..., D]" if D is None else f"[..., D] with D = {D} from params.W"
        raise ValueError(f"{where}: x must be {want}; got shape {x.shape}.")
    if carry is None:
        raise TypeError(f"{where}: carry must be the cell's state, e.g. jlstm.LSTMState(h, c); got None.")
    ys, state = _door.run(params, x[..., None, :], carry, _door.Options(), where)
    return state, ys[..., 0, :]


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
    grads, dxs, d0, tr = _door.trace(params, xs, g_hs, carry, g_final, lengths, "jlstm.lstm_trace")
    if not isinstance(params, CellParams):  # the source's LSTM: its gradients as LSTMParams
        grads = LSTMParams(grads.W, grads.U, grads.b)
    return grads, dxs, d0, tr


def rnn(params: Params, xs: jax.Array, carry=None, **options):
    """Run any cell over a sequence: ``(ys [..., T, R], state)``, the state the cell's own NamedTuple
    (``LSTMState(h, c)`` for the LSTM family; for a cell that declares its states, their names).

    The same door and engine as ``lstm``, with the same keyword options (``lengths``, ``reverse``,
    ``backward``, ``remat``, ``compute_dtype``, ``zoneout``, ``recurrent_dropout``, ``key``,
    ``training``); ``carry`` is the cell's state (each ``[..., width]``) or None for zeros.

    Example:
      >>> ys, (h,) = jlstm.rnn(elman_params, xs)   # a one-state cell: its state is (h,)
    """
    unknown = sorted(set(options) - set(_door.Options._fields))
    if unknown:
        raise TypeError(f"jlstm.rnn: unknown option {unknown}; it takes {list(_door.Options._fields)}.")
    return _door.run(params, xs, carry, _door.Options(**options), "jlstm.rnn")
