"""The worked example of source 002 ("Backpropagating an LSTM: a numerical example"), reproduced.

Every number the source prints is listed here as printed (a string, so its precision is kept), next to
the quantity jlstm computes. The source rounds each intermediate to 5 digits and feeds the rounded
values into the next line, so its later numbers carry that rounding; ``replay`` redoes each line of
the source from the source's own printed inputs with jlstm's equations, which must give the printed
number to half a unit of its last digit.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jlstm.core.backward import backward_step
from jlstm.core.cell import activate, step
from jlstm.core.params import LSTMParams
from jlstm.functional import lstm, lstm_trace
from jlstm.losses import l2_loss

W = [[0.45, 0.95, 0.70, 0.60], [0.25, 0.80, 0.45, 0.40]]  # [D, 4H], columns a, i, f, o
U = [[0.15, 0.80, 0.10, 0.25]]
B = [0.20, 0.65, 0.15, 0.10]
XS = [[1.0, 2.0], [0.5, 3.0]]
YS = [[0.5], [1.25]]
LEARNING_RATE = 0.1

# (name, printed value(s)) in the order the source prints them. Vectors over gates are (a, i, f, o);
# dW is printed by the source as [4 gates x 2 inputs], the transpose of our [D, 4H].
SOURCE: list[tuple[str, str | list]] = [
    ("a_0", "0.81775"),
    ("i_0", "0.96083"),
    ("f_0", "0.85195"),
    ("o_0", "0.81757"),
    ("state_0", "0.78572"),
    ("out_0", "0.53631"),
    ("a_1", "0.84980"),
    ("i_1", "0.98118"),
    ("f_1", "0.87030"),
    ("o_1", "0.84993"),
    ("state_1", "1.5176"),
    ("out_1", "0.77197"),
    ("Delta_1", "-0.47803"),
    ("delta out_1", "-0.47803"),
    ("delta state_1", "-0.07111"),
    ("delta gates_1", ["-0.01938", "-0.00112", "-0.00631", "-0.05538"]),
    ("delta x_1", ["-0.04743", "-0.03073"]),
    ("Delta out_0", "-0.01828"),
    ("Delta_0", "0.03631"),
    ("delta out_0", "0.01803"),
    ("delta state_0", "-0.05349"),
    ("delta gates_0", ["-0.01703", "-0.00165", "0", "0.00176"]),
    ("delta x_0", ["-0.00817", "-0.00487"]),
    ("Delta out_-1", "-0.00343"),
    (
        "dW^T",
        [
            ["-0.02672", "-0.0922"],
            ["-0.00221", "-0.00666"],
            ["-0.00316", "-0.01893"],
            ["-0.02593", "-0.16262"],
        ],
    ),
    ("dU", ["-0.01039", "-0.00060", "-0.00338", "-0.02970"]),
    ("db", ["-0.03641", "-0.00277", "-0.00631", "-0.05362"]),
    (
        "new W^T",
        [["0.45267", "0.25922"], ["0.95022", "0.80067"], ["0.70031", "0.45189"], ["0.60259", "0.41626"]],
    ),
    ("new U", ["0.15104", "0.80006", "0.10034", "0.25297"]),
    ("new b", ["0.20364", "0.65028", "0.15063", "0.10536"]),
]

ERRATA = [
    "Delta out_-1: the source's formula reads U^T . delta gates_1; it must be delta gates_0 (the "
    "source's FAQ agrees, and its printed -0.00343 already uses gates_0). jlstm uses delta gates_t.",
    "dU = sum_t delta gates_{t+1} (x) out_t pairs each step's delta gates with the previous output; "
    "jlstm writes it as sum_t delta gates_t (x) out_{t-1} with out_{-1} = h0.",
    "db = sum_t delta gates_{t+1} in the source's notation is sum_t delta gates_t over both steps.",
    "The label 1.25 is unreachable: out = tanh(state) * o lies in (-1, 1). The example keeps it.",
    "The source rounds every intermediate to 5 digits and reuses the rounded value, so numbers late in "
    "the chain (dW, dU, db) differ from exact arithmetic by up to a few units in the last digit; "
    "'replay' redoes each source line from the source's own printed inputs.",
]


def params() -> LSTMParams:
    """The source's weights as ``LSTMParams`` (float64 if x64 is on, else float32)."""
    return LSTMParams(jnp.asarray(W), jnp.asarray(U), jnp.asarray(B))


def computed() -> dict[str, np.ndarray]:
    """Every quantity the source prints, as jlstm computes it in full precision."""
    p = params()
    xs, ys = jnp.asarray(XS), jnp.asarray(YS)
    hs, _ = lstm(p, xs)
    # Forward intermediates: run the cell's two stages so gates and states come out separately.
    h, c = jnp.zeros((1,)), jnp.zeros((1,))
    fwd = {}
    for t in range(2):
        g = activate(xs[t] @ p.W + h @ p.U + p.b)
        h, c = step(g, c)
        for k, name in enumerate("aifo"):
            fwd[f"{name}_{t}"] = g[k]
        fwd[f"state_{t}"], fwd[f"out_{t}"] = c[0], h[0]
    Delta = hs - ys  # dE/d out_t for E = sum_t (out_t - y_t)^2 / 2
    dparams, _, _, tr = lstm_trace(p, xs, Delta)
    grads = jax.grad(lambda q: l2_loss(lstm(q, xs)[0], ys))(p)
    opt = optax.sgd(LEARNING_RATE)
    updates, _ = opt.update(grads, opt.init(p), p)
    new = optax.apply_updates(p, updates)
    out = dict(fwd)
    for t in (1, 0):
        out[f"Delta_{t}"] = Delta[t, 0]
        out[f"delta out_{t}"] = tr.delta_out[t, 0]
        out[f"delta state_{t}"] = tr.delta_state[t, 0]
        out[f"delta gates_{t}"] = tr.delta_gates[t]
        out[f"delta x_{t}"] = tr.delta_x[t]
        out[f"Delta out_{t - 1}"] = tr.Delta_out_prev[t, 0]
    out.update({"dW^T": dparams.W.T, "dU": dparams.U[0], "db": dparams.b})
    out.update({"new W^T": new.W.T, "new U": new.U[0], "new b": new.b})
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def _f(s):
    return np.asarray(s, dtype=np.float64) if not isinstance(s, str) else np.float64(s)


def unit(printed) -> np.ndarray:
    """One unit in the last printed digit of each entry ("-0.0922" -> 1e-4, "0" -> 1e-5)."""

    def one(s: str) -> float:
        decimals = len(s.split(".")[1]) if "." in s else 5
        return 10.0**-decimals

    return np.vectorize(one, otypes=[np.float64])(np.asarray(printed, dtype=object))


def replay() -> dict[str, np.ndarray]:
    """Each source line recomputed with jlstm's equations from the source's printed inputs."""
    s = {k: v for k, v in SOURCE}
    g = lambda k: _f(s[k])  # noqa: E731
    p = params()
    Wn, Un, bn = (np.asarray(a, np.float64) for a in p)
    xs, ys = np.asarray(XS), np.asarray(YS)
    out: dict[str, np.ndarray] = {}
    h_prev = {0: 0.0, 1: g("out_0")}
    c_prev = {0: 0.0, 1: g("state_0")}
    for t in range(2):
        z = xs[t] @ Wn + h_prev[t] * Un[0] + bn
        gates = np.asarray(activate(jnp.asarray(z)))
        for k, name in enumerate("aifo"):
            out[f"{name}_{t}"] = gates[k]
        gp = np.array([g(f"{n}_{t}") for n in "aifo"])
        _, c = step(jnp.asarray(gp), jnp.asarray([c_prev[t]]))
        out[f"state_{t}"] = np.asarray(c)[0]
        out[f"out_{t}"] = np.tanh(g(f"state_{t}")) * g(f"o_{t}")
    dh, dc = 0.0, 0.0  # Delta out_1 = 0 and delta state_2 * f_2 = 0: no future steps
    for t in (1, 0):
        out[f"Delta_{t}"] = g(f"out_{t}") - ys[t, 0]
        gates_t = jnp.asarray([g(f"{n}_{t}") for n in "aifo"])[None]
        st = backward_step(
            gates_t,
            jnp.asarray([[g(f"state_{t}")]]),
            jnp.asarray([[c_prev[t]]]),
            jnp.asarray([[g(f"Delta_{t}")]]),
            jnp.asarray([[dh]]),
            jnp.asarray([[dc]]),
        )
        out[f"delta out_{t}"] = np.asarray(st.delta_out)[0, 0]
        out[f"delta state_{t}"] = np.asarray(st.delta_state)[0, 0]
        out[f"delta gates_{t}"] = np.asarray(st.delta_gates)[0]
        dg = g(f"delta gates_{t}")
        out[f"delta x_{t}"] = Wn @ dg
        out[f"Delta out_{t - 1}"] = Un[0] @ dg
        # The next (earlier) step continues from the source's printed numbers, as the source does.
        dh = g(f"Delta out_{t - 1}")
        dc = g(f"delta state_{t}") * g(f"f_{t}")
    dg0, dg1 = g("delta gates_0"), g("delta gates_1")
    out["dW^T"] = np.outer(dg0, xs[0]) + np.outer(dg1, xs[1])
    out["dU"] = dg1 * g("out_0")  # + dg0 * out_{-1}, which is 0
    out["db"] = dg0 + dg1
    out["new W^T"] = Wn.T - LEARNING_RATE * g("dW^T")
    out["new U"] = Un[0] - LEARNING_RATE * g("dU")
    out["new b"] = bn - LEARNING_RATE * g("db")
    return out


@dataclass(frozen=True)
class Row:
    name: str
    source: str  # as printed
    exact: float  # jlstm, full precision
    replayed: float  # jlstm's equations on the source's printed inputs
    unit: float  # one unit in the last printed digit

    @property
    def diff(self) -> float:
        return self.exact - float(self.source)

    @property
    def replay_diff(self) -> float:
        return self.replayed - float(self.source)


def rows() -> list[Row]:
    """One row per printed number: source, jlstm exact, jlstm replayed on the source's inputs."""
    ex, rp = computed(), replay()
    out = []
    for name, printed in SOURCE:
        pr = np.asarray(printed, dtype=object)
        e, r, u = np.broadcast_to(ex[name], pr.shape), np.broadcast_to(rp[name], pr.shape), unit(printed)
        for idx in np.ndindex(pr.shape):
            label = name + (str(list(idx)) if idx else "")
            out.append(Row(label, str(pr[idx]), float(e[idx]), float(r[idx]), float(u[idx])))
    return out


def report() -> str:
    """The side-by-side table the ``jlstm example`` command prints, then the errata."""
    lines = [
        f"{'quantity':<22}{'source':>10}{'jlstm':>13}{'diff':>11}{'units':>7}{'replay':>13}{'units':>7}",
    ]
    for r in rows():
        lines.append(
            f"{r.name:<22}{r.source:>10}{r.exact:>13.7f}{r.diff:>11.1e}{r.diff / r.unit:>7.2f}"
            f"{r.replayed:>13.7f}{r.replay_diff / r.unit:>7.2f}"
        )
    lines.append("")
    lines.append("units: difference in units of the source's last printed digit.")
    lines.append("replay: the source's line recomputed by jlstm from the source's own printed inputs.")
    lines.append("")
    lines.append("Errata of the source, and how jlstm handles them:")
    lines.extend(f"  - {e}" for e in ERRATA)
    return "\n".join(lines)
