"""Peephole connections (Gers & Schmidhuber 2000; TF1 ``LSTMCell(use_peepholes=True)``, ONNX ``LSTM``).

Forward: ``z^i += p_i * c_{t-1}``, ``z^f += p_f * c_{t-1}``, and, after the cell update, ``z^o += p_o * c_t``
(the output gate looks at the *new* cell state). Backward (docs/variants.md, "Peepholes"):

    delta c_t     += delta z^o * p_o                              (before delta c flows back through f)
    delta c_{t-1} += delta z^i * p_i + delta z^f * p_f
    dp_i = sum_b delta z^i * c_{t-1}   dp_f = sum_b delta z^f * c_{t-1}   dp_o = sum_b delta z^o * c_t
"""

from __future__ import annotations


def input_gates(z: dict, theta: dict, c_prev):
    """``z^i += p_i * c_{t-1}``, ``z^f += p_f * c_{t-1}`` for the gates present (``z`` by gate name)."""
    peeps = {g: theta[f"p_{g}"][None] * c_prev for g in ("i", "f") if f"p_{g}" in theta}
    return {g: v + peeps[g] if g in peeps else v for g, v in z.items()}


def output_gate(z_o, theta: dict, c):
    """``z^o += p_o * c_t``."""
    return z_o + theta["p_o"][None] * c if "p_o" in theta else z_o


def output_gate_bwd(dz_o, theta: dict, c, grads: dict):
    """Returns the term ``delta z^o * p_o`` of ``delta c_t``; records ``dp_o``."""
    if "p_o" not in theta:
        return 0
    grads["p_o"] = (dz_o * c).sum(0)
    return dz_o * theta["p_o"][None]


def input_gates_bwd(dz: dict, theta: dict, c_prev, grads: dict):
    """The terms ``delta z^i * p_i + delta z^f * p_f`` of ``delta c_{t-1}``; records ``dp_i``, ``dp_f``."""
    out = 0
    for g in ("i", "f"):
        if f"p_{g}" in theta:
            grads[f"p_{g}"] = (dz[g] * c_prev).sum(0)
            out = out + dz[g] * theta[f"p_{g}"][None]
    return out
