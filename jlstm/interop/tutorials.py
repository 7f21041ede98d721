"""The two tutorial notations: deeplearning.ai's (source 004: ``W? [n_a, n_a + n_x]`` on ``[a_prev; x]``,
gates f, i, c, o) and Seo's eight matrices (source 003: ``W? [D, H]``, ``Wrec? [H, H]``, gates a, i, f, o).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from jlstm.core.params import LSTMParams
from jlstm.interop._common import JLSTM_GATES, _array, _layout, _np, _params

NG_GATES = {"a": "c", "i": "i", "f": "f", "o": "o"}  # jlstm gate -> deeplearning.ai letter (Wc, bc, ...)
SEO_GATES = ("a", "i", "f", "o")  # Wa, Wi, Wf, Wo and Wreca, Wreci, Wrecf, Wreco


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
    W_, U_, b_ = (np.concatenate(m, axis=-1) for m in (W, U, b))
    return _params(W_, U_, b_, JLSTM_GATES)


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
    W_, U_, b_ = (np.concatenate(m, axis=-1) for m in (W, U, b))
    return _params(W_, U_, b_, SEO_GATES)


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
