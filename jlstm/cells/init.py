"""Building a ``CellSpec`` from ``jlstm.init``'s options (with their checks) and drawing its parameters."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jlstm.cells.spec import VARIANTS, CellParams, CellSpec, num_gates

KNOWN = tuple(v for v in VARIANTS if v is not None)


def _positive(name, v, where, *, integer=False):
    kinds = (int,) if integer else (int, float)
    if isinstance(v, bool) or not isinstance(v, kinds) or v <= 0:
        raise ValueError(
            f"{where}: {name} must be None or a positive {'int' if integer else 'number'}; got {v!r}."
        )


def make_spec(
    hidden_size, *, peephole, proj_size, layer_norm, cell_clip, proj_clip, variant, where
) -> CellSpec:
    """The checked ``CellSpec`` of ``jlstm.init``'s options."""
    if variant not in VARIANTS:
        raise ValueError(
            f"{where}: variant must be None or one of {KNOWN} (Greff et al. 2017; their 'V' is "
            f"peephole=True and 'NP' is the default cell); got {variant!r}."
        )
    if proj_size is not None:
        _positive("proj_size", proj_size, where, integer=True)
        if proj_size >= hidden_size:
            raise ValueError(
                f"{where}: proj_size must be smaller than hidden_size = {hidden_size} (as torch.nn.LSTM); "
                f"got proj_size={proj_size}."
            )
    for name, v in (("cell_clip", cell_clip), ("proj_clip", proj_clip)):
        if v is not None:
            _positive(name, v, where)
    if proj_clip is not None and proj_size is None:
        raise ValueError(f"{where}: proj_clip clips the projection; it needs proj_size (got proj_size=None).")
    for name, v in (("peephole", peephole), ("layer_norm", layer_norm)):
        if not isinstance(v, bool):
            raise TypeError(f"{where}: {name} must be a bool; got {v!r}.")
    return CellSpec(
        variant,
        peephole,
        proj_size,
        layer_norm,
        None if cell_clip is None else float(cell_clip),
        None if proj_clip is None else float(proj_clip),
    )


def init_cell(key, input_size: int, hidden_size: int, spec: CellSpec, *, forget_bias, dtype) -> CellParams:
    """Weights uniform in ``+-1/sqrt(H)`` as torch draws them (peepholes and ``P`` too), zero bias but the
    forget gate's ``forget_bias`` (CIFG: ``-forget_bias`` on i, so that ``f = 1 - i`` starts the same), layer
    norm gains one and biases zero."""
    H, gates = hidden_size, spec.gates
    G, R = len(gates), spec.proj_size or hidden_size
    bound = 1.0 / float(H) ** 0.5
    k_w, k_u, k_p, k_proj = jax.random.split(key, 4)
    uniform = lambda k, shape: jax.random.uniform(k, shape, dtype, -bound, bound)  # noqa: E731
    b = jnp.zeros((G * H,), dtype)
    if "f" in gates:
        b = b.at[gates.index("f") * H : (gates.index("f") + 1) * H].set(forget_bias)
    elif spec.variant == "CIFG":
        b = b.at[gates.index("i") * H : (gates.index("i") + 1) * H].set(-forget_bias)
    extra = {}
    for name, k in zip(spec.peepholes, jax.random.split(k_p, 3)):
        extra[name] = uniform(k, (H,))
    if spec.proj_size is not None:
        extra["P"] = uniform(k_proj, (H, R))
    if spec.layer_norm:
        for part, n in (("x", G * H), ("h", G * H), ("c", H)):
            extra[f"gamma_{part}"], extra[f"beta_{part}"] = jnp.ones((n,), dtype), jnp.zeros((n,), dtype)
    return CellParams(uniform(k_w, (input_size, G * H)), uniform(k_u, (R, G * H)), b, extra, spec)


def spec_name(spec) -> str:
    return f"variant {spec.variant!r}" if isinstance(spec, CellSpec) else f"the {spec.name!r} cell"


def check_cell_params(params: CellParams, where: str) -> None:
    """Shapes of a ``CellParams`` against its spec, each mismatch named."""
    spec, G = params.spec, num_gates(params.spec)
    W, U = params.W, params.U
    if W.ndim != 2 or W.shape[1] % G:
        raise ValueError(f"{where}: params.W must be [D, {G}H] for {spec_name(spec)}; got {W.shape}.")
    H = W.shape[1] // G
    if not isinstance(spec, CellSpec):  # a user's cell: its theta is its own business
        heads = U.shape[0] if U.ndim == 3 else 1  # block-diagonal: U [heads, R / heads, GH / heads]
        dense = U.ndim == 2 and U.shape[1] == G * H
        blocks = U.ndim == 3 and H % heads == 0 and U.shape[2] == G * H // heads
        if not (dense or blocks) or params.b.shape != (G * H,):
            raise ValueError(
                f"{where}: a {spec_name(spec)} cell needs U [R, {G * H}] (or block-diagonal by heads, "
                f"[heads, R / heads, {G} H / heads] with H = {H} divisible by heads) and b [{G * H}]; "
                f"got U {U.shape}, b {params.b.shape}."
            )
        return
    R = spec.proj_size or H
    want = {"U": (R, G * H), "b": (G * H,)} | {n: (H,) for n in spec.peepholes}
    if spec.proj_size is not None:
        want["P"] = (H, R)
    if spec.layer_norm:
        want |= {
            f"{g}_{p}": (n,) for p, n in (("x", G * H), ("h", G * H), ("c", H)) for g in ("gamma", "beta")
        }
    have = {"U": U, "b": params.b} | dict(params.extra)
    for name, shape in want.items():
        got = getattr(have.get(name), "shape", None)
        if got != shape:
            raise ValueError(f"{where}: params {name} must have shape {shape} for {spec}; got {got}.")
    unknown = set(params.extra) - set(want)
    if unknown:
        raise ValueError(f"{where}: params.extra has entries {sorted(unknown)} that {spec} does not use.")
