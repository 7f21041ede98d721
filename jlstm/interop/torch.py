"""PyTorch ``nn.LSTM``: weights (any number of layers, bidirectional) and the ``(h, c)`` state, both ways.

torch's gate blocks are i, f, g, o along the rows of ``weight_ih [4H, D]`` / ``weight_hh [4H, H]``, with
two biases of which only the sum matters. ``torch`` is imported inside the functions that build tensors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from jlstm.core.params import LSTMParams, LSTMState
from jlstm.interop._common import _array, _layout, _np, _params

TORCH_GATES = ("i", "f", "a", "o")  # torch: i, f, g, o


def _torch_state_dict(obj, prefix: str, where: str) -> dict:
    """A ``torch.nn.LSTM`` or its state dict -> the state dict under ``prefix``, with the prefix removed."""
    if hasattr(obj, "state_dict") and callable(obj.state_dict):
        if getattr(obj, "proj_size", 0):
            raise ValueError(
                f"{where}: torch.nn.LSTM with proj_size={obj.proj_size} (an LSTM with projections, "
                "h_t = W_hr (o * tanh c_t)) is not supported: jlstm's h is the cell output itself. "
                "Use proj_size=0."
            )
        mode = getattr(obj, "mode", "LSTM")
        if mode != "LSTM":
            raise ValueError(
                f"{where}: expected a torch.nn.LSTM; got a {type(obj).__name__} (mode {mode!r})."
            )
        sd = obj.state_dict()
    elif isinstance(obj, Mapping):
        sd = obj
    else:
        raise TypeError(
            f"{where}: module_or_state_dict must be a torch.nn.LSTM or its state_dict(); "
            f"got {type(obj).__name__}."
        )
    sd = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    if any(k.startswith("weight_hr_l") for k in sd):
        raise ValueError(
            f"{where}: the state dict has weight_hr_l* keys, i.e. an LSTM with proj_size > 0, which is "
            "not supported: jlstm's h is the cell output itself. Use proj_size=0."
        )
    return sd


def _torch_layer_indices(sd: dict, prefix: str, where: str) -> list[int]:
    """The layer numbers ``n`` of the ``weight_ih_l{n}`` keys, checked to be ``0..L-1``."""
    indices = sorted({int(k[len("weight_ih_l") :].split("_")[0]) for k in sd if k.startswith("weight_ih_l")})
    if not indices:
        raise ValueError(
            f"{where}: no 'weight_ih_l0' key{f' under prefix {prefix!r}' if prefix else ''}; got keys "
            f"{sorted(sd)[:8]}. Pass prefix= for a state dict of a larger model."
        )
    if indices != list(range(len(indices))):
        raise ValueError(f"{where}: layers must be numbered 0..L-1; got weight_ih_l{indices}.")
    return indices


def _torch_direction(sd: dict, suffix: str, H0: int | None, D: int | None, where: str):
    """One layer and direction (keys ending ``suffix``, e.g. ``_l1_reverse``) -> ``(LSTMParams, H)``.

    ``H0`` is layer 0's hidden size (None for layer 0 itself), ``D`` the expected input size (None: any).
    """
    names = [f"{w}{suffix}" for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    if names[0] not in sd or names[1] not in sd:
        raise ValueError(f"{where}: missing {names[0]!r} or {names[1]!r} in the state dict.")
    W_hh = _np(sd[names[1]])
    if W_hh.ndim != 2 or W_hh.shape[0] != 4 * W_hh.shape[1]:
        raise ValueError(
            f"{where}: {names[1]} must be [4H, H] (an LSTM has 4 gates; a GRU has 3); got shape {W_hh.shape}."
        )
    H = W_hh.shape[1]
    if H0 is not None and H != H0:
        raise ValueError(f"{where}: {names[1]} has H = {H}, but layer 0 has H = {H0}.")
    W_hh = _array(where, names[1], W_hh, (4 * H, H), "[4H, H]")
    W_ih = _array(where, names[0], sd[names[0]], (4 * H, D), "[4H, D]")
    has_bias = [m in sd for m in names[2:]]
    if any(has_bias) and not all(has_bias):
        raise ValueError(f"{where}: {names[2]} and {names[3]} must both be present or both absent.")
    if all(has_bias):
        b = sum(_array(where, m, sd[m], (4 * H,), "[4H]") for m in names[2:])
    else:
        b = np.zeros((4 * H,), W_hh.dtype)
    return _params(W_ih.T, W_hh.T, b, TORCH_GATES), H


def from_torch(module_or_state_dict, *, prefix: str = "") -> list:
    """PyTorch ``nn.LSTM`` weights -> a list of jlstm layers.

    PyTorch computes, per layer and direction, with gate blocks **i, f, g, o** along the rows::

        [i; f; g; o] = W_ih x + b_ih + W_hh h + b_hh,   W_ih [4H, D], W_hh [4H, H], b_ih, b_hh [4H]

    so ``W = W_ih^T``, ``U = W_hh^T`` and ``b = b_ih + b_hh`` (only the sum matters), with the blocks
    reordered to (a, i, f, o). Layer ``n > 0`` reads ``H`` features (``2H`` when bidirectional: the
    forward and backward outputs concatenated, exactly as ``jlstm.stacked_lstm`` does). ``batch_first``
    does not change the weights. ``bias=False`` gives a zero ``b``.

    Args:
      module_or_state_dict: a ``torch.nn.LSTM`` or its ``state_dict()`` (tensors or arrays).
      prefix: the key prefix when the state dict is a whole model's, e.g. ``"encoder.lstm."``.

    Returns:
      A list with one ``LSTMParams`` per layer, or one ``(forward, backward)`` pair per layer when the
      LSTM is bidirectional; feed it to ``jlstm.stacked_lstm(layers, xs, bidirectional=...)``. The carry
      order is (h, c) in both; convert PyTorch's ``(h_0, c_0)`` with ``from_torch_state``.

    Raises:
      ValueError: ``proj_size > 0`` (LSTM with projections is not supported), missing layers, a GRU/RNN
        state dict, or inconsistent shapes.

    Example:
      >>> lstm = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True).double()
      >>> layers = jlstm.interop.from_torch(lstm)
      >>> hs, carries = jlstm.stacked_lstm(layers, xs, bidirectional=True)   # == lstm(xs)[0]
    """
    where = "jlstm.interop.from_torch"
    sd = _torch_state_dict(module_or_state_dict, prefix, where)
    indices = _torch_layer_indices(sd, prefix, where)
    bidirectional = any(k.endswith("_reverse") for k in sd)
    directions = ("", "_reverse") if bidirectional else ("",)
    layers, D_expected, H0 = [], None, None
    for n in indices:
        pair = []
        for s in directions:
            params, H = _torch_direction(sd, f"_l{n}{s}", H0, D_expected, where)
            H0 = H if H0 is None else H0
            pair.append(params)
        layers.append(tuple(pair) if bidirectional else pair[0])
        D_expected = H0 * len(directions)
    return layers


def to_torch(layers) -> dict:
    """jlstm layers -> a ``torch.nn.LSTM`` state dict (``OrderedDict`` of tensors, dtype kept).

    The inverse of ``from_torch``: ``weight_ih_l{n} = W^T``, ``weight_hh_l{n} = U^T`` with rows in
    PyTorch's gate order i, f, g, o; the whole bias goes to ``bias_ih_l{n}`` and ``bias_hh_l{n}`` is zero
    (PyTorch only uses their sum). Backward directions get the suffix ``_reverse``.

    Args:
      layers: a list of ``LSTMParams`` (or a single one), or of ``(forward, backward)`` pairs.

    Returns:
      A state dict for ``torch.nn.LSTM(D, H, num_layers=len(layers), bidirectional=..., bias=True)``:
      ``lstm.load_state_dict(jlstm.interop.to_torch(layers))``.
    """
    import collections

    import torch

    where = "jlstm.interop.to_torch"
    if isinstance(layers, LSTMParams):
        layers = [layers]
    if not isinstance(layers, Sequence) or len(layers) == 0:
        raise TypeError(
            f"{where}: layers must be a non-empty list of LSTMParams; got {type(layers).__name__}."
        )
    bidirectional = not isinstance(layers[0], LSTMParams)
    sd = collections.OrderedDict()
    for n, layer in enumerate(layers):
        if bidirectional != (not isinstance(layer, LSTMParams)):
            raise TypeError(
                f"{where}: layers must be all LSTMParams or all (forward, backward) pairs; layers[{n}] is "
                f"a {type(layer).__name__} while layers[0] is a {type(layers[0]).__name__}."
            )
        if bidirectional and len(layer) != 2:
            raise TypeError(
                f"{where}: layers[{n}] must be a (forward, backward) pair; got length {len(layer)}."
            )
        for s, p in zip(("", "_reverse"), layer if bidirectional else (layer,)):
            W, U, b = _layout(p, where, TORCH_GATES, f"layers[{n}]")
            sd[f"weight_ih_l{n}{s}"] = torch.from_numpy(np.ascontiguousarray(W.T))
            sd[f"weight_hh_l{n}{s}"] = torch.from_numpy(np.ascontiguousarray(U.T))
            sd[f"bias_ih_l{n}{s}"] = torch.from_numpy(b.copy())
            sd[f"bias_hh_l{n}{s}"] = torch.zeros_like(sd[f"bias_ih_l{n}{s}"])
    return sd


def from_torch_state(state, *, bidirectional: bool = False) -> list:
    """PyTorch's ``(h_n, c_n)`` (or ``(h_0, c_0)``) -> jlstm carries, one per layer.

    PyTorch stacks layers and directions on the first axis: ``h [L * dirs, (B,) H]`` ordered layer 0
    forward, layer 0 backward, layer 1 forward, ... Both use the order (h, c).

    Returns:
      A list of ``LSTMState(h, c)`` per layer, or of ``(forward, backward)`` pairs when bidirectional:
      the ``carries`` of ``jlstm.stacked_lstm``.
    """
    where = "jlstm.interop.from_torch_state"
    if not (isinstance(state, (tuple, list)) and len(state) == 2):
        raise TypeError(f"{where}: state must be torch's (h, c) pair; got {type(state).__name__}.")
    h, c = (_np(v) for v in state)
    if h.shape != c.shape or h.ndim not in (2, 3):
        raise ValueError(
            f"{where}: h and c must both be [L * dirs, B, H] (or [L * dirs, H]); got {h.shape} and {c.shape}."
        )
    dirs = 2 if bidirectional else 1
    if h.shape[0] % dirs:
        raise ValueError(f"{where}: bidirectional state needs an even first axis; got shape {h.shape}.")
    states = [LSTMState(jnp.asarray(h[k]), jnp.asarray(c[k])) for k in range(h.shape[0])]
    if bidirectional:
        return [(states[2 * n], states[2 * n + 1]) for n in range(len(states) // 2)]
    return states


def to_torch_state(carries) -> tuple:
    """jlstm carries (as ``stacked_lstm`` returns them) -> PyTorch's ``(h, c)``, each ``[L*dirs, ..., H]``."""
    import torch

    flat = [s for layer in carries for s in (layer if not isinstance(layer, LSTMState) else (layer,))]
    return tuple(torch.from_numpy(np.stack([_np(s[k]) for s in flat])) for k in range(2))
