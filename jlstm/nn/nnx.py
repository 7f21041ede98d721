"""jlstm as Flax NNX layers: ``LSTM`` (the ``nnx.RNN`` protocol, so ``nnx.Bidirectional`` takes it) and
``StackedLSTM``. ``LSTM`` holds ``nnx.RNN(nnx.OptimizedLSTMCell)``'s parameters, ``cell.dense_i.kernel [D,
4H]``, ``cell.dense_h.kernel [H, 4H]``, ``cell.dense_h.bias [4H]`` in Flax's gate order (i, f, g, o),
drawn as Flax draws them (lecun normal, orthogonal, zeros), so the Flax LSTM's state loads into it and
back; each call permutes them into jlstm's layout. The carry is Flax's ``(c, h)``; the backward pass is
jlstm's hand-written one.

Example:
  >>> from flax import nnx
  >>> from jlstm.nn.nnx import LSTM
  >>> layer = LSTM(8, 32, rngs=nnx.Rngs(0))
  >>> ys = layer(jnp.ones((4, 10, 8)), seq_lengths=jnp.array([10, 7, 3, 0]))   # [4, 10, 32]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn.recurrent import flip_sequences

from jlstm.nn import _cell
from jlstm.nn import _common as C
from jlstm.nn import _layout as L
from jlstm.nn import _nnx_conventions as NC

_WHERE = "jlstm.nn.nnx.LSTM"


def _pick(arg, attr):
    return attr if arg is None else arg


class LSTM(nnx.Module):
    """An LSTM layer over whole sequences, computed by ``jlstm.lstm`` (hand-written backward).

    Args:
      in_features: D. hidden_features: H.
      kernel_init, recurrent_kernel_init, bias_init: as ``nnx.OptimizedLSTMCell``'s (lecun normal on
        ``dense_i.kernel``, orthogonal on ``dense_h.kernel``, zeros); a variant's own parameters start
        as ``jlstm.init`` draws them.
      peephole, proj_size, layer_norm, cell_clip, proj_clip, variant: the cell (``jlstm.init``);
        ``variant`` may also be a user's ``jlstm.Cell``, with ``theta`` its own initial parameters.
      zoneout: a rate or ``(rate_c, rate_h)``. recurrent_dropout: a rate on ``h`` (one mask per sequence
        per gate) or a ``jlstm.RecurrentDropout``. dropout_rate: dropout on ``x`` (one mask per sequence).
        These draw from ``rngs``' 'dropout' stream unless ``deterministic`` (``model.eval()``).
      time_major, return_carry, reverse, keep_order: defaults of the call's arguments, as ``nnx.RNN``.
      backward: ``"manual"`` or ``"autodiff"``. remat: ``jlstm.lstm``'s remat.
      dtype: the compute dtype (``jlstm.lstm``'s ``compute_dtype``); None: promote inputs and params.
      param_dtype: the parameters' dtype.
      rngs: ``nnx.Rngs``; 'params' initialises, 'dropout' (or 'default') feeds the stochastic options.

    Parameters: ``cell``, an ``nnx.Dict`` of ``nnx.Param``s with ``nnx.OptimizedLSTMCell``'s names
    (``dense_i``, ``dense_h``) and a variant's own (``peephole_i``, ``projection.kernel``,
    ``layer_norm_x.scale``, ...); ``.params`` gives them in jlstm's layout as
    ``jlstm.LSTMParams``/``CellParams``.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        kernel_init=NC.KERNEL_INIT,
        recurrent_kernel_init=NC.RECURRENT_KERNEL_INIT,
        bias_init=NC.BIAS_INIT,
        peephole=False,
        proj_size=None,
        layer_norm=False,
        cell_clip=None,
        proj_clip=None,
        variant=None,
        theta=None,
        zoneout=None,
        recurrent_dropout=None,
        dropout_rate: float = 0.0,
        deterministic: bool = False,
        time_major: bool = False,
        return_carry: bool = False,
        reverse: bool = False,
        keep_order: bool = False,
        backward: str = "manual",
        remat=None,
        dtype=None,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        options = C.init_options(
            peephole=peephole,
            proj_size=proj_size,
            layer_norm=layer_norm,
            cell_clip=cell_clip,
            proj_clip=proj_clip,
            variant=variant,
        )
        _cell.check(_WHERE, options, theta)
        # nnx.OptimizedLSTMCell's keys, in its order: dense_i's kernel, dense_h's kernel and bias.
        keys = iter([rngs.params() for _ in range(3)])
        arrays, self.spec = _cell.jlstm_arrays(
            rngs.params() if options else jax.random.key(0),  # only a variant's own parameters are kept
            in_features,
            hidden_features,
            dtype=param_dtype,
            options=options,
            theta=theta,
        )
        inits = {"W": kernel_init, "U": recurrent_kernel_init, "b": bias_init}
        self.cell = NC.to_nnx(_cell.framework_init(L.NNX, arrays, self.spec, inits, keys, param_dtype))
        self.param_names = tuple(arrays)
        self.in_features, self.hidden_features = in_features, hidden_features
        self.zoneout, self.recurrent_dropout, self.dropout_rate = zoneout, recurrent_dropout, dropout_rate
        self.deterministic = deterministic
        self.time_major, self.return_carry = time_major, return_carry
        self.reverse, self.keep_order = reverse, keep_order
        self.backward, self.remat, self.dtype = backward, remat, dtype
        self.rngs = NC.stream(rngs, self.stochastic)

    @property
    def params(self):
        """The functional parameters (``jlstm.LSTMParams`` or ``jlstm.CellParams``, jlstm's layout)."""
        arrays = L.to_jlstm(NC.from_nnx(self.cell), self.spec, L.NNX, self.param_names)
        return C.from_arrays(arrays, self.spec)

    @property
    def stochastic(self) -> bool:
        """Whether the layer draws masks in training."""
        return C.stochastic(self.zoneout, C.recurrent_dropout(self.recurrent_dropout, self.dropout_rate))

    def lstm_options(self, key=None) -> dict:
        """``jlstm.lstm``'s keyword arguments for this layer; ``key`` None runs evaluation mode."""
        return C.lstm_kwargs(
            backward=self.backward,
            remat=self.remat,
            compute_dtype=self.dtype,
            zoneout=self.zoneout,
            rdropout=C.recurrent_dropout(self.recurrent_dropout, self.dropout_rate),
            key=key,
        )

    def __call__(
        self,
        inputs: jax.Array,
        *,
        initial_carry=None,
        seq_lengths=None,
        return_carry=None,
        time_major=None,
        reverse=None,
        keep_order=None,
        deterministic=None,
        rngs=None,
    ):
        """Run over ``inputs [*batch, T, D]`` (``[T, *batch, D]`` when ``time_major``).

        Args:
          initial_carry: ``(c, h)``, each ``[*batch, H]`` (h ``[*batch, proj_size]``); None: zeros.
          seq_lengths: ``[*batch]`` valid steps per sequence (right padding): padded outputs are zero,
            the carry is the one at each sequence's last step (``initial_carry`` for length 0).
          reverse: run from each sequence's end; outputs come back reversed within each sequence, as
            from ``nnx.RNN``, unless ``keep_order`` (then aligned with the inputs).
          deterministic: overrides the attribute (``model.eval()`` sets it).
          rngs: an ``nnx.Rngs`` whose 'dropout' stream replaces the layer's; a bare stream (the carry
            stream ``nnx.Bidirectional`` passes) is ignored.

        Returns:
          ``outputs [*batch, T, H]``, or ``((c, h), outputs)`` with ``return_carry``.
        """
        key = None
        if self.stochastic and not _pick(deterministic, self.deterministic):
            key = NC.dropout_key(_WHERE, self.rngs, rngs)
        kw = self.lstm_options(key)
        carry, hs = C.flax_call(
            _WHERE,
            self.params,
            inputs,
            initial_carry=initial_carry,
            seq_lengths=seq_lengths,
            time_major=_pick(time_major, self.time_major),
            reverse=_pick(reverse, self.reverse),
            keep_order=_pick(keep_order, self.keep_order),
            flip=flip_sequences,
            **kw,
        )
        return (carry, hs) if _pick(return_carry, self.return_carry) else hs

    def step(self, carry, x: jax.Array):
        """One evaluation-mode step for decoders, as a Flax cell: ``((c, h), x [*batch, D]) -> ((c, h), h)``
        (``h`` has ``proj_size`` features with a projection)."""
        return C.flax_step(_WHERE + ".step", self.params, carry, x)

    def initialize_carry(self, input_shape: tuple, rngs=None):
        """Zeros ``(c, h)`` for inputs of shape ``[*batch, D]`` (as ``nnx.LSTMCell.initialize_carry``)."""
        params = self.params
        D, H, R = C.sizes(params)
        batch = tuple(input_shape[:-1])
        dt = params.W.dtype
        return jnp.zeros(batch + (H,), dt), jnp.zeros(batch + (R,), dt)


class StackedLSTM(nnx.Module):
    """Layers of LSTMs (``jlstm.stacked_lstm``), optionally bidirectional.

    Args:
      in_features, hidden_features: D and H. num_layers: the number of layers.
      bidirectional: each layer a forward and a backward LSTM, outputs concatenated (2H).
      dropout_rate: dropout **between layers** (none after the last), from the 'dropout' stream.
      deterministic, time_major, return_carry, rngs: as ``LSTM``.
      **layer_options: every layer's ``LSTM`` options (the initialisers, the cell options, zoneout,
        recurrent_dropout, backward, remat, dtype, param_dtype).

    Call: ``(inputs, *, initial_carry=None, seq_lengths=None, return_carry=None, time_major=None,
    deterministic=None, rngs=None)``; carries are one ``(c, h)`` per layer (a ``((c, h), (c, h))`` pair
    per bidirectional layer). ``.params`` is the list ``jlstm.stacked_lstm`` takes.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        num_layers: int,
        *,
        bidirectional=False,
        dropout_rate: float = 0.0,
        deterministic: bool = False,
        time_major: bool = False,
        return_carry: bool = False,
        rngs: nnx.Rngs,
        **layer_options,
    ):
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(
                f"jlstm.nn.nnx.StackedLSTM: num_layers must be a positive int; got {num_layers!r}."
            )
        n_dir = 2 if bidirectional else 1
        width = (layer_options.get("proj_size") or hidden_features) * n_dir

        def make(n):
            return LSTM(in_features if n == 0 else width, hidden_features, rngs=rngs, **layer_options)

        self.forward_layers = nnx.List([make(n) for n in range(num_layers)])
        self.backward_layers = nnx.List([make(n) for n in range(num_layers)] if bidirectional else [])
        self.bidirectional, self.dropout_rate, self.deterministic = bidirectional, dropout_rate, deterministic
        self.time_major, self.return_carry = time_major, return_carry
        self.rngs = NC.stream(rngs, dropout_rate > 0 or self.forward_layers[0].stochastic)

    @property
    def params(self) -> list:
        """The functional parameters: the list ``jlstm.stacked_lstm`` takes (pairs when bidirectional)."""
        fwd = [layer.params for layer in self.forward_layers]
        return list(zip(fwd, [layer.params for layer in self.backward_layers])) if self.bidirectional else fwd

    def __call__(
        self,
        inputs,
        *,
        initial_carry=None,
        seq_lengths=None,
        return_carry=None,
        time_major=None,
        deterministic=None,
        rngs=None,
    ):
        """Run the stack over ``inputs [*batch, T, D]`` (``[T, *batch, D]`` when ``time_major``); carries in
        Flax's ``(c, h)`` order, one per layer (pairs when bidirectional), as ``nnx.RNN`` returns them."""
        where = "jlstm.nn.nnx.StackedLSTM"
        first = self.forward_layers[0]
        key = None
        if (self.dropout_rate > 0 or first.stochastic) and not _pick(deterministic, self.deterministic):
            key = NC.dropout_key(where, self.rngs, rngs)
        tm = _pick(time_major, self.time_major)
        x = jnp.moveaxis(inputs, 0, -2) if tm else inputs
        hs, finals = C.stacked_call(
            where,
            self.params,
            x,
            carries=initial_carry,
            lengths=seq_lengths,
            bidirectional=self.bidirectional,
            order=("c", "h"),
            dropout=self.dropout_rate if key is not None else 0.0,
            key=key,
            **first.lstm_options(),
        )
        hs = jnp.moveaxis(hs, -2, 0) if tm else hs
        return (finals, hs) if _pick(return_carry, self.return_carry) else hs
