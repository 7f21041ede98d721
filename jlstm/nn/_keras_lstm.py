"""``jlstm.nn.keras.LSTM``: a Keras 3 layer (JAX backend) over ``jlstm.lstm``, with ``keras.layers.LSTM``'s
weights (names, shapes, gate order i, f, c, o) and initialisers."""

from __future__ import annotations

import jax.numpy as jnp
import keras

import jlstm
from jlstm.nn import _cell
from jlstm.nn import _common as C
from jlstm.nn import _keras_conventions as KC
from jlstm.nn import _layout as L


def _same(name: str, value, accepted) -> bool:
    if name.endswith("activation"):  # by name or as the function, as Keras takes them
        return keras.activations.get(value) is keras.activations.get(accepted)
    return value == accepted and type(value) is type(accepted)


class _Weights(keras.layers.Layer):
    """The weights alone, where ``keras.layers.LSTM`` keeps them (its ``cell``), so a Keras LSTM's
    ``.weights.h5`` loads into jlstm's layer; the layer computes, this holds."""


@keras.saving.register_keras_serializable(package="jlstm")
class LSTM(keras.layers.Layer):
    """An LSTM layer over whole sequences, computed by ``jlstm.lstm`` (hand-written backward), holding
    ``keras.layers.LSTM``'s weights: ``set_weights(keras_lstm.get_weights())`` gives the Keras layer's
    numbers, and ``get_weights()`` loads back into it.

    Args:
      units: H.
      return_sequences: return ``[B, T, H]`` (else the last output ``[B, H]``).
      return_state: also return the final ``h`` and ``c``. go_backwards: read each sequence from its
        end and return the outputs reversed in time, as ``keras.layers.LSTM``.
      use_bias, kernel_initializer (``"glorot_uniform"``), recurrent_initializer (``"orthogonal"``),
        bias_initializer (``"zeros"``), unit_forget_bias (the forget gate's bias starts at 1), and the
        ``*_regularizer``/``*_constraint`` of each weight: as ``keras.layers.LSTM``.
      dropout: dropout on ``x``; recurrent_dropout: on ``h`` (a rate, one mask per sequence per gate, as
        Keras; or a ``jlstm.RecurrentDropout``); zoneout: a rate or ``(rate_c, rate_h)``. They draw
        from the layer's seed generator when ``training``.
      peephole, proj_size, layer_norm, cell_clip, proj_clip, variant: the cell (``jlstm.init``);
        ``variant`` may also be a user's ``jlstm.Cell``, with ``theta`` its own initial parameters.
      backward: ``"manual"`` or ``"autodiff"``. remat: ``jlstm.lstm``'s remat. seed: for the variant's
        own parameters and the masks. The compute dtype is the layer's dtype policy's.
      activation, recurrent_activation, stateful, unroll, use_cudnn, implementation: accepted at
        Keras's defaults only; any other value is a ValueError that says why.

    Call: ``(sequences [B, T, D], initial_state=None ([h, c]), mask=None ([B, T], right-padded),
    training=None)``. Weights, in ``layer.cell`` as Keras's: ``kernel [D, 4H]``, ``recurrent_kernel [H,
    4H]``, ``bias [4H]`` (gates i, f, c, o) and a variant's own (``input_gate_peephole_weights``,
    ``projection_kernel``, ...); ``.params`` gives them in jlstm's layout as ``jlstm.LSTMParams`` or
    ``CellParams``.
    """

    def __init__(
        self,
        units: int,
        *,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        unit_forget_bias=True,
        dropout=0.0,
        recurrent_dropout=0.0,
        zoneout=None,
        peephole=False,
        proj_size=None,
        layer_norm=False,
        cell_clip=None,
        proj_clip=None,
        variant=None,
        theta=None,
        backward="manual",
        remat=None,
        seed=None,
        **kwargs,
    ):
        where = "jlstm.nn.keras.LSTM"
        KC.refuse(where, kwargs, _same)
        given = {
            k: kwargs.pop(k) for k in (*KC.REGULARIZERS.values(), *KC.CONSTRAINTS.values()) if k in kwargs
        }
        super().__init__(**kwargs)
        self.units, self.return_sequences, self.return_state = units, return_sequences, return_state
        self.go_backwards, self.stateful = go_backwards, False
        self.dropout, self.recurrent_dropout = dropout, KC.rdropout_from_config(recurrent_dropout)
        self.zoneout = tuple(zoneout) if isinstance(zoneout, list) else zoneout
        self.unit_forget_bias, self.use_bias = unit_forget_bias, use_bias
        self.backward, self.remat, self.seed = backward, remat, seed
        initializers = (kernel_initializer, recurrent_initializer, bias_initializer)
        self.weight_initializers = {
            w: keras.initializers.get(i) for w, i in zip(KC.INITIALIZERS, initializers)
        }
        self.weight_regularizers = {
            w: keras.regularizers.get(given.get(a)) for w, a in KC.REGULARIZERS.items()
        }
        self.weight_constraints = {w: keras.constraints.get(given.get(a)) for w, a in KC.CONSTRAINTS.items()}
        self.options = C.init_options(
            peephole=peephole,
            proj_size=proj_size,
            layer_norm=layer_norm,
            cell_clip=cell_clip,
            proj_clip=proj_clip,
            variant=KC.cell_from_config(where, variant),
        )
        self.theta = KC.theta_from_config(theta)
        _cell.check(where, self.options, self.theta)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.cell = _Weights(name="lstm_cell", dtype=self.dtype_policy)
        self.supports_masking = True
        self.input_spec = keras.InputSpec(ndim=3)
        self.spec = None
        self.param_names: tuple[str, ...] = ()  # jlstm's names, set by build
        self.weight_names: tuple[str, ...] = ()  # Keras's

    def _bias_initializer(self):
        """Keras's ``unit_forget_bias``: the forget gate's block starts at one, the others as
        ``bias_initializer`` (block by block, in Keras's gate order)."""
        blocks = KC.forget_blocks(self.spec) if self.unit_forget_bias else {}
        if not blocks:
            return self.weight_initializers["bias"]
        gates = L.framework_gates(L.KERAS, self.spec)

        def init(shape, dtype=None):
            H = shape[0] // len(gates)
            parts = [
                keras.ops.full((H,), blocks[g], dtype)
                if g in blocks
                else self.weight_initializers["bias"]((H,), dtype)
                for g in gates
            ]
            return keras.ops.concatenate(parts)

        return init

    def build(self, sequences_shape, initial_state_shape=None):
        D = int(sequences_shape[-1])
        arrays, self.spec = _cell.jlstm_arrays(
            KC.key(self.seed_generator),
            D,
            self.units,
            dtype=self.variable_dtype,
            options=self.options,
            theta=self.theta,
        )
        if not self.use_bias:
            del arrays["b"]
        initializers = {**self.weight_initializers, "bias": self._bias_initializer()}
        tree = L.to_framework(arrays, self.spec, L.KERAS)
        for name, a in tree.items():
            # autocast=False: jlstm casts to the compute dtype itself and keeps c and the sums in float32.
            var = self.cell.add_weight(
                shape=a.shape,
                initializer=initializers.get(name, lambda shape, dtype, a=a: jnp.asarray(a, dtype)),
                regularizer=self.weight_regularizers.get(name),
                constraint=self.weight_constraints.get(name),
                dtype=self.variable_dtype,
                name=name,
                autocast=False,
            )
            setattr(self.cell, name, var)
        self.cell.built = True
        self.param_names, self.weight_names = tuple(arrays), tuple(tree)

    @property
    def params(self):
        """The functional parameters (``jlstm.LSTMParams`` or ``jlstm.CellParams``, jlstm's layout and
        gate order) of a built layer."""
        tree = {n: getattr(self.cell, n).value for n in self.weight_names}
        return C.from_arrays(L.to_jlstm(tree, self.spec, L.KERAS, self.param_names), self.spec)

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
        H, R = self.units, self.options.get("proj_size") or self.units
        out = (B, T, R) if self.return_sequences else (B, R)
        return (out, (B, R), (B, H)) if self.return_state else out

    def compute_mask(self, sequences, mask=None):
        out = mask if self.return_sequences else None
        return [out, None, None] if self.return_state else out

    def get_config(self):
        """The layer's arguments; a user's ``jlstm.Cell`` as a token that only this process resolves (enough
        for ``keras.layers.Bidirectional``'s copy, not for ``model.save``: save the weights)."""
        config = {k: getattr(self, k) for k in KC.LSTM_CONFIG}
        config["recurrent_dropout"] = KC.rdropout_config(self.recurrent_dropout)
        ser = keras.saving.serialize_keras_object
        objects = [(KC.INITIALIZERS, self.weight_initializers), (KC.REGULARIZERS, self.weight_regularizers)]
        for names, values in [*objects, (KC.CONSTRAINTS, self.weight_constraints)]:
            config.update({names[w]: ser(values[w]) for w in names})
        cell = {k: self.options.get(k) for k in KC.CELL} | {
            "variant": KC.cell_config(self.options.get("variant"))
        }
        return {**super().get_config(), **config, **cell, "theta": KC.theta_config(self.theta)}
