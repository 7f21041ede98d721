"""The LSTM family as one ``Cell``: the vanilla equations with every variant's stage in its place.

Forward, per step (each line's variant in brackets; ``docs/variants.md`` derives each backward line)::

    z   = zx + zh                 [layer norm: LN(zx) + LN(zh) + b]
    z^i += p_i * c_{t-1};  z^f += p_f * c_{t-1}                         [peephole]
    a = tanh z^a [NIAF: z^a];  i = s(z^i) [NIG: 1];  f = s(z^f) [NFG: 1, CIFG: 1 - i]
    c~  = clip(a * i + f * c_{t-1})                                     [cell_clip]
    z^o += p_o * c~;  o = s(z^o) [NOG: 1]                               [peephole]
    m   = o * tanh(LN(c~))        [layer norm; NOAF: no tanh]
    r   = clip(m @ P)             [projection, proj_clip]
    c_t = zone(c_{t-1}, c~);  h_t = zone(h_{t-1}, r)                    [zoneout]
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jlstm.cells import greff, peephole
from jlstm.cells.clip import clip, clip_bwd
from jlstm.cells.layer_norm import ln, ln_bwd
from jlstm.cells.projection import project, project_bwd
from jlstm.cells.spec import CellSpec
from jlstm.cells.zoneout import step_masks, zone, zone_bwd
from jlstm.core.interface import Cell, CellGrads


def _split(z, names):
    H = z.shape[-1] // len(names)
    return {g: z[..., k * H : (k + 1) * H] for k, g in enumerate(names)}


def _forward(spec: CellSpec, rates, theta, zx, zh, h_prev, c_prev, noise):
    res = {}
    if spec.layer_norm:
        nx, res["ln_x"] = ln(zx, theta["gamma_x"], theta["beta_x"])
        nh, res["ln_h"] = ln(zh, theta["gamma_h"], theta["beta_h"])
        z = nx + nh + theta["b"][None]
    else:
        z = zx + zh
    z = peephole.input_gates(_split(z, spec.gates), theta, c_prev)
    a, i, f = greff.gates(z, spec.variant)
    c_new, res["clip_c"] = clip(a * i + f * c_prev, spec.cell_clip)
    if "o" in z:
        z["o"] = peephole.output_gate(z["o"], theta, c_new)
    o = greff.output_gate(z)
    n = c_new
    if spec.layer_norm:
        n, res["ln_c"] = ln(c_new, theta["gamma_c"], theta["beta_c"])
    s = greff.output_activation(n, spec.variant)
    m = o * s
    r, res["clip_r"] = clip(project(m, theta), spec.proj_clip)
    d_c, d_h = step_masks(noise, rates)
    res.update(a=a, s=s, **{g: v for g, v in (("i", i), ("f", f), ("o", o)) if g in spec.gates})
    if spec.proj_size is not None:
        res["m"] = m
    if d_c is not None:
        res["c_new"] = c_new  # the candidate differs from the carried c
    return zone(h_prev, r, d_h), zone(c_prev, c_new, d_c), res


def _backward(spec: CellSpec, rates, theta, res, c_prev, c, g_h, dh, dc, noise):
    grads: dict[str, jax.Array] = {}
    v = spec.variant
    a, s = res["a"], res["s"]
    i = res.get("i", 1.0)
    f = res.get("f", (1 - i) if v == "CIFG" else 1.0)
    o = res.get("o", 1.0)
    c_new = res.get("c_new", c)
    d_c, d_h = step_masks(noise, rates)
    d_r, dh_direct = zone_bwd(g_h + dh, d_h)  # delta out_t = Delta_t + Delta out_t, then zoneout on h
    dc_new, dc_direct = zone_bwd(dc, d_c)
    d_m = project_bwd(clip_bwd(d_r, res["clip_r"]), res.get("m"), theta, grads)  # delta m = delta r P^T
    d_n = greff.output_activation_bwd(d_m * o, s, v)  # delta (o * tanh n) w.r.t. n
    if spec.layer_norm:
        d_n, grads["gamma_c"], grads["beta_c"] = ln_bwd(d_n, res["ln_c"], theta["gamma_c"])
    dz = {}
    if "o" in spec.gates:
        dz["o"] = d_m * s * o * (1 - o)  # delta z^o = delta m * tanh(c) * o (1 - o)
    # delta state_t = delta m * o * tanh'(c) + delta state_{t+1} f_{t+1} + delta z^o * p_o, masked by the clip
    ds = clip_bwd(d_n + dc_new + peephole.output_gate_bwd(dz.get("o"), theta, c_new, grads), res["clip_c"])
    dz_aif, dc_prev = greff.cell_update_bwd(ds, a, i, f, c_prev, spec.gates, v)
    dz.update(dz_aif)
    dc_prev = dc_prev + peephole.input_gates_bwd(dz, theta, c_prev, grads)  # + delta z^{i,f} * p_{i,f}
    if dc_direct is not None:
        dc_prev = dc_prev + dc_direct
    dzx = jnp.concatenate([dz[g] for g in spec.gates], axis=-1)
    dzh: jax.Array | None = dzx
    if spec.layer_norm:
        grads["b"] = dzx.sum(0)
        dzx_raw = dzx
        dzx, grads["gamma_x"], grads["beta_x"] = ln_bwd(dzx, res["ln_x"], theta["gamma_x"])
        dzh, grads["gamma_h"], grads["beta_h"] = ln_bwd(dzx_raw, res["ln_h"], theta["gamma_h"])
    else:
        dzh = None
    return CellGrads(dzx, dzh, dh_direct, dc_prev, grads, ds)


@functools.cache
def family_cell(spec: CellSpec, zoneout: tuple[float, float] | None = None) -> Cell:
    """The ``Cell`` of ``spec`` with zoneout rates ``(rate_c, rate_h)`` (None: no zoneout). Cached, so the
    same options give the same object (a static argument of the jitted scan)."""
    return Cell(
        name=f"lstm[{spec}]",
        num_gates=len(spec.gates),
        forward=functools.partial(_forward, spec, zoneout),
        backward=functools.partial(_backward, spec, zoneout),
        bias_in_projection=not spec.layer_norm,
    )
