"""``jlstm.nn.keras.StackedLSTM``: layers of ``jlstm.nn.keras.LSTM`` run by ``jlstm.stacked_lstm``."""

from __future__ import annotations

import keras

from jlstm.nn import _common as C
from jlstm.nn import _keras_conventions as KC
from jlstm.nn._keras_lstm import LSTM


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
      unit_forget_bias, backward, seed, and the weights' arguments (use_bias, the initialisers,
        regularizers and constraints), the cell options (a user's ``jlstm.Cell`` too, with ``theta``),
        zoneout, recurrent_dropout, remat: every layer's, as ``LSTM``.

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
        passed = (*KC.CELL, *KC.STOCHASTIC, *KC.WEIGHTS, *KC.REFUSED)  # LSTM refuses what it must
        layer_options = {k: kwargs.pop(k) for k in passed if k in kwargs}
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
        if "variant" in options:
            options["variant"] = KC.cell_config(options["variant"])
        if "theta" in options:
            options["theta"] = KC.theta_config(options["theta"])
        for k in set(options) & set(KC.WEIGHT_OBJECTS):
            options[k] = keras.saving.serialize_keras_object(options[k])
        return {**super().get_config(), **{k: getattr(self, k) for k in KC.STACKED_CONFIG}, **options}
