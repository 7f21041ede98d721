"""PyTorch ``nn.LSTM``: weights (any number of layers, bidirectional, ``proj_size``) and the ``(h, c)``
state, both ways.

torch's gate blocks are i, f, g, o along the rows of ``weight_ih [4H, D]`` / ``weight_hh [4H, R]``, with
two biases of which only the sum matters; with ``proj_size = P > 0``, ``h_t = weight_hr (o * tanh c_t)``
(``weight_hr [P, H]``) and ``R = P``, else ``R = H``. ``torch`` is imported inside the functions that build
tensors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from jlstm.cells.init import check_cell_params
from jlstm.cells.spec import CellParams, CellSpec
from jlstm.core.params import LSTMParams, LSTMState
from jlstm.interop._common import JLSTM_GATES, _array, _layout, _np, _params, _reorder

TORCH_GATES = ("i", "f", "a", "o")  # torch: i, f, g, o
_LAYER = (LSTMParams, CellParams)


def _torch_state_dict(obj, prefix: str, where: str) -> dict:
    """A ``torch.nn.LSTM`` or its state dict -> the state dict under ``prefix``, with the prefix removed."""
    if hasattr(obj, "state_dict") and callable(obj.state_dict):
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
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


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


def _torch_sizes(sd: dict, suffix: str, where: str):
    """``(H, R, W_hr or None)`` of one layer and direction: R = the projection width P, or H."""
    hh, hr = f"weight_hh{suffix}", f"weight_hr{suffix}"
    W_hh = _np(sd[hh])
    if hr not in sd:
        if W_hh.ndim != 2 or W_hh.shape[0] != 4 * W_hh.shape[1]:
            raise ValueError(
                f"{where}: {hh} must be [4H, H] (an LSTM has 4 gates; a GRU has 3); got shape {W_hh.shape}."
            )
        return W_hh.shape[1], W_hh.shape[1], None
    W_hr = _np(sd[hr])
    if W_hr.ndim != 2 or not 0 < W_hr.shape[0] < W_hr.shape[1]:
        raise ValueError(
            f"{where}: {hr} must be [P, H] with 0 < P < H (torch's proj_size < hidden_size); "
            f"got shape {W_hr.shape}."
        )
    P, H = W_hr.shape
    return H, P, _array(where, hr, W_hr, (P, H), "[P, H]")


def _torch_direction(sd: dict, suffix: str, first: tuple[int, int] | None, D: int | None, where: str):
    """One layer and direction (keys ending ``suffix``, e.g. ``_l1_reverse``) -> ``(params, (H, R))``.

    ``first`` is layer 0's ``(H, R)`` (None for layer 0 itself), ``D`` the expected input size (None: any).
    ``params`` is ``LSTMParams``, or ``CellParams`` with ``extra["P"] = weight_hr^T`` when projected.
    """
    names = [f"{w}{suffix}" for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    if names[0] not in sd or names[1] not in sd:
        raise ValueError(f"{where}: missing {names[0]!r} or {names[1]!r} in the state dict.")
    proj0 = None if first is None else (first[1] if first[1] != first[0] else 0)  # layer 0's proj_size
    if proj0 is not None and (f"weight_hr{suffix}" in sd) != (proj0 > 0):
        raise ValueError(
            f"{where}: weight_hr{suffix} is {'present' if proj0 == 0 else 'missing'}, but layer 0 has "
            f"proj_size {proj0} (torch.nn.LSTM has one proj_size for all layers)."
        )
    H, R, W_hr = _torch_sizes(sd, suffix, where)
    if first is not None and H != first[0]:
        raise ValueError(f"{where}: {names[1]} has H = {H}, but layer 0 has H = {first[0]}.")
    if first is not None and R != first[1]:
        raise ValueError(
            f"{where}: weight_hr{suffix} gives proj_size {R}, but layer 0 has proj_size {proj0}."
        )
    W_hh = _array(where, names[1], sd[names[1]], (4 * H, R), "[4H, H]" if W_hr is None else "[4H, P]")
    W_ih = _array(where, names[0], sd[names[0]], (4 * H, D), "[4H, D]")
    has_bias = [m in sd for m in names[2:]]
    if any(has_bias) and not all(has_bias):
        raise ValueError(f"{where}: {names[2]} and {names[3]} must both be present or both absent.")
    if all(has_bias):
        b_ih, b_hh = (_array(where, m, sd[m], (4 * H,), "[4H]") for m in names[2:])
        b = b_ih + b_hh
    else:
        b = np.zeros((4 * H,), W_hh.dtype)
    params = _params(W_ih.T, W_hh.T, b, TORCH_GATES)
    if W_hr is None:
        return params, (H, R)
    return CellParams(*params, {"P": jnp.asarray(W_hr.T)}, CellSpec(proj_size=R)), (H, R)


def from_torch(module_or_state_dict, *, prefix: str = "") -> list:
    """PyTorch ``nn.LSTM`` weights -> a list of jlstm layers.

    PyTorch computes, per layer and direction, with gate blocks **i, f, g, o** along the rows::

        [i; f; g; o] = W_ih x + b_ih + W_hh h + b_hh,   W_ih [4H, D], W_hh [4H, R], b_ih, b_hh [4H]
        h = o * tanh(c)                  (proj_size = 0, R = H)
        h = W_hr (o * tanh(c))           (proj_size = P > 0, W_hr [P, H], R = P)

    so ``W = W_ih^T``, ``U = W_hh^T`` and ``b = b_ih + b_hh`` (only the sum matters), with the blocks
    reordered to (a, i, f, o), and ``P = W_hr^T``. Layer ``n > 0`` reads ``R`` features (``2R`` when
    bidirectional: the forward and backward outputs concatenated, exactly as ``jlstm.stacked_lstm`` does).
    ``batch_first`` does not change the weights. ``bias=False`` gives a zero ``b``.

    Args:
      module_or_state_dict: a ``torch.nn.LSTM`` or its ``state_dict()`` (tensors or arrays).
      prefix: the key prefix when the state dict is a whole model's, e.g. ``"encoder.lstm."``.

    Returns:
      A list with one layer per layer, or one ``(forward, backward)`` pair per layer when the LSTM is
      bidirectional; feed it to ``jlstm.stacked_lstm(layers, xs, bidirectional=...)``. A layer is
      ``LSTMParams``, or with ``proj_size = P`` a ``CellParams`` (``U [P, 4H]``, ``extra["P"] [H, P]``,
      ``spec = CellSpec(proj_size=P)``). The carry order is (h, c) in both; convert PyTorch's
      ``(h_0, c_0)`` with ``from_torch_state``.

    Raises:
      ValueError: missing layers, a GRU/RNN state dict, or inconsistent shapes.

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
    layers: list = []
    D_expected: int | None = None
    first: tuple[int, int] | None = None
    for n in indices:
        pair = []
        for s in directions:
            params, sizes = _torch_direction(sd, f"_l{n}{s}", first, D_expected, where)
            first = sizes if first is None else first
            pair.append(params)
        layers.append(tuple(pair) if bidirectional else pair[0])
        D_expected = sizes[1] * len(directions)  # every layer has layer 0's output size R
    return layers


def _torch_layout(p, where: str, name: str):
    """A jlstm layer -> numpy ``(W, U, b, P or None)``, columns in torch's gate order."""
    if not isinstance(p, CellParams):
        return (*_layout(p, where, TORCH_GATES, name), None)
    spec = p.spec
    if not isinstance(spec, CellSpec):
        kind = getattr(spec, "name", type(spec).__name__)
        raise ValueError(f"{where}: {name} is a {kind!r} cell; torch.nn.LSTM holds only the LSTM.")
    others = [
        f"{f.name}={getattr(spec, f.name)!r}"
        for f in dataclasses.fields(spec)
        if f.name != "proj_size" and getattr(spec, f.name) != f.default
    ]
    if others:
        raise ValueError(
            f"{where}: {name} has {', '.join(others)}, which torch.nn.LSTM does not have (of jlstm's cell "
            "options it has only proj_size). Convert a layer without them."
        )
    check_cell_params(p, f"{where}: {name}")
    W, U, b = (_reorder(_np(a), JLSTM_GATES, TORCH_GATES) for a in (p.W, p.U, p.b))
    return W, U, b, (_np(p.extra["P"]) if spec.proj_size is not None else None)


def to_torch(layers) -> dict:
    """jlstm layers -> a ``torch.nn.LSTM`` state dict (``OrderedDict`` of tensors, dtype kept).

    The inverse of ``from_torch``: ``weight_ih_l{n} = W^T``, ``weight_hh_l{n} = U^T`` with rows in
    PyTorch's gate order i, f, g, o; the whole bias goes to ``bias_ih_l{n}`` and ``bias_hh_l{n}`` is zero
    (PyTorch only uses their sum); with a projection, ``weight_hr_l{n} = P^T``. Backward directions get the
    suffix ``_reverse``.

    Args:
      layers: a list of ``LSTMParams`` (or a single one), or of ``(forward, backward)`` pairs; or the
        same of ``CellParams`` whose only option is ``proj_size`` (the same in every layer). Any other
        cell option (peepholes, layer norm, ...) is a ValueError: torch has none.

    Returns:
      A state dict for ``torch.nn.LSTM(D, H, num_layers=len(layers), bidirectional=..., bias=True,
      proj_size=P or 0)``: ``lstm.load_state_dict(jlstm.interop.to_torch(layers))``.
    """
    import collections

    import torch

    where = "jlstm.interop.to_torch"
    if isinstance(layers, _LAYER):
        layers = [layers]
    if not isinstance(layers, Sequence) or len(layers) == 0:
        raise TypeError(
            f"{where}: layers must be a non-empty list of LSTMParams; got {type(layers).__name__}."
        )
    bidirectional = not isinstance(layers[0], _LAYER)
    sd, proj = collections.OrderedDict(), []
    for n, layer in enumerate(layers):
        if bidirectional != (not isinstance(layer, _LAYER)):
            raise TypeError(
                f"{where}: layers must be all LSTMParams or all (forward, backward) pairs; layers[{n}] is "
                f"a {type(layer).__name__} while layers[0] is a {type(layers[0]).__name__}."
            )
        if bidirectional and len(layer) != 2:
            raise TypeError(
                f"{where}: layers[{n}] must be a (forward, backward) pair; got length {len(layer)}."
            )
        for k, (s, p) in enumerate(zip(("", "_reverse"), layer if bidirectional else (layer,))):
            name = f"layers[{n}]" + (f"[{k}]" if bidirectional else "")
            W, U, b, P = _torch_layout(p, where, name)
            proj.append((name, None if P is None else P.shape[1]))
            if proj[-1][1] != proj[0][1]:
                raise ValueError(
                    f"{where}: {name} has proj_size {proj[-1][1]} but {proj[0][0]} has {proj[0][1]}; "
                    "torch.nn.LSTM has one proj_size for all layers."
                )
            sd[f"weight_ih_l{n}{s}"] = torch.from_numpy(np.ascontiguousarray(W.T))
            sd[f"weight_hh_l{n}{s}"] = torch.from_numpy(np.ascontiguousarray(U.T))
            sd[f"bias_ih_l{n}{s}"] = torch.from_numpy(b.copy())
            sd[f"bias_hh_l{n}{s}"] = torch.zeros_like(sd[f"bias_ih_l{n}{s}"])
            if P is not None:
                sd[f"weight_hr_l{n}{s}"] = torch.from_numpy(np.ascontiguousarray(P.T))
    return sd


def from_torch_state(state, *, bidirectional: bool = False) -> list:
    """PyTorch's ``(h_n, c_n)`` (or ``(h_0, c_0)``) -> jlstm carries, one per layer.

    PyTorch stacks layers and directions on the first axis: ``h [L * dirs, (B,) R]``, ``c [L * dirs, (B,)
    H]`` (R = proj_size or H) ordered layer 0 forward, layer 0 backward, layer 1 forward, ... Both use the
    order (h, c).

    Returns:
      A list of ``LSTMState(h, c)`` per layer, or of ``(forward, backward)`` pairs when bidirectional:
      the ``carries`` of ``jlstm.stacked_lstm``.
    """
    where = "jlstm.interop.from_torch_state"
    if not (isinstance(state, (tuple, list)) and len(state) == 2):
        raise TypeError(f"{where}: state must be torch's (h, c) pair; got {type(state).__name__}.")
    h, c = (_np(v) for v in state)
    if h.shape[:-1] != c.shape[:-1] or h.ndim not in (2, 3) or h.shape[-1] > c.shape[-1]:
        raise ValueError(
            f"{where}: h and c must be [L * dirs, B, R] and [L * dirs, B, H] (or without B), R = H or "
            f"proj_size < H; got {h.shape} and {c.shape}."
        )
    dirs = 2 if bidirectional else 1
    if h.shape[0] % dirs:
        raise ValueError(f"{where}: bidirectional state needs an even first axis; got shape {h.shape}.")
    states = [LSTMState(jnp.asarray(h[k]), jnp.asarray(c[k])) for k in range(h.shape[0])]
    if bidirectional:
        return [(states[2 * n], states[2 * n + 1]) for n in range(len(states) // 2)]
    return states


def to_torch_state(carries) -> tuple:
    """jlstm carries (as ``stacked_lstm`` returns them) -> PyTorch's ``(h [L*dirs, ..., R], c [L*dirs, ...,
    H])``."""
    import torch

    flat = [s for layer in carries for s in (layer if not isinstance(layer, LSTMState) else (layer,))]
    return tuple(torch.from_numpy(np.stack([_np(s[k]) for s in flat])) for k in range(2))
