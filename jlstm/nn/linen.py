"""jlstm as Flax linen modules: ``LSTM`` (the ``nn.RNN`` protocol, so ``nn.Bidirectional`` takes it) and
``StackedLSTM``. ``LSTM`` holds ``nn.RNN(nn.OptimizedLSTMCell)``'s parameter tree, ``params/cell/ii/kernel
[D, H]``, ..., ``params/cell/hi/kernel [H, H]``, ``params/cell/hi/bias [H]``, ... (one kernel per gate i,
f, g, o; the bias on the hidden side), drawn as Flax draws them (lecun normal, orthogonal per gate,
zeros), so the Flax LSTM's variables apply to it unchanged; each call concatenates them into jlstm's
layout. The carry is Flax's ``(c, h)``; the backward pass is jlstm's hand-written one.

Example:
  >>> import flax.linen as nn
  >>> from jlstm.nn.linen import LSTM
  >>> model = LSTM(32)
  >>> variables = model.init(jax.random.key(0), jnp.ones((4, 10, 8)))
  >>> ys = model.apply(variables, xs, seq_lengths=lengths)                  # [4, 10, 32]
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.recurrent import flip_sequences

from jlstm.nn import _cell
from jlstm.nn import _common as C
from jlstm.nn import _layout as L
from jlstm.nn import _linen_conventions as LC


def _pick(arg, attr):
    return attr if arg is None else arg


class LSTM(nn.Module):
    """An LSTM layer over whole sequences, computed by ``jlstm.lstm`` (hand-written backward).

    Attributes:
      features: H (D is read from the inputs).
      kernel_init, recurrent_kernel_init, bias_init: as ``nn.OptimizedLSTMCell``'s (lecun normal on each
        input kernel, orthogonal on each recurrent kernel, zeros); a variant's own parameters start as
        ``jlstm.init`` draws them.
      peephole, proj_size, layer_norm, cell_clip, proj_clip, variant: the cell (``jlstm.init``);
        ``variant`` may also be a user's ``jlstm.Cell``, with ``theta`` its own initial parameters.
      zoneout: a rate or ``(rate_c, rate_h)``. recurrent_dropout: a rate on ``h`` (one mask per sequence
        per gate) or a ``jlstm.RecurrentDropout``. dropout_rate: dropout on ``x`` (one mask per sequence).
        They draw from the 'dropout' rng unless ``deterministic`` (attribute or call argument, merged
        with ``nn.merge_param``; needed only when one of them is set).
      time_major, return_carry, reverse, keep_order: defaults of the call's arguments, as ``nn.RNN``.
      backward: ``"manual"`` or ``"autodiff"``. remat: ``jlstm.lstm``'s remat.
      dtype: the compute dtype (``jlstm.lstm``'s ``compute_dtype``); None: promote. param_dtype.

    Parameters: ``cell``, ``nn.OptimizedLSTMCell``'s tree (``ii``, ``if``, ``ig``, ``io``, ``hi``, ...,
    one per gate a variant keeps) and a variant's own (``peephole_i``, ``projection/kernel``,
    ``layer_norm_x/scale``, ...); ``module.bind(variables).params`` gives them in jlstm's layout as
    ``jlstm.LSTMParams``/``CellParams``.
    """

    features: int
    kernel_init: Any = LC.KERNEL_INIT
    recurrent_kernel_init: Any = LC.RECURRENT_KERNEL_INIT
    bias_init: Any = LC.BIAS_INIT
    peephole: bool = False
    proj_size: int | None = None
    layer_norm: bool = False
    cell_clip: float | None = None
    proj_clip: float | None = None
    variant: Any = None
    theta: Any = None
    zoneout: Any = None
    recurrent_dropout: Any = None
    dropout_rate: float = 0.0
    deterministic: bool | None = None
    time_major: bool = False
    return_carry: bool = False
    reverse: bool = False
    keep_order: bool = False
    backward: str = "manual"
    remat: int | None = None
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def _functional(self, D: int, where: str, name: str):
        """The functional parameters, the 'cell' tree created for ``D`` input features on first use."""
        _cell.check(where, LC.cell_options(self), self.theta)
        names, spec = LC.names_and_spec(self)
        if self.has_variable("params", "cell"):  # before self.param, whose own check names no input
            path = L.core_paths(L.LINEN, spec)["W"][0]
            shape = jnp.shape(L.get(self.get_variable("params", "cell"), path))
            if shape[0] != D:
                raise ValueError(
                    f"{where}: {name} must have D = {shape[0]} features in its last axis (from the params' "
                    f"input kernels, cell/{'/'.join(path)} {shape}); got {D}."
                )
        tree = self.param("cell", LC.cell_init(self, D, spec))
        return C.from_arrays(L.to_jlstm(tree, spec, L.LINEN, names), spec)

    @property
    def params(self):
        """The functional parameters (``jlstm.LSTMParams`` or ``CellParams``) of a bound module."""
        return LC.functional(self, self.variables["params"]["cell"])

    @property
    def stochastic(self) -> bool:
        """Whether the module draws masks in training."""
        return C.stochastic(self.zoneout, C.recurrent_dropout(self.recurrent_dropout, self.dropout_rate))

    @nn.nowrap
    def lstm_options(self, key=None) -> dict:
        """``jlstm.lstm``'s keyword arguments for this module; ``key`` None runs evaluation mode."""
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
        init_key=None,
        seq_lengths=None,
        return_carry=None,
        time_major=None,
        reverse=None,
        keep_order=None,
        deterministic=None,
    ):
        """Run over ``inputs [*batch, T, D]`` (``[T, *batch, D]`` when ``time_major``).

        Args:
          initial_carry: ``(c, h)``, each ``[*batch, H]`` (h ``[*batch, proj_size]``); None: zeros.
          init_key: unused (the ``nn.RNN`` protocol's carry-initialisation key; the carry starts at zero).
          seq_lengths: ``[*batch]`` valid steps per sequence (right padding): padded outputs are zero,
            the carry is the one at each sequence's last step (``initial_carry`` for length 0).
          reverse: run from each sequence's end; outputs come back reversed within each sequence, as
            from ``nn.RNN``, unless ``keep_order`` (then aligned with the inputs).
          deterministic: merged with the attribute (``nn.merge_param``) when a stochastic option is set.

        Returns:
          ``outputs [*batch, T, H]``, or ``((c, h), outputs)`` with ``return_carry``.
        """
        where = "jlstm.nn.linen.LSTM"
        D = jnp.shape(inputs)[-1] if jnp.ndim(inputs) else 0
        params = self._functional(D, where, "inputs")
        key = LC.dropout_key(self, where, self.stochastic, deterministic)
        kw = self.lstm_options(key)
        carry, hs = C.flax_call(
            where,
            params,
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
        """One evaluation-mode step for decoders, as a Flax cell: ``((c, h), x [*batch, D]) -> ((c, h), h)``.

        Use it with ``model.apply(variables, carry, x, method=LSTM.step)``."""
        where = "jlstm.nn.linen.LSTM.step"
        D = jnp.shape(x)[-1] if jnp.ndim(x) else 0
        return C.flax_step(where, self._functional(D, where, "x"), carry, x)

    @nn.nowrap
    def initialize_carry(self, input_shape: tuple, rng=None):
        """Zeros ``(c, h)`` for inputs ``[*batch, D]``; ``rng`` is unused (the nn.RNNCellBase signature)."""
        batch = tuple(input_shape[:-1])
        return (
            jnp.zeros(batch + (self.features,), self.param_dtype),
            jnp.zeros(batch + (self.proj_size or self.features,), self.param_dtype),
        )


class StackedLSTM(nn.Module):
    """Layers of LSTMs (``jlstm.stacked_lstm``), optionally bidirectional.

    Attributes:
      features: H. num_layers: the number of layers.
      bidirectional: each layer a forward and a backward LSTM, outputs concatenated (2H).
      dropout_rate: dropout **between layers** (none after the last), from the 'dropout' rng.
      deterministic, time_major, return_carry: as ``LSTM``.
      the initialisers, the cell options (and theta), zoneout, recurrent_dropout, backward, remat, dtype,
        param_dtype: every layer's, as ``LSTM``.

    Parameters: ``layers_{n}`` (and ``layers_{n}_backward`` when bidirectional), each an ``LSTM``'s ``cell``.
    Call: ``(inputs, *, initial_carry=None, seq_lengths=None, return_carry=None, time_major=None,
    deterministic=None)``; carries are one ``(c, h)`` per layer, a pair per bidirectional layer.
    """

    features: int
    num_layers: int
    bidirectional: bool = False
    dropout_rate: float = 0.0
    deterministic: bool | None = None
    time_major: bool = False
    return_carry: bool = False
    kernel_init: Any = LC.KERNEL_INIT
    recurrent_kernel_init: Any = LC.RECURRENT_KERNEL_INIT
    bias_init: Any = LC.BIAS_INIT
    peephole: bool = False
    proj_size: int | None = None
    layer_norm: bool = False
    cell_clip: float | None = None
    proj_clip: float | None = None
    variant: Any = None
    theta: Any = None
    zoneout: Any = None
    recurrent_dropout: Any = None
    backward: str = "manual"
    remat: int | None = None
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def _layer(self, name: str) -> LSTM:
        names = (
            "kernel_init",
            "recurrent_kernel_init",
            "bias_init",
            "peephole",
            "theta",
            "proj_size",
            "layer_norm",
            "cell_clip",
            "proj_clip",
            "variant",
            "zoneout",
            "recurrent_dropout",
            "backward",
            "remat",
            "dtype",
            "param_dtype",
        )
        return LSTM(self.features, name=name, **{k: getattr(self, k) for k in names})

    @property
    def params(self) -> list:
        """The functional parameters of a bound module: the list ``jlstm.stacked_lstm`` takes."""
        v = self.variables["params"]
        one = lambda name: LC.functional(self, v[name]["cell"])
        if self.bidirectional:
            return [(one(f"layers_{n}"), one(f"layers_{n}_backward")) for n in range(self.num_layers)]
        return [one(f"layers_{n}") for n in range(self.num_layers)]

    @nn.compact
    def __call__(
        self,
        inputs,
        *,
        initial_carry=None,
        seq_lengths=None,
        return_carry=None,
        time_major=None,
        deterministic=None,
    ):
        """Run the stack over ``inputs [*batch, T, D]`` (``[T, *batch, D]`` when ``time_major``); carries in
        Flax's ``(c, h)`` order, one per layer (pairs when bidirectional)."""
        where = "jlstm.nn.linen.StackedLSTM"
        if isinstance(self.num_layers, bool) or not isinstance(self.num_layers, int) or self.num_layers < 1:
            raise ValueError(f"{where}: num_layers must be a positive int; got {self.num_layers!r}.")
        tm = _pick(time_major, self.time_major)
        x = jnp.moveaxis(inputs, 0, -2) if tm else inputs
        width = (self.proj_size or self.features) * (2 if self.bidirectional else 1)
        layers = []
        for n in range(self.num_layers):
            names = (f"layers_{n}", f"layers_{n}_backward") if self.bidirectional else (f"layers_{n}",)
            modules = [self._layer(name) for name in names]
            pair = tuple(
                m._functional(jnp.shape(x)[-1] if n == 0 else width, where, "inputs") for m in modules
            )
            layers.append(pair if self.bidirectional else pair[0])
        first = self._layer("options")  # unbound: only reads the options
        key = LC.dropout_key(self, where, self.dropout_rate > 0 or first.stochastic, deterministic)
        hs, finals = C.stacked_call(
            where,
            layers,
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
