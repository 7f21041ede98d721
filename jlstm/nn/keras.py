"""jlstm as Keras 3 layers (JAX backend): ``LSTM`` (``keras.layers.Bidirectional`` takes it) and
``StackedLSTM``. Weights ``W [D, 4H]``, ``U [H, 4H]``, ``b [4H]`` in jlstm's layout and gate order
(a, i, f, o); states ``[h, c]`` as Keras; masks from ``Embedding(mask_zero=True)``/``Masking``; the
backward pass is jlstm's hand-written one. Both layers are registered for ``save``/``load_model``.

Set ``KERAS_BACKEND=jax`` before importing keras.

Example:
  >>> from jlstm.nn.keras import LSTM
  >>> model = keras.Sequential([keras.layers.Embedding(100, 16, mask_zero=True),
  ...                           keras.layers.Bidirectional(LSTM(32)), keras.layers.Dense(1)])
"""

from __future__ import annotations

import jax.numpy as jnp
import keras

import jlstm
from jlstm.nn import _common as C
from jlstm.nn import _keras_conventions as KC


@keras.saving.register_keras_serializable(package="jlstm")
class LSTM(keras.layers.Layer):
    """An LSTM layer over whole sequences, computed by ``jlstm.lstm`` (hand-written backward).

    Args:
      units: H.
      return_sequences: return ``[B, T, H]`` (else the last output ``[B, H]``).
      return_state: also return the final ``h`` and ``c``. go_backwards: read each sequence from its
        end and return the outputs reversed in time, as ``keras.layers.LSTM``.
      dropout: dropout on ``x``; recurrent_dropout: on ``h`` (a rate, one mask per sequence per gate, as
        Keras; or a ``jlstm.RecurrentDropout``); zoneout: a rate or ``(rate_c, rate_h)``. They draw
        from the layer's seed generator when ``training``.
      unit_forget_bias: the forget gate's initial bias is 1 (else 0).
      peephole, proj_size, layer_norm, cell_clip, proj_clip, variant: the cell (``jlstm.init``).
      backward: ``"manual"`` or ``"autodiff"``. remat: ``jlstm.lstm``'s remat. seed: for the
        initialisation and the masks. The compute dtype is the layer's dtype policy's.

    Call: ``(sequences [B, T, D], initial_state=None ([h, c]), mask=None ([B, T], right-padded),
    training=None)``. Weights ``W``, ``U``, ``b`` and the variant's own (``p_i``, ``P``, ...);
    ``.params`` gives them as ``jlstm.LSTMParams``/``CellParams``.
    """

    def __init__(
        self,
        units: int,
        *,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        dropout=0.0,
        recurrent_dropout=0.0,
        zoneout=None,
        unit_forget_bias=True,
        peephole=False,
        proj_size=None,
        layer_norm=False,
        cell_clip=None,
        proj_clip=None,
        variant=None,
        backward="manual",
        remat=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        recurrent_dropout = KC.rdropout_from_config(recurrent_dropout)
        self.units, self.return_sequences, self.return_state = units, return_sequences, return_state
        self.go_backwards, self.stateful = go_backwards, False
        self.dropout, self.recurrent_dropout = dropout, recurrent_dropout
        self.zoneout = tuple(zoneout) if isinstance(zoneout, list) else zoneout
        self.unit_forget_bias, self.backward, self.remat, self.seed = unit_forget_bias, backward, remat, seed
        self.options = C.init_options(
            peephole=peephole,
            proj_size=proj_size,
            layer_norm=layer_norm,
            cell_clip=cell_clip,
            proj_clip=proj_clip,
            variant=variant,
        )
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True
        self.input_spec = keras.InputSpec(ndim=3)
        self.spec = None
        self.param_names: tuple[str, ...] = ()  # set by build

    def build(self, sequences_shape, initial_state_shape=None):
        arrays, self.spec = C.init_arrays(
            KC.key(self.seed_generator),
            int(sequences_shape[-1]),
            self.units,
            forget_bias=1.0 if self.unit_forget_bias else 0.0,
            dtype=self.variable_dtype,
            options=self.options,
        )
        for name, a in arrays.items():
            # autocast=False: jlstm casts to the compute dtype itself and keeps c and the sums in float32.
            var = self.add_weight(
                shape=a.shape,
                initializer=lambda shape, dtype, a=a: jnp.asarray(a, dtype),
                dtype=self.variable_dtype,
                name=name,
                autocast=False,
            )
            setattr(self, name, var)
        self.param_names = tuple(arrays)

    @property
    def params(self):
        """The functional parameters (``jlstm.LSTMParams`` or ``jlstm.CellParams``) of a built layer."""
        return C.from_arrays({n: getattr(self, n).value for n in self.param_names}, self.spec)

    @property
    def stochastic(self) -> bool:
        """Whether the layer draws masks in training."""
        return C.stochastic(self.zoneout, C.recurrent_dropout(self.recurrent_dropout, self.dropout))

    def lstm_options(self, key=None) -> dict:
        """``jlstm.lstm``'s keyword arguments for this layer; ``key`` None runs evaluation mode."""
        rd = C.recurrent_dropout(self.recurrent_dropout, self.dropout)
        return C.lstm_kwargs(
            backward=self.backward,
            remat=self.remat,
            compute_dtype=self.compute_dtype,
            zoneout=self.zoneout,
            rdropout=rd,
            key=key,
        )

    def _sizes(self, D: int):
        return D, self.units, self.options.get("proj_size") or self.units

    def call(self, sequences, initial_state=None, mask=None, training=None):
        """``sequences [batch, T, D]`` -> outputs per ``return_sequences``/``return_state``; ``mask`` must be
        right padding; dropout and zoneout train only when ``training``."""
        where = "jlstm.nn.keras.LSTM"
        params = self.params
        D, H, R = C.sizes(params)
        x = C.check_inputs(
            where, "sequences", sequences, D, size_name="the input size the layer was built for"
        )
        batch = x.shape[:-2]
        carry = None
        if initial_state is not None:
            carry = C.check_carry(where, "initial_state", initial_state, ("h", "c"), batch, H, R)
        kw = self.lstm_options(KC.key(self.seed_generator) if training and self.stochastic else None)
        hs, (h, c) = jlstm.lstm(
            params, x, carry, lengths=KC.lengths(where, mask, batch), reverse=self.go_backwards, **kw
        )
        if self.go_backwards:
            hs = jnp.flip(hs, axis=-2)  # Keras's go_backwards: outputs in reversed time order
        out = hs if self.return_sequences else h
        return (out, h, c) if self.return_state else out

    def step(self, states, x):
        """One evaluation-mode step for decoders, as a Keras cell: ``([h, c], x [B, D]) -> (h, [h, c])``."""
        where = "jlstm.nn.keras.LSTM.step"
        params = self.params
        D, H, R = C.sizes(params)
        x = C.check_inputs(where, "x", x, D, size_name="the input size", min_ndim=1)
        (h, c), y = jlstm.cell(
            params, C.check_carry(where, "states", states, ("h", "c"), x.shape[:-1], H, R), x
        )
        return y, [h, c]

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        B, T, D = sequences_shape
        _, H, R = self._sizes(D)
        out = (B, T, R) if self.return_sequences else (B, R)
        return (out, (B, R), (B, H)) if self.return_state else out

    def compute_mask(self, sequences, mask=None):
        out = mask if self.return_sequences else None
        return [out, None, None] if self.return_state else out

    def get_config(self):
        config = {k: getattr(self, k) for k in KC.LSTM_CONFIG}
        config["recurrent_dropout"] = KC.rdropout_config(self.recurrent_dropout)
        return {**super().get_config(), **config, **{k: self.options.get(k) for k in KC.CELL}}


@keras.saving.register_keras_serializable(package="jlstm")
class StackedLSTM(keras.layers.Layer):
    """Layers of LSTMs (``jlstm.stacked_lstm``), optionally bidirectional.

    Args:
      units: H. num_layers: the number of layers.
      bidirectional: each layer a forward and a backward LSTM, outputs concatenated (2H).
      dropout: dropout **between layers** (none after the last), as ``torch.nn.LSTM``'s and
        ``jlstm.stacked_lstm``'s (not Keras LSTM's input dropout), when ``training``.
      return_sequences: ``[B, T, H]`` (2H) from the top layer, else its final ``h`` (both directions'
        concatenated). return_state: also every layer's final ``h, c`` (forward then backward).
      unit_forget_bias, backward, seed, and the cell options, zoneout, recurrent_dropout, remat: every
        layer's, as ``LSTM``.

    Call: ``(sequences [B, T, D], initial_state=None, mask=None, training=None)``; ``initial_state`` is
    the flat list ``[h, c]`` per layer (per direction), as ``return_state`` returns it.
    """

    def __init__(
        self,
        units: int,
        num_layers: int,
        *,
        bidirectional=False,
        dropout=0.0,
        return_sequences=False,
        return_state=False,
        unit_forget_bias=True,
        backward="manual",
        seed=None,
        **kwargs,
    ):
        layer_options = {k: kwargs.pop(k) for k in (*KC.CELL, *KC.STOCHASTIC) if k in kwargs}
        if "recurrent_dropout" in layer_options:
            layer_options["recurrent_dropout"] = KC.rdropout_from_config(layer_options["recurrent_dropout"])
        super().__init__(**kwargs)
        self.layer_options = layer_options
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(
                f"jlstm.nn.keras.StackedLSTM: num_layers must be a positive int; got {num_layers!r}."
            )
        self.units, self.num_layers = units, num_layers
        self.bidirectional, self.dropout = bidirectional, dropout
        self.return_sequences, self.return_state, self.backward = return_sequences, return_state, backward
        self.unit_forget_bias, self.seed = unit_forget_bias, seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        n_dir = 2 if bidirectional else 1
        self.cells = [
            LSTM(
                units,
                unit_forget_bias=unit_forget_bias,
                seed=None if seed is None else seed + 1 + k,
                backward=backward,
                dtype=self.dtype_policy,
                name=f"layer_{k // n_dir}" + ("_backward" if k % n_dir else ""),
                **layer_options,
            )
            for k in range(num_layers * n_dir)
        ]
        self.supports_masking = True
        self.input_spec = keras.InputSpec(ndim=3)

    def build(self, sequences_shape, initial_state_shape=None):
        B, T, D = sequences_shape
        n_dir = 2 if self.bidirectional else 1
        width = (self.layer_options.get("proj_size") or self.units) * n_dir
        for k, cell in enumerate(self.cells):
            cell.build((B, T, D if k < n_dir else width))

    @property
    def params(self) -> list:
        """The functional parameters: the list ``jlstm.stacked_lstm`` takes (pairs when bidirectional)."""
        ps = [cell.params for cell in self.cells]
        return list(zip(ps[::2], ps[1::2])) if self.bidirectional else ps

    def call(self, sequences, initial_state=None, mask=None, training=None):
        """Run the stack over ``sequences [batch, T, D]``; ``initial_state`` the flat ``[h, c]`` list per
        layer and direction; ``mask`` must be right padding."""
        where = "jlstm.nn.keras.StackedLSTM"
        batch = tuple(sequences.shape[:-2])
        carries = KC.stack_carries(where, initial_state, self.num_layers, self.bidirectional)
        first = self.cells[0]
        key = KC.key(self.seed_generator) if training and (self.dropout > 0 or first.stochastic) else None
        hs, finals = C.stacked_call(
            where,
            self.params,
            sequences,
            carries=carries,
            lengths=KC.lengths(where, mask, batch),
            bidirectional=self.bidirectional,
            order=("h", "c"),
            names=("sequences", "mask", "initial_state"),
            dropout=self.dropout if key is not None else 0.0,
            key=key,
            **first.lstm_options(),
        )
        states = KC.flat_states(finals, self.bidirectional)
        out = hs if self.return_sequences else KC.top_h(finals, self.bidirectional)
        return (out, *states) if self.return_state else out

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        B, T, _ = sequences_shape
        R = self.layer_options.get("proj_size") or self.units
        width = R * (2 if self.bidirectional else 1)
        out = (B, T, width) if self.return_sequences else (B, width)
        n = (2 if self.bidirectional else 1) * self.num_layers
        return (out, *[(B, R), (B, self.units)] * n) if self.return_state else out

    def compute_mask(self, sequences, mask=None):
        out = mask if self.return_sequences else None
        n = (2 if self.bidirectional else 1) * self.num_layers
        return [out] + [None] * (2 * n) if self.return_state else out

    def get_config(self):
        options = {k: KC.rdropout_config(v) for k, v in self.layer_options.items()}
        return {**super().get_config(), **{k: getattr(self, k) for k in KC.STACKED_CONFIG}, **options}
