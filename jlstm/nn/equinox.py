"""jlstm as Equinox modules: ``LSTM`` and ``StackedLSTM``. ``LSTM`` holds ``eqx.nn.LSTMCell``'s fields,
``weight_ih [4H, D]``, ``weight_hh [4H, H]``, ``bias [4H]`` in its gate order (i, f, g, o), drawn as it
draws them (uniform in ``+-1/sqrt(H)``), plus a variant's own parameters under ``extra``; each call
permutes them into jlstm's layout. The state is ``(h, c)``, as ``eqx.nn.LSTMCell``; the backward pass is
jlstm's hand-written one.

A call takes one example ``xs [T, D]`` (batch it with ``jax.vmap``, Equinox's idiom) and also accepts
leading batch axes ``xs [..., T, D]`` directly.

Example:
  >>> from jlstm.nn.equinox import LSTM
  >>> layer = LSTM(8, 32, key=jax.random.key(0))
  >>> hs, (h, c) = jax.vmap(layer)(xs, length=lengths)          # xs [B, T, 8], lengths [B]
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

import jlstm
from jlstm.nn import _cell
from jlstm.nn import _common as C
from jlstm.nn import _layout as L


def _pick(arg, attr):
    return attr if arg is None else arg


def _train_key(where: str, needed: bool, inference: bool, key):
    """The key the stochastic options draw from, or None in inference mode."""
    if not needed or inference:
        return None
    if key is None:
        raise ValueError(
            f"{where}: zoneout or dropout in training mode needs key=...: pass a PRNG key to the call "
            "(under jax.vmap, one per example: key=jax.random.split(key, batch)), or evaluate with "
            "inference=True (eqx.nn.inference_mode(model))."
        )
    return key


class LSTM(eqx.Module):
    """An LSTM layer over whole sequences, computed by ``jlstm.lstm`` (hand-written backward).

    Args:
      input_size: D. hidden_size: H. key: a PRNG key for the initialisation, used as
        ``eqx.nn.LSTMCell(input_size, hidden_size, use_bias, dtype, key=key)`` uses it (the same key
        gives the same weights); a variant's own parameters start as ``jlstm.init`` draws them.
      use_bias: as ``eqx.nn.LSTMCell`` (False: no ``bias``, a zero bias).
      peephole, proj_size, layer_norm, cell_clip, proj_clip, variant: the cell (``jlstm.init``);
        ``variant`` may also be a user's ``jlstm.Cell``, with ``theta`` its own initial parameters.
      zoneout: a rate or ``(rate_c, rate_h)``. recurrent_dropout: a rate on ``h`` (one mask per sequence
        per gate) or a ``jlstm.RecurrentDropout``. dropout: dropout on ``x`` (one mask per sequence).
        They draw from the call's ``key`` unless ``inference`` (``eqx.nn.inference_mode``).
      reverse: run each sequence from its end (outputs stay aligned with the inputs).
      backward: ``"manual"`` or ``"autodiff"``. remat: ``jlstm.lstm``'s remat.
      compute_dtype: ``jlstm.lstm``'s compute dtype. dtype: the parameters' dtype (None: Equinox's
        default floating dtype, float64 under ``jax_enable_x64``).

    Fields: ``weight_ih``, ``weight_hh``, ``bias`` (None without a bias), ``extra`` (a variant's own
    parameters by name: ``peephole_i``, ``weight_hr [R, H]``, ``layer_norm_x``, ..., or a user cell's
    ``theta``); ``.params`` gives them in jlstm's layout as ``jlstm.LSTMParams``/``CellParams``.
    """

    weight_ih: jax.Array
    weight_hh: jax.Array
    bias: jax.Array | None
    extra: dict
    inference: bool
    spec: Any = eqx.field(static=True)
    param_names: tuple = eqx.field(static=True)
    input_size: int = eqx.field(static=True)
    hidden_size: int = eqx.field(static=True)
    zoneout: Any = eqx.field(static=True)
    recurrent_dropout: Any = eqx.field(static=True)
    dropout: float = eqx.field(static=True)
    reverse: bool = eqx.field(static=True)
    backward: str = eqx.field(static=True)
    remat: int | None = eqx.field(static=True)
    compute_dtype: Any = eqx.field(static=True)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        use_bias: bool = True,
        peephole=False,
        proj_size=None,
        layer_norm=False,
        cell_clip=None,
        proj_clip=None,
        variant=None,
        theta=None,
        zoneout=None,
        recurrent_dropout=None,
        dropout: float = 0.0,
        inference: bool = False,
        reverse: bool = False,
        backward: str = "manual",
        remat=None,
        compute_dtype=None,
        dtype=None,
        key: jax.Array,
    ):
        options = C.init_options(
            peephole=peephole,
            proj_size=proj_size,
            layer_norm=layer_norm,
            cell_clip=cell_clip,
            proj_clip=proj_clip,
            variant=variant,
        )
        _cell.check("jlstm.nn.equinox.LSTM", options, theta)
        dtype = jnp.result_type(float) if dtype is None else dtype  # Equinox's default floating dtype
        k_extra = jax.random.fold_in(key, 3)  # the key's split in 3 is eqx.nn.LSTMCell's
        kw = dict(dtype=dtype, options=options, theta=theta)
        arrays, self.spec = _cell.jlstm_arrays(k_extra, input_size, hidden_size, **kw)
        lim = math.sqrt(1 / hidden_size)  # eqx.nn.LSTMCell's bound, for all three

        def uniform(k, shape, dtype):
            return jax.random.uniform(k, shape, dtype, minval=-lim, maxval=lim)

        inits = {"W": uniform, "U": uniform, "b": uniform}
        keys = iter(jax.random.split(key, 3))
        tree = _cell.framework_init(L.EQUINOX, arrays, self.spec, inits, keys, dtype)
        self.weight_ih, self.weight_hh, bias = tree.pop("weight_ih"), tree.pop("weight_hh"), tree.pop("bias")
        self.bias = bias if use_bias else None
        self.extra = tree
        self.param_names = tuple(n for n in arrays if use_bias or n != "b")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.zoneout, self.recurrent_dropout, self.dropout = zoneout, recurrent_dropout, dropout
        self.inference, self.reverse = inference, reverse
        self.backward, self.remat, self.compute_dtype = backward, remat, compute_dtype

    @property
    def params(self):
        """The functional parameters (``jlstm.LSTMParams`` or ``jlstm.CellParams``, jlstm's layout)."""
        tree = {"weight_ih": self.weight_ih, "weight_hh": self.weight_hh, "bias": self.bias, **self.extra}
        return C.from_arrays(L.to_jlstm(tree, self.spec, L.EQUINOX, self.param_names), self.spec)

    @property
    def stochastic(self) -> bool:
        """Whether the layer draws masks in training."""
        return C.stochastic(self.zoneout, C.recurrent_dropout(self.recurrent_dropout, self.dropout))

    def lstm_options(self, key=None) -> dict:
        """``jlstm.lstm``'s keyword arguments for this layer; ``key`` None runs evaluation mode."""
        return C.lstm_kwargs(
            backward=self.backward,
            remat=self.remat,
            compute_dtype=self.compute_dtype,
            zoneout=self.zoneout,
            rdropout=C.recurrent_dropout(self.recurrent_dropout, self.dropout),
            key=key,
        )

    def __call__(self, xs: jax.Array, state=None, *, length=None, key=None, inference=None):
        """Run over ``xs [T, D]`` (or ``[..., T, D]``).

        Args:
          state: the initial ``(h, c)``, each ``[H]`` (``[..., H]``; h ``[proj_size]``); None: zeros.
          length: the number of valid steps (an int, or ``[...]`` with batch axes; right padding):
            padded outputs are zero, the state is the one at the last valid step (``state`` for 0).
          key: a PRNG key for zoneout/dropout in training (one per example under ``jax.vmap``).
          inference: overrides the field (``eqx.nn.inference_mode`` sets it).

        Returns:
          ``(hs [..., T, H], jlstm.LSTMState(h, c))``.
        """
        where = "jlstm.nn.equinox.LSTM"
        params = self.params
        D, H, R = C.sizes(params)
        xs = C.check_inputs(where, "xs", xs, D, size_name="input_size")
        batch = xs.shape[:-2]
        if length is not None:
            length = C.check_lengths(where, "length", jnp.asarray(length), batch)
        carry = None if state is None else C.check_carry(where, "state", state, ("h", "c"), batch, H, R)
        key = _train_key(where, self.stochastic, _pick(inference, self.inference), key)
        kw = self.lstm_options(key)
        return jlstm.lstm(params, xs, carry, lengths=length, reverse=self.reverse, **kw)

    def step(self, carry, x: jax.Array):
        """One evaluation-mode step for decoders: ``((h, c), x [..., D]) -> (LSTMState(h, c), h)``."""
        where = "jlstm.nn.equinox.LSTM.step"
        params = self.params
        D, H, R = C.sizes(params)
        x = C.check_inputs(where, "x", x, D, size_name="input_size", min_ndim=1)
        return jlstm.cell(params, C.check_carry(where, "carry", carry, ("h", "c"), x.shape[:-1], H, R), x)


class StackedLSTM(eqx.Module):
    """Layers of LSTMs (``jlstm.stacked_lstm``), optionally bidirectional.

    Args:
      input_size, hidden_size: D and H. num_layers: the number of layers. key: for the initialisation.
      bidirectional: each layer a forward and a backward LSTM, outputs concatenated (2H).
      dropout: dropout **between layers** (none after the last), drawn from the call's ``key``.
      inference: as ``LSTM``.
      **layer_options: every layer's ``LSTM`` options (use_bias, the cell options, zoneout,
        recurrent_dropout, backward, remat, compute_dtype, dtype).

    Call: ``(xs [..., T, D], state=None, *, length=None, key=None, inference=None) -> (hs, states)``;
    ``state``/``states`` hold one ``(h, c)`` per layer (a pair of them per bidirectional layer).
    """

    layers: list
    inference: bool
    bidirectional: bool = eqx.field(static=True)
    dropout: float = eqx.field(static=True)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        *,
        bidirectional=False,
        dropout: float = 0.0,
        inference: bool = False,
        key: jax.Array,
        **layer_options,
    ):
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(
                f"jlstm.nn.equinox.StackedLSTM: num_layers must be a positive int; got {num_layers!r}."
            )
        n_dir = 2 if bidirectional else 1
        keys = jax.random.split(key, (num_layers, 2))
        width = (layer_options.get("proj_size") or hidden_size) * n_dir
        layers = []
        for n in range(num_layers):
            pair = tuple(
                LSTM(input_size if n == 0 else width, hidden_size, key=k, **layer_options)
                for k in keys[n][:n_dir]
            )
            layers.append(pair if bidirectional else pair[0])
        self.layers, self.inference = layers, inference
        self.bidirectional, self.dropout = bidirectional, dropout

    @property
    def params(self) -> list:
        """The functional parameters: the list ``jlstm.stacked_lstm`` takes (pairs when bidirectional)."""
        if self.bidirectional:
            return [(f.params, b.params) for f, b in self.layers]
        return [layer.params for layer in self.layers]

    def __call__(self, xs, state=None, *, length=None, key=None, inference=None):
        """Run the stack over ``xs [T, D]`` (or with leading batch axes); ``state`` one ``(h, c)`` per layer
        (pairs when bidirectional); ``key`` for dropout unless ``inference``."""
        where = "jlstm.nn.equinox.StackedLSTM"
        first = self.layers[0][0] if self.bidirectional else self.layers[0]
        key = _train_key(where, self.dropout > 0 or first.stochastic, _pick(inference, self.inference), key)
        length = None if length is None else jnp.asarray(length)
        return C.stacked_call(
            where,
            self.params,
            xs,
            carries=state,
            lengths=length,
            bidirectional=self.bidirectional,
            order=("h", "c"),
            names=("xs", "length", "state"),
            dropout=self.dropout if key is not None else 0.0,
            key=key,
            **first.lstm_options(),
        )
