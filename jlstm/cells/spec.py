"""What kind of cell a parameter set is: ``CellSpec``, and ``CellParams``, the pytree that carries it."""

from __future__ import annotations

import dataclasses

import jax

#: Greff et al. (2017) ablations of the peephole LSTM, by the gates they keep (in jlstm's order).
VARIANTS: dict[str | None, tuple[str, ...]] = {
    None: ("a", "i", "f", "o"),
    "NIG": ("a", "f", "o"),  # no input gate: i = 1
    "NFG": ("a", "i", "o"),  # no forget gate: f = 1
    "NOG": ("a", "i", "f"),  # no output gate: o = 1
    "NIAF": ("a", "i", "f", "o"),  # no input activation: a = z^a
    "NOAF": ("a", "i", "f", "o"),  # no output activation: h = o * c
    "CIFG": ("a", "i", "o"),  # coupled input and forget gate: f = 1 - i
}
"""The gate blocks each variant keeps, by name (``None``: the full cell), in jlstm's order a, i, f, o."""


@dataclasses.dataclass(frozen=True)
class CellSpec:
    """The static description of a cell: which variant and which options. Hashable, so it is the
    static part of ``CellParams`` and a key for building the cell once."""

    variant: str | None = None
    peephole: bool = False
    proj_size: int | None = None
    layer_norm: bool = False
    cell_clip: float | None = None
    proj_clip: float | None = None

    @property
    def gates(self) -> tuple[str, ...]:
        """The gate blocks present, a subsequence of ``("a", "i", "f", "o")``."""
        return VARIANTS[self.variant]

    @property
    def peepholes(self) -> tuple[str, ...]:
        """The names of the peephole vectors: ``p_i``, ``p_f``, ``p_o`` for the gates present."""
        return tuple(f"p_{g}" for g in self.gates if g != "a") if self.peephole else ()


def num_gates(spec) -> int:
    """G for a ``CellSpec`` or a user's ``Cell``."""
    return len(spec.gates) if isinstance(spec, CellSpec) else spec.num_gates


@dataclasses.dataclass(frozen=True)
class CellParams:
    """The parameters of a cell variant, a pytree that optax updates directly.

    Attributes:
      W: ``[D, GH]`` input weights (G gate blocks, in the order of ``spec.gates``).
      U: ``[R, GH]`` recurrent weights (R = ``spec.proj_size`` or H).
      b: ``[GH]`` bias.
      extra: the variant's own parameters by name: ``p_i``, ``p_f``, ``p_o`` ``[H]`` (peepholes);
        ``P [H, R]`` (projection); ``gamma_x``, ``beta_x``, ``gamma_h``, ``beta_h`` ``[GH]`` and
        ``gamma_c``, ``beta_c`` ``[H]`` (layer norm).
      spec: the ``CellSpec`` (static: not a leaf), or a user's own ``jlstm.Cell`` (then ``extra`` is that
        cell's ``theta``).
    """

    W: jax.Array
    U: jax.Array
    b: jax.Array
    extra: dict
    spec: object = CellSpec()

    @property
    def input_size(self) -> int:
        return self.W.shape[0]

    @property
    def hidden_size(self) -> int:
        return self.W.shape[1] // num_gates(self.spec)

    @property
    def output_size(self) -> int:
        """R: the width of ``h`` and of the outputs (the projection width, or H)."""
        return self.U.shape[0] if self.U.ndim == 2 else self.U.shape[0] * self.U.shape[1]  # heads x R/heads


jax.tree_util.register_dataclass(CellParams, data_fields=["W", "U", "b", "extra"], meta_fields=["spec"])
