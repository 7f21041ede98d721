"""Weights to and from the LSTMs people already use: PyTorch, Flax, Keras 3, Haiku, Equinox, and the
two tutorial notations (deeplearning.ai's and Seo's).

jlstm's layout is ``W [D, 4H]``, ``U [H, 4H]``, ``b [4H]`` with ``z = x @ W + h @ U + b`` and gate blocks
in the order **a, i, f, o** (``a`` is the tanh gate that PyTorch, Flax and Haiku call ``g`` and Keras and
deeplearning.ai call ``c``). Every library computes the same cell::

    c_t = f * c_{t-1} + i * a      h_t = o * tanh(c_t)

so a conversion only permutes gate blocks, transposes matrices and sums or splits biases; it is exact
(no arithmetic) except where a library adds a constant inside its forward (Haiku's forget bias +1).

| library | gate order | layout | bias | carry |
| --- | --- | --- | --- | --- |
| ``torch.nn.LSTM`` | i, f, g, o | ``weight_ih [4H, D]``, ``weight_hh [4H, H]`` | ``b_ih + b_hh`` | (h, c) |
| ``flax`` ``LSTMCell`` | i, f, g, o | one ``[D, H]`` / ``[H, H]`` kernel per gate | hidden side | (c, h) |
| ``nnx.OptimizedLSTMCell`` | i, f, g, o | ``dense_i [D, 4H]``, ``dense_h [H, 4H]`` | hidden side | (c, h) |
| Keras 3 ``LSTM`` | i, f, c, o | ``kernel [D, 4H]``, ``recurrent_kernel [H, 4H]`` | ``bias [4H]`` | (h, c) |
| ``hk.LSTM`` | i, g, f, o | ``w [D + H, 4H]`` on ``[x, h]`` | ``b``, +1 on f | (h, c) |
| ``eqx.nn.LSTMCell`` | i, f, g, o | ``weight_ih [4H, D]``, ``weight_hh [4H, H]`` | ``bias [4H]`` | (h, c) |
| deeplearning.ai | f, i, c, o | ``W? [n_a, n_a + n_x]`` on ``[a_prev; x]`` | ``b? [n_a, 1]`` | (a, c) |
| Seo (8 matrices) | a, i, f, o | ``W? [D, H]``, ``Wrec? [H, H]`` | optional ``b? [H]`` | (out, state) |

Nothing here imports a deep-learning library at ``import jlstm``: each converter imports what it needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from jlstm.core import checks as _checks
from jlstm.core.params import LSTMParams, LSTMState

#: jlstm's gate blocks; the other orders below use the same letters (``a`` = the tanh gate).
JLSTM_GATES = ("a", "i", "f", "o")
TORCH_GATES = ("i", "f", "a", "o")  # torch: i, f, g, o
FLAX_GATES = ("i", "f", "a", "o")  # flax: i, f, g, o
KERAS_GATES = ("i", "f", "a", "o")  # keras: i, f, c, o
HAIKU_GATES = ("i", "a", "f", "o")  # haiku: i, g, f, o
EQUINOX_GATES = ("i", "f", "a", "o")  # equinox: i, f, g, o
NG_GATES = {"a": "c", "i": "i", "f": "f", "o": "o"}  # jlstm gate -> deeplearning.ai letter (Wc, bc, ...)
SEO_GATES = ("a", "i", "f", "o")  # Wa, Wi, Wf, Wo and Wreca, Wreci, Wrecf, Wreco


# --------------------------------------------------------------------------------------------- helpers


def _np(x) -> np.ndarray:
    """Any array (numpy, jax, torch, a Flax/Keras variable) as a numpy array, without changing dtype."""
    if hasattr(x, "detach"):  # torch.Tensor
        return x.detach().cpu().numpy()
    if type(x).__module__.startswith("keras"):  # keras.Variable: its numpy() warns under numpy 2
        x = x.value
    if hasattr(x, "get_value") and not isinstance(x, np.ndarray):  # flax.nnx.Variable
        x = x.get_value()
    return np.asarray(x)


def _array(where: str, name: str, x, shape: tuple[int | None, ...], what: str) -> np.ndarray:
    """``x`` as numpy with ``shape`` (None: any size); else a ValueError naming ``name`` and ``what``."""
    a = _np(x)
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"{where}: {name} must be a floating array; got dtype {a.dtype}.")
    ok = a.ndim == len(shape) and all(s is None or s == n for s, n in zip(shape, a.shape))
    if not ok:
        want = "[" + ", ".join("?" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{where}: {name} must be {what} = {want}; got shape {a.shape}.")
    return a


def _reorder(x: np.ndarray, src: Sequence[str], dst: Sequence[str], axis: int = -1) -> np.ndarray:
    """Permute the four gate blocks of ``x`` along ``axis`` from the order ``src`` to ``dst``."""
    blocks = dict(zip(src, np.split(x, 4, axis=axis)))
    return np.concatenate([blocks[g] for g in dst], axis=axis)


def _params(W: np.ndarray, U: np.ndarray, b: np.ndarray, src: Sequence[str]) -> LSTMParams:
    """Columns in gate order ``src`` -> jlstm's LSTMParams (jax arrays, dtype kept where JAX allows)."""
    return LSTMParams(*(jnp.asarray(_reorder(a, src, JLSTM_GATES)) for a in (W, U, b)))


def _layout(params, where: str, src: Sequence[str] = JLSTM_GATES, name: str = "params"):
    """Checked LSTMParams -> numpy ``(W, U, b)`` with columns in gate order ``src``."""
    p = _checks.check_params(params, f"{where}: {name}")
    return tuple(_reorder(_np(a), JLSTM_GATES, src) for a in p)


def _plain(tree) -> Any:
    """Nested mappings (a Flax/Haiku params dict, an ``nnx.State``, an ``nnx.Module``) -> nested dicts."""
    mod = type(tree).__module__ or ""
    if mod.startswith("flax.nnx") or mod.startswith("flax.core"):
        from flax import nnx

        if isinstance(tree, nnx.Module):
            tree = nnx.state(tree, nnx.Param)
        if isinstance(tree, nnx.State):
            tree = nnx.to_pure_dict(tree)
    if isinstance(tree, Mapping):
        return {str(k): _plain(v) for k, v in tree.items()}
    return tree


def _zeros_like_bias(U: np.ndarray) -> np.ndarray:
    return np.zeros((U.shape[1],), U.dtype)


# ----------------------------------------------------------------------------------------------- torch


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
    obj = module_or_state_dict
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
    indices = sorted({int(k[len("weight_ih_l") :].split("_")[0]) for k in sd if k.startswith("weight_ih_l")})
    if not indices:
        raise ValueError(
            f"{where}: no 'weight_ih_l0' key{f' under prefix {prefix!r}' if prefix else ''}; got keys "
            f"{sorted(sd)[:8]}. Pass prefix= for a state dict of a larger model."
        )
    if indices != list(range(len(indices))):
        raise ValueError(f"{where}: layers must be numbered 0..L-1; got weight_ih_l{indices}.")
    bidirectional = any(k.endswith("_reverse") for k in sd)
    directions = ("", "_reverse") if bidirectional else ("",)
    layers, D_expected, H0 = [], None, None
    for n in indices:
        pair = []
        for s in directions:
            names = [f"{w}_l{n}{s}" for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            if names[0] not in sd or names[1] not in sd:
                raise ValueError(f"{where}: missing {names[0]!r} or {names[1]!r} in the state dict.")
            W_hh = _np(sd[names[1]])
            if W_hh.ndim != 2 or W_hh.shape[0] != 4 * W_hh.shape[1]:
                raise ValueError(
                    f"{where}: {names[1]} must be [4H, H] (an LSTM has 4 gates; a GRU has 3); "
                    f"got shape {W_hh.shape}."
                )
            H = W_hh.shape[1]
            if H0 is None:
                H0 = H
            elif H != H0:
                raise ValueError(f"{where}: {names[1]} has H = {H}, but layer 0 has H = {H0}.")
            W_hh = _array(where, names[1], W_hh, (4 * H, H), "[4H, H]")
            W_ih = _array(where, names[0], sd[names[0]], (4 * H, D_expected), "[4H, D]")
            has_bias = [m in sd for m in names[2:]]
            if any(has_bias) and not all(has_bias):
                raise ValueError(f"{where}: {names[2]} and {names[3]} must both be present or both absent.")
            if all(has_bias):
                b = sum(_array(where, m, sd[m], (4 * H,), "[4H]") for m in names[2:])
            else:
                b = np.zeros((4 * H,), W_hh.dtype)
            pair.append(_params(W_ih.T, W_hh.T, b, TORCH_GATES))
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


# ------------------------------------------------------------------------------------------------ flax

_FLAX_GATE_NAMES = {"i": "i", "f": "f", "a": "g", "o": "o"}


def from_flax(params) -> LSTMParams:
    """Flax ``LSTMCell`` / ``OptimizedLSTMCell`` parameters (linen or nnx) -> ``LSTMParams``.

    Flax computes ``i = sigmoid(x @ W_ii + h @ W_hi + b_hi)`` and likewise f, g (tanh), o: one kernel per
    gate on each side and **one bias per gate, on the hidden side** (``hi``, ``hf``, ``hg``, ``ho``). The
    nnx ``OptimizedLSTMCell`` fuses them: ``dense_i [D, 4H]`` and ``dense_h [H, 4H]`` + bias, gate order
    i, f, g, o. Flax's kernels are already ``[in, out]``, so only the blocks are reordered.

    Flax's carry is **(c, h)**; jlstm's is (h, c): use ``from_flax_carry`` / ``to_flax_carry``.

    Args:
      params: any of: a linen ``variables`` dict (``{"params": {...}}``) or its ``"params"`` entry, with
        keys ``ii, if, ig, io`` (``kernel [D, H]``) and ``hi, hf, hg, ho`` (``kernel [H, H]``, ``bias
        [H]``); an ``nnx.LSTMCell`` (attributes ``ii, if_, ...``) or ``nnx.OptimizedLSTMCell`` (``dense_i``,
        ``dense_h``); or their ``nnx.state``.

    Returns:
      ``LSTMParams`` (W ``[D, 4H]``, U ``[H, 4H]``, b ``[4H]``).

    Example:
      >>> cell = flax.linen.LSTMCell(features=4)
      >>> variables = cell.init(key, cell.initialize_carry(key, (2, 3)), jnp.ones((2, 3)))
      >>> params = jlstm.interop.from_flax(variables)
    """
    where = "jlstm.interop.from_flax"
    tree = _plain(params)
    if not isinstance(tree, Mapping):
        raise TypeError(
            f"{where}: params must be a Flax params dict, an nnx LSTM cell or its state; got "
            f"{type(params).__name__}."
        )
    if "params" in tree and isinstance(tree["params"], Mapping):
        tree = tree["params"]
    # Wrappers such as flax.linen.RNN nest the cell one level down ({"cell": {...}}): follow a lone child.
    while "hi" not in tree and "dense_h" not in tree and len(tree) == 1:
        (child,) = tree.values()
        if not isinstance(child, Mapping):
            break
        tree = child
    if "dense_i" in tree and "dense_h" in tree:  # nnx.OptimizedLSTMCell
        try:
            Wh = _np(tree["dense_h"]["kernel"])
            H = Wh.shape[-1] // 4
            U = _array(where, "dense_h.kernel", Wh, (H, 4 * H), "[H, 4H]")
            W = _array(where, "dense_i.kernel", tree["dense_i"]["kernel"], (None, 4 * H), "[D, 4H]")
            b = _array(where, "dense_h.bias", tree["dense_h"]["bias"], (4 * H,), "[4H]")
        except KeyError as e:
            raise ValueError(
                f"{where}: dense_i needs 'kernel' and dense_h 'kernel' and 'bias'; missing {e}."
            ) from e
        return _params(W, U, b, FLAX_GATES)
    W, U, b = [], [], []
    H = D = None
    for gate in FLAX_GATES:
        g = _FLAX_GATE_NAMES[gate]
        ni = f"i{g}" if f"i{g}" in tree else f"i{g}_"  # nnx calls the input forget gate `if_`
        nh = f"h{g}"
        if ni not in tree or nh not in tree:
            raise ValueError(
                f"{where}: expected the LSTMCell parameters ii, if, ig, io, hi, hf, hg, ho (or nnx's "
                f"dense_i/dense_h); {f'i{g}' if ni not in tree else nh!r} is missing. "
                f"Got keys {sorted(tree)}."
            )
        try:
            kh, kb, ki = tree[nh]["kernel"], tree[nh]["bias"], tree[ni]["kernel"]
        except (KeyError, TypeError) as e:
            raise ValueError(
                f"{where}: {nh} needs 'kernel' and 'bias', {ni} needs 'kernel'; missing {e}."
            ) from e
        kh = _np(kh)
        H = kh.shape[-1] if H is None else H
        U.append(_array(where, f"{nh}.kernel", kh, (H, H), "[H, H]"))
        b.append(_array(where, f"{nh}.bias", kb, (H,), "[H]"))
        W.append(_array(where, f"{ni}.kernel", ki, (D, H), "[D, H]"))
        D = W[-1].shape[0]
    return _params(*(np.concatenate(m, axis=-1) for m in (W, U, b)), FLAX_GATES)


def to_flax(params: LSTMParams, *, layout: str = "linen") -> dict:
    """``LSTMParams`` -> Flax LSTM parameters, the inverse of ``from_flax``.

    Args:
      params: ``LSTMParams``.
      layout: ``"linen"`` (``{"ii": {"kernel"}, ..., "hi": {"kernel", "bias"}, ...}``, for both linen
        cells: wrap it as ``{"params": ...}`` to ``apply``), ``"nnx"`` (the same with ``if_``, for
        ``nnx.LSTMCell``) or ``"nnx_optimized"`` (``dense_i``/``dense_h``, for ``nnx.OptimizedLSTMCell``).
        Load an nnx dict with ``nnx.replace_by_pure_dict(state, d)`` then ``nnx.update(cell, state)``.

    Returns:
      A nested dict of jax arrays; the bias sits on the hidden side (``hi`` ... ``ho``).
    """
    where = "jlstm.interop.to_flax"
    layouts = ("linen", "nnx", "nnx_optimized")
    if layout not in layouts:
        raise ValueError(f"{where}: layout must be one of {layouts}; got {layout!r}.")
    W, U, b = (jnp.asarray(a) for a in _layout(params, where, FLAX_GATES))
    if layout == "nnx_optimized":
        return {"dense_i": {"kernel": W}, "dense_h": {"kernel": U, "bias": b}}
    out = {}
    for k, gate in enumerate(FLAX_GATES):
        g = _FLAX_GATE_NAMES[gate]
        cols = slice(k * U.shape[0], (k + 1) * U.shape[0])
        out[f"i{g}_" if (layout == "nnx" and g == "f") else f"i{g}"] = {"kernel": W[:, cols]}
        out[f"h{g}"] = {"kernel": U[:, cols], "bias": b[cols]}
    return out


def from_flax_carry(carry) -> LSTMState:
    """Flax's carry ``(c, h)`` -> jlstm's ``LSTMState(h, c)``."""
    if not (isinstance(carry, (tuple, list)) and len(carry) == 2):
        raise TypeError(
            f"jlstm.interop.from_flax_carry: carry must be Flax's (c, h) pair; got {type(carry).__name__}."
        )
    c, h = carry
    return LSTMState(h, c)


def to_flax_carry(state) -> tuple:
    """jlstm's ``LSTMState(h, c)`` -> Flax's carry ``(c, h)``."""
    if not (isinstance(state, (tuple, list)) and len(state) == 2):
        raise TypeError(
            f"jlstm.interop.to_flax_carry: state must be an (h, c) pair; got {type(state).__name__}."
        )
    h, c = state
    return (c, h)


# ----------------------------------------------------------------------------------------------- keras


def from_keras(layer_or_weights) -> LSTMParams:
    """Keras 3 ``LSTM`` weights -> ``LSTMParams``.

    Keras computes ``z = x @ kernel + h @ recurrent_kernel + bias`` with blocks **i, f, c, o** (``c`` is
    the tanh candidate, jlstm's ``a``): the same layout as jlstm, only the blocks are reordered. The carry
    ``[h, c]`` (``initial_state``, ``return_state``) has jlstm's order.

    Args:
      layer_or_weights: a ``keras.layers.LSTM`` or ``keras.layers.LSTMCell`` (its activations must be
        the default tanh/sigmoid), or its ``get_weights()``: ``[kernel [D, 4H], recurrent_kernel [H, 4H],
        bias [4H]]`` (the bias absent when ``use_bias=False``).

    Returns:
      ``LSTMParams``.

    Example:
      >>> layer = keras.layers.LSTM(4, return_sequences=True); layer.build((None, None, 3))
      >>> params = jlstm.interop.from_keras(layer)
    """
    where = "jlstm.interop.from_keras"
    obj = layer_or_weights
    if hasattr(obj, "get_weights"):
        cell = getattr(obj, "cell", obj)
        for attr, want in (("activation", "tanh"), ("recurrent_activation", "sigmoid")):
            fn = getattr(cell, attr, None)
            if fn is not None and getattr(fn, "__name__", want) != want:
                raise ValueError(
                    f"{where}: the layer's {attr} is {fn.__name__}; jlstm computes the standard LSTM with "
                    f"{attr}={want!r}."
                )
        if not getattr(obj, "built", True):
            raise ValueError(f"{where}: the layer has no weights yet; build it or call it on an input first.")
        weights = list(obj.weights)  # not get_weights(), whose numpy() conversion warns under numpy 2
    elif isinstance(obj, Sequence):
        weights = list(obj)
    else:
        raise TypeError(
            f"{where}: layer_or_weights must be a keras LSTM layer or [kernel, recurrent_kernel, bias]; got "
            f"{type(obj).__name__}."
        )
    if len(weights) not in (2, 3):
        raise ValueError(
            f"{where}: expected [kernel, recurrent_kernel, bias] (or without bias); "
            f"got {len(weights)} arrays."
        )
    R = _np(weights[1])
    H = R.shape[-1] // 4 if R.ndim == 2 else -1
    U = _array(where, "recurrent_kernel", R, (H, 4 * H), "[H, 4H]")
    W = _array(where, "kernel", weights[0], (None, 4 * H), "[D, 4H]")
    b = _array(where, "bias", weights[2], (4 * H,), "[4H]") if len(weights) == 3 else _zeros_like_bias(U)
    return _params(W, U, b, KERAS_GATES)


def to_keras(params: LSTMParams) -> list[np.ndarray]:
    """``LSTMParams`` -> ``[kernel, recurrent_kernel, bias]`` (numpy; gates i, f, c, o) for set_weights."""
    return list(_layout(params, "jlstm.interop.to_keras", KERAS_GATES))


# ---------------------------------------------------------------------------------------------- haiku


def from_haiku(params, *, name: str | None = None, forget_bias: float = 1.0) -> LSTMParams:
    """``hk.LSTM`` parameters -> ``LSTMParams``.

    Haiku computes ``[i, g, f, o] = [x, h] @ w + b`` (one joint matrix on the concatenation, **input
    first**; blocks i, g, f, o) and then ``f = sigmoid(f + 1)``: that constant is folded into jlstm's
    forget bias, ``b_f = b_f(haiku) + forget_bias``. So ``W = w[:D]``, ``U = w[D:]``.
    Haiku's ``LSTMState(hidden, cell)`` has jlstm's order: ``jlstm.LSTMState(*state)``.

    Args:
      params: the ``params`` of an ``hk.transform``-ed function using one ``hk.LSTM``: a mapping with a
        module ``".../linear"`` holding ``w [D + H, 4H]`` and ``b [4H]``, or that inner dict itself.
      name: the module key (e.g. ``"lstm/linear"``) when ``params`` holds several linear modules.
      forget_bias: the constant Haiku adds to the forget gate (1.0). Pass 0.0 to convert gradients or
        other linear quantities, which carry no such offset.

    Returns:
      ``LSTMParams``. ``to_haiku`` is its inverse up to the rounding of ``b_f + 1 - 1``.

    Example:
      >>> f = hk.transform(lambda x, s: hk.LSTM(4)(x, s))
      >>> hk_params = f.init(key, x, hk.LSTM(4).initial_state(2))  # (inside a transform)
      >>> params = jlstm.interop.from_haiku(hk_params)
    """
    where = "jlstm.interop.from_haiku"
    tree = _plain(params)
    if not isinstance(tree, Mapping):
        raise TypeError(f"{where}: params must be a Haiku params mapping; got {type(params).__name__}.")
    if "w" in tree:
        inner, key = tree, "params"
    else:
        if name is not None:
            if name not in tree:
                raise ValueError(f"{where}: no module {name!r} in params; got {sorted(tree)}.")
            key = name
        else:
            candidates = [k for k in tree if k.split("/")[-1] == "linear" and "w" in tree[k]]
            lstm = [k for k in candidates if k.endswith("lstm/linear")]
            if len(lstm) == 1:
                candidates = lstm
            if len(candidates) != 1:
                raise ValueError(
                    f"{where}: expected one hk.LSTM module '<name>/linear' in params; "
                    f"found {candidates or 'none'} "
                    f"among {sorted(tree)}. Pass name=... to choose."
                )
            key = candidates[0]
        inner = tree[key]
    w = _np(inner["w"])
    H = w.shape[-1] // 4 if w.ndim == 2 else -1
    w = _array(where, f"{key}['w']", w, (None, 4 * H), "[D + H, 4H]")
    D = w.shape[0] - H
    if D <= 0:
        raise ValueError(f"{where}: {key}['w'] must be [D + H, 4H] with H = {H}; got shape {w.shape}.")
    b = (
        _array(where, f"{key}['b']", inner["b"], (4 * H,), "[4H]")
        if "b" in inner
        else np.zeros(4 * H, w.dtype)
    )
    b = b.copy()
    b[2 * H : 3 * H] += forget_bias  # haiku's blocks i, g, f, o: f is the third
    return _params(w[:D], w[D:], b, HAIKU_GATES)


def to_haiku(params: LSTMParams, *, name: str = "lstm", forget_bias: float = 1.0) -> dict:
    """``LSTMParams`` -> ``{f"{name}/linear": {"w": [D + H, 4H], "b": [4H]}}`` for ``hk.LSTM``.

    The inverse of ``from_haiku``: blocks i, g, f, o, ``w = [W; U]`` and ``forget_bias`` subtracted from
    the forget block (Haiku adds it back in its forward).
    """
    W, U, b = _layout(params, "jlstm.interop.to_haiku", HAIKU_GATES)
    H = U.shape[0]
    b = b.copy()
    b[2 * H : 3 * H] -= forget_bias
    return {f"{name}/linear": {"w": jnp.asarray(np.concatenate([W, U], axis=0)), "b": jnp.asarray(b)}}


# -------------------------------------------------------------------------------------------- equinox


def from_equinox(cell) -> LSTMParams:
    """``eqx.nn.LSTMCell`` -> ``LSTMParams``.

    Equinox computes ``[i; f; g; o] = weight_ih @ x + weight_hh @ h + bias`` (``weight_ih [4H, D]``,
    ``weight_hh [4H, H]``, blocks i, f, g, o), so ``W = weight_ih^T``, ``U = weight_hh^T``. Its carry
    ``(h, c)`` has jlstm's order.

    Example:
      >>> cell = eqx.nn.LSTMCell(3, 4, key=key)
      >>> params = jlstm.interop.from_equinox(cell)
    """
    where = "jlstm.interop.from_equinox"
    if type(cell).__name__ != "LSTMCell" or not all(
        hasattr(cell, a) for a in ("weight_ih", "weight_hh", "bias")
    ):
        raise TypeError(f"{where}: cell must be an eqx.nn.LSTMCell; got {type(cell).__name__}.")
    Whh = _np(cell.weight_hh)
    H = Whh.shape[-1] if Whh.ndim == 2 else -1
    U = _array(where, "cell.weight_hh", Whh, (4 * H, H), "[4H, H]")
    W = _array(where, "cell.weight_ih", cell.weight_ih, (4 * H, None), "[4H, D]")
    b = (
        _zeros_like_bias(U.T)
        if cell.bias is None
        else _array(where, "cell.bias", cell.bias, (4 * H,), "[4H]")
    )
    return _params(W.T, U.T, b, EQUINOX_GATES)


def to_equinox(params: LSTMParams):
    """``LSTMParams`` -> a new ``eqx.nn.LSTMCell(D, H)`` holding these weights (dtype kept)."""
    import equinox as eqx
    import jax

    W, U, b = _layout(params, "jlstm.interop.to_equinox", EQUINOX_GATES)
    # The key only feeds the initialiser whose values are all replaced just below.
    cell = eqx.nn.LSTMCell(W.shape[0], U.shape[0], dtype=jnp.dtype(W.dtype), key=jax.random.key(0))
    return eqx.tree_at(
        lambda m: (m.weight_ih, m.weight_hh, m.bias),
        cell,
        (jnp.asarray(W.T), jnp.asarray(U.T), jnp.asarray(b)),
    )


# -------------------------------------------------------------------------------- deeplearning.ai (004)


def from_ng(parameters: Mapping) -> LSTMParams:
    """The deeplearning.ai notation (source 004) -> ``LSTMParams``.

    The course's cell acts on the column ``concat = [a_prev; x_t]`` (``a_prev`` first)::

        ft = sigmoid(Wf @ concat + bf)    it = sigmoid(Wi @ concat + bi)    cct = tanh(Wc @ concat + bc)
        ot = sigmoid(Wo @ concat + bo)    c_next = ft * c_prev + it * cct   a_next = ot * tanh(c_next)

    with ``W? [n_a, n_a + n_x]`` and ``b? [n_a, 1]``. So jlstm's ``W`` block of gate ``?`` is
    ``W?[:, n_a:]^T``, its ``U`` block ``W?[:, :n_a]^T`` and its ``b`` block ``b?[:, 0]``; ``cct`` is jlstm's
    ``a``. The course's carry ``(a, c)`` is jlstm's (h, c), each transposed: ``LSTMState(a.T, c.T)``;
    its inputs ``x [n_x, m, T_x]`` are jlstm's ``xs = x.transpose(1, 2, 0)`` (``[m, T_x, n_x]``).

    Args:
      parameters: a dict with ``Wf, bf, Wi, bi, Wc, bc, Wo, bo`` (the output layer ``Wy, by`` is ignored).

    Returns:
      ``LSTMParams``.
    """
    where = "jlstm.interop.from_ng"
    if not isinstance(parameters, Mapping):
        raise TypeError(
            f"{where}: parameters must be a dict with Wf, bf, Wi, ...; got {type(parameters).__name__}."
        )
    missing = [f"{k}{g}" for g in ("f", "i", "c", "o") for k in ("W", "b") if f"{k}{g}" not in parameters]
    if missing:
        raise ValueError(f"{where}: parameters is missing {missing}; got keys {sorted(parameters)}.")
    Wf = _np(parameters["Wf"])
    n_a = Wf.shape[0] if Wf.ndim == 2 else -1
    n_x = Wf.shape[1] - n_a if Wf.ndim == 2 else -1
    if n_x <= 0:
        raise ValueError(f"{where}: Wf must be [n_a, n_a + n_x] with n_x > 0; got shape {Wf.shape}.")
    W, U, b = [], [], []
    for gate in JLSTM_GATES:
        g = NG_GATES[gate]
        Wg = _array(where, f"W{g}", parameters[f"W{g}"], (n_a, n_a + n_x), "[n_a, n_a + n_x]")
        bg = _array(where, f"b{g}", parameters[f"b{g}"], (n_a, 1), "[n_a, 1]")
        W.append(Wg[:, n_a:].T)
        U.append(Wg[:, :n_a].T)
        b.append(bg[:, 0])
    return _params(*(np.concatenate(m, axis=-1) for m in (W, U, b)), JLSTM_GATES)


def to_ng(params: LSTMParams) -> dict[str, np.ndarray]:
    """``LSTMParams`` -> the deeplearning.ai dict ``{Wf, bf, Wi, bi, Wc, bc, Wo, bo}`` (numpy), the inverse
    of ``from_ng``: ``W? = [U_?^T, W_?^T]`` (``[n_a, n_a + n_x]``, acting on ``[a_prev; x]``),
    ``b? [n_a, 1]``."""
    W, U, b = _layout(params, "jlstm.interop.to_ng")
    H = U.shape[0]
    out = {}
    for k, gate in enumerate(JLSTM_GATES):
        cols = slice(k * H, (k + 1) * H)
        g = NG_GATES[gate]
        out[f"W{g}"] = np.concatenate([U[:, cols].T, W[:, cols].T], axis=1)
        out[f"b{g}"] = b[cols].reshape(H, 1).copy()
    return out


# ---------------------------------------------------------------------------------------- Seo (003)


def from_seo(weights: Mapping) -> LSTMParams:
    """Seo's eight matrices (source 003) -> ``LSTMParams``.

    Source 003 gives every gate its own input weights and recurrent weights ("8 weights"), with the
    input dotted into the regular weights and the previous output into the recurrent ones; we write it in
    row-vector form, as jlstm does::

        A = tanh(x @ Wa + out_prev @ Wreca + ba)      I = sigmoid(x @ Wi + out_prev @ Wreci + bi)
        F = sigmoid(x @ Wf + out_prev @ Wrecf + bf)   O = sigmoid(x @ Wo + out_prev @ Wreco + bo)
        S = A * I + F * S_prev                        out = tanh(S) * O

    so jlstm's ``W = [Wa | Wi | Wf | Wo]`` and ``U = [Wreca | Wreci | Wrecf | Wreco]``: gate order a, i, f,
    o as in source 002. The carry (out, S) is jlstm's (h, c).

    Args:
      weights: a dict with ``Wa, Wi, Wf, Wo`` (``[D, H]``), ``Wreca, Wreci, Wrecf, Wreco`` (``[H, H]``)
        and optionally biases ``ba, bi, bf, bo`` (``[H]``; the source has none: zero if absent).

    Returns:
      ``LSTMParams``.
    """
    where = "jlstm.interop.from_seo"
    if not isinstance(weights, Mapping):
        raise TypeError(
            f"{where}: weights must be a dict with Wa, Wi, ..., Wreco; got {type(weights).__name__}."
        )
    missing = [f"{k}{g}" for k in ("W", "Wrec") for g in SEO_GATES if f"{k}{g}" not in weights]
    if missing:
        raise ValueError(f"{where}: weights is missing {missing}; got keys {sorted(weights)}.")
    biases = [f"b{g}" for g in SEO_GATES]
    present = [k in weights for k in biases]
    if any(present) and not all(present):
        raise ValueError(
            f"{where}: give all of the biases {biases} or none; got {[k for k in biases if k in weights]}."
        )
    R = _np(weights["Wreca"])
    H = R.shape[0] if R.ndim == 2 else -1
    U = [_array(where, f"Wrec{g}", weights[f"Wrec{g}"], (H, H), "[H, H]") for g in SEO_GATES]
    W, D = [], None
    for g in SEO_GATES:
        W.append(_array(where, f"W{g}", weights[f"W{g}"], (D, H), "[D, H]"))
        D = W[-1].shape[0]
    if all(present):
        b = [_array(where, f"b{g}", weights[f"b{g}"], (H,), "[H]") for g in SEO_GATES]
    else:
        b = [np.zeros(H, U[0].dtype)] * 4
    return _params(*(np.concatenate(m, axis=-1) for m in (W, U, b)), SEO_GATES)


def to_seo(params: LSTMParams) -> dict[str, np.ndarray]:
    """``LSTMParams`` -> Seo's ``{Wa, Wi, Wf, Wo, Wreca, ..., Wreco, ba, bi, bf, bo}`` (numpy), the inverse
    of ``from_seo`` (the biases are always included)."""
    W, U, b = _layout(params, "jlstm.interop.to_seo")
    H = U.shape[0]
    out = {}
    for k, g in enumerate(SEO_GATES):
        cols = slice(k * H, (k + 1) * H)
        out[f"W{g}"] = W[:, cols].copy()
        out[f"Wrec{g}"] = U[:, cols].copy()
        out[f"b{g}"] = b[cols].copy()
    return out


__all__ = [
    "from_equinox",
    "from_flax",
    "from_flax_carry",
    "from_haiku",
    "from_keras",
    "from_ng",
    "from_seo",
    "from_torch",
    "from_torch_state",
    "to_equinox",
    "to_flax",
    "to_flax_carry",
    "to_haiku",
    "to_keras",
    "to_ng",
    "to_seo",
    "to_torch",
    "to_torch_state",
]
