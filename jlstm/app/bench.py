"""Benchmark of the LSTM training step across implementations (issues 2 and 6).

Every implementation computes the value and the gradient (w.r.t. the weights) of the same loss,
``sum(hs * Y)`` for a fixed random ``Y``, on the same weights mapped into its own layout. The
gradients are mapped back to jlstm's ``(W, U, b)`` and checked equal before anything is timed; each
step is compiled (warmed up) first, then all implementations run round-robin, one call each per round,
so that a load spike on the (shared) machine hits every implementation alike.

Implementations (names used in tables and on the command line):

- ``manual``: ``jlstm.lstm(..., backward="manual")``, the hand-written backward (custom_vjp).
- ``autodiff``: ``jlstm.lstm(..., backward="autodiff")``, ``jax.grad`` through the same forward.
- ``plain``: a ``lax.scan`` LSTM as users write it (input projection inside the loop) under ``jax.grad``.
- ``flax``: ``flax.linen.RNN(OptimizedLSTMCell)``.
- ``equinox``: ``equinox.nn.LSTMCell`` under ``vmap`` (batch) and ``lax.scan`` (time).
- ``torch``: ``torch.nn.LSTM`` on the CPU (forward + ``loss.backward()``).
- ``lstm_ref``: ``jax.experimental.rnn.lstm_ref`` under ``jax.grad``.

torch, flax and equinox are imported only when their implementation is built. Thread counts must be
fixed before JAX starts its CPU backend: call ``configure_threads`` first (``experiments/bench.py``
and ``jlstm bench`` do).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

ALL_IMPLS = ("manual", "autodiff", "plain", "flax", "equinox", "torch", "lstm_ref")
CORE_IMPLS = ("manual", "autodiff", "plain")
#: (T, B, D, H) of issue 6.
SIZES: tuple[tuple[int, int, int, int], ...] = (
    (50, 8, 64, 64),
    (100, 32, 128, 128),
    (100, 32, 256, 256),
    (50, 64, 512, 512),
    (1000, 8, 128, 128),
    (100, 32, 32, 256),
)
#: (T, B, D, H) of issue 2's core benchmark.
CORE_SIZES: tuple[tuple[int, int, int, int], ...] = ((100, 32, 128, 128), (1000, 8, 64, 64))

# jlstm's gate blocks are (a, i, f, o); torch, equinox, flax and lstm_ref use (i, f, g, o) with g = a.
_TO_IFGO = (1, 2, 0, 3)


def configure_threads(threads: int) -> None:
    """Use ``threads`` CPU threads in XLA (and in torch when it is imported by the bench).

    Must run before JAX initialises its CPU backend (before the first computation); raises otherwise.
    """
    import jax._src.xla_bridge as xb

    if threads < 1:
        raise ValueError(f"configure_threads: threads must be >= 1; got {threads}.")
    if xb.backends_are_initialized():
        raise RuntimeError(
            "configure_threads: JAX's backend is already initialised, so XLA's thread count can no "
            "longer change. Call it before any JAX computation (or set XLA_FLAGS in the environment)."
        )
    flags = os.environ.get("XLA_FLAGS", "")
    eigen = "true" if threads > 1 else "false"
    os.environ["XLA_FLAGS"] = (
        f"{flags} --xla_cpu_multi_thread_eigen={eigen} intra_op_parallelism_threads={threads}"
    ).strip()
    os.environ["JLSTM_BENCH_THREADS"] = str(threads)


def _threads() -> int:
    return int(os.environ.get("JLSTM_BENCH_THREADS", "0")) or (os.cpu_count() or 1)


def flops(T: int, B: int, D: int, H: int) -> float:
    """Matrix-product FLOPs of one training step: forward ``x W``, ``h U``; backward ``dW``, ``dU``, ``dh``.

    ``2 T B 4H (D + H)`` forward plus ``2 T B 4H (D + 2H)`` backward; elementwise work is left out.
    """
    return 2.0 * T * B * 4 * H * (2 * D + 3 * H)


@dataclasses.dataclass(frozen=True)
class Problem:
    """Weights ``(W [D, 4H], U [H, 4H], b [4H])`` in jlstm's layout, inputs ``xs [B, T, D]`` and the
    loss weights ``ys [B, T, H]``, as numpy arrays."""

    W: np.ndarray
    U: np.ndarray
    b: np.ndarray
    xs: np.ndarray
    ys: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int, int]:
        B, T, D = self.xs.shape
        return T, B, D, self.U.shape[0]


def make_problem(T: int, B: int, D: int, H: int, *, seed: int = 0, dtype=np.float32) -> Problem:
    rng = np.random.default_rng(seed)
    bound = 1 / np.sqrt(H)
    W = rng.uniform(-bound, bound, (D, 4 * H))
    U = rng.uniform(-bound, bound, (H, 4 * H))
    b = rng.uniform(-bound, bound, (4 * H,))
    xs = rng.standard_normal((B, T, D))
    ys = rng.standard_normal((B, T, H)) / np.sqrt(B * T * H)
    return Problem(*(a.astype(dtype) for a in (W, U, b, xs, ys)))


def _blocks(a: np.ndarray, order: Sequence[int], axis: int = -1) -> np.ndarray:
    H = a.shape[axis] // 4
    parts = np.split(np.asarray(a), 4, axis=axis)
    del H
    return np.concatenate([parts[k] for k in order], axis=axis)


def _from_ifgo(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """(i, f, g, o) blocks -> jlstm's (a, i, f, o)."""
    return _blocks(a, (2, 0, 1, 3), axis)


@dataclasses.dataclass
class Impl:
    """A compiled training step: ``run()`` executes it once (blocking) and returns the loss;
    ``grads()`` returns ``(loss, dW, dU, db)`` in jlstm's layout; ``temp_bytes`` is XLA's temporary
    memory for the step (None outside XLA)."""

    name: str
    run: Callable[[], object]
    grads: Callable[[], tuple]
    temp_bytes: int | None = None


def _jax_impl(name: str, step, args) -> Impl:
    import jax

    compiled = jax.jit(step).lower(*args).compile()
    mem = compiled.memory_analysis()
    temp = int(mem.temp_size_in_bytes) if mem is not None else None

    def run():
        return jax.block_until_ready(compiled(*args))

    return Impl(name, run, lambda: run(), temp)


def _plain_lstm(W, U, b, xs):
    """The LSTM as users write it: a ``lax.scan`` of the cell with the input projection inside."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    H = U.shape[0]

    def body(carry, x):
        h, c = carry
        z = x @ W + h @ U + b[None]
        a = jnp.tanh(z[:, :H])
        i = jax.nn.sigmoid(z[:, H : 2 * H])
        f = jax.nn.sigmoid(z[:, 2 * H : 3 * H])
        o = jax.nn.sigmoid(z[:, 3 * H :])
        c = a * i + f * c
        h = jnp.tanh(c) * o
        return (h, c), h

    zeros = jnp.zeros((xs.shape[0], H), xs.dtype)
    _, hs = lax.scan(body, (zeros, zeros), jnp.swapaxes(xs, 0, 1))
    return jnp.swapaxes(hs, 0, 1)


def build(name: str, prob: Problem, *, dtype=None) -> Impl:
    """Compile the training step of implementation ``name`` on ``prob``."""
    import jax

    # Third-party code may rely on rank promotion, which a strict caller (our tests) turns off.
    with jax.numpy_rank_promotion("allow"):
        return _build(name, prob, dtype)


def _build(name: str, prob: Problem, dtype) -> Impl:
    import jax
    import jax.numpy as jnp

    import jlstm

    dt = dtype or prob.xs.dtype
    W, U, b, xs, ys = (jnp.asarray(a, dt) for a in (prob.W, prob.U, prob.b, prob.xs, prob.ys))
    T, B, D, H = prob.shape

    if name in ("manual", "autodiff"):

        def step(params, xs, ys):
            def loss(p):
                return jnp.sum(jlstm.lstm(p, xs, backward=name)[0] * ys)

            return jax.value_and_grad(loss)(params)

        impl = _jax_impl(name, step, (jlstm.LSTMParams(W, U, b), xs, ys))
        return dataclasses.replace(impl, grads=lambda: _flat_jlstm(impl.run()))

    if name == "plain":

        def step(params, xs, ys):
            return jax.value_and_grad(lambda p: jnp.sum(_plain_lstm(*p, xs) * ys))(params)

        impl = _jax_impl(name, step, ((W, U, b), xs, ys))
        return dataclasses.replace(impl, grads=lambda: _flat_jlstm(impl.run()))

    if name == "lstm_ref":
        from jax.experimental import rnn

        tw = {0: jnp.asarray(_blocks(prob.W, _TO_IFGO).T, dt)}
        tu = {0: jnp.asarray(_blocks(prob.U, _TO_IFGO).T, dt)}
        tb = {0: jnp.asarray(_blocks(prob.b, _TO_IFGO), dt)}
        zb = {0: jnp.zeros((4 * H,), dt)}
        h0 = jnp.zeros((1, B, H), dt)
        lengths = jnp.full((B,), T, jnp.int32)

        def step(w, xs, ys):
            def loss(w):
                hs, _, _ = rnn.lstm_ref(xs, h0, h0, w[0], w[1], w[2], zb, lengths, D, H, 1, 0.0, False)
                return jnp.sum(hs * ys)

            return jax.value_and_grad(loss)(w)

        impl = _jax_impl(name, step, ((tw, tu, tb), xs, ys))

        def grads():
            loss, (gw, gu, gb) = impl.run()
            return (
                float(loss),
                _from_ifgo(np.asarray(gw[0]).T),
                _from_ifgo(np.asarray(gu[0]).T),
                _from_ifgo(np.asarray(gb[0])),
            )

        return dataclasses.replace(impl, grads=grads)

    if name == "flax":
        from flax import linen as nn

        model = nn.RNN(nn.OptimizedLSTMCell(H, param_dtype=dt, dtype=dt))
        cell = {}
        for k, g in enumerate("ifgo"):
            col = slice([1, 2, 0, 3][k] * H, ([1, 2, 0, 3][k] + 1) * H)
            cell[f"i{g}"] = {"kernel": jnp.asarray(prob.W[:, col], dt)}
            cell[f"h{g}"] = {"kernel": jnp.asarray(prob.U[:, col], dt), "bias": jnp.asarray(prob.b[col], dt)}
        variables = {"params": {"cell": cell}}

        def step(v, xs, ys):
            return jax.value_and_grad(lambda v: jnp.sum(model.apply(v, xs) * ys))(v)

        impl = _jax_impl(name, step, (variables, xs, ys))

        def grads():
            loss, g = impl.run()
            c = g["params"]["cell"]
            order = "gifo"  # jlstm's a, i, f, o
            return (
                float(loss),
                np.concatenate([np.asarray(c[f"i{k}"]["kernel"]) for k in order], -1),
                np.concatenate([np.asarray(c[f"h{k}"]["kernel"]) for k in order], -1),
                np.concatenate([np.asarray(c[f"h{k}"]["bias"]) for k in order], -1),
            )

        return dataclasses.replace(impl, grads=grads)

    if name == "equinox":
        import equinox as eqx

        cell0 = eqx.nn.LSTMCell(D, H, key=jax.random.key(0), dtype=dt)
        cell0 = eqx.tree_at(
            lambda m: (m.weight_ih, m.weight_hh, m.bias),
            cell0,
            (
                jnp.asarray(_blocks(prob.W, _TO_IFGO).T, dt),
                jnp.asarray(_blocks(prob.U, _TO_IFGO).T, dt),
                jnp.asarray(_blocks(prob.b, _TO_IFGO), dt),
            ),
        )

        def step(cell, xs, ys):
            def loss(cell):
                def body(carry, x_t):  # x_t [B, D]
                    carry = jax.vmap(cell)(x_t, carry)
                    return carry, carry[0]

                zeros = jnp.zeros((xs.shape[0], H), xs.dtype)
                _, hs = jax.lax.scan(body, (zeros, zeros), jnp.swapaxes(xs, 0, 1))
                return jnp.sum(jnp.swapaxes(hs, 0, 1) * ys)

            return eqx.filter_value_and_grad(loss)(cell)

        impl = _jax_impl(name, step, (cell0, xs, ys))

        def grads():
            loss, g = impl.run()
            return (
                float(loss),
                _from_ifgo(np.asarray(g.weight_ih).T),
                _from_ifgo(np.asarray(g.weight_hh).T),
                _from_ifgo(np.asarray(g.bias)),
            )

        return dataclasses.replace(impl, grads=grads)

    if name == "torch":
        import torch

        if os.environ.get("JLSTM_BENCH_THREADS"):
            torch.set_num_threads(_threads())
        tdt = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[np.dtype(dt)]
        mod = torch.nn.LSTM(D, H, batch_first=True).to(tdt)
        with torch.no_grad():
            mod.weight_ih_l0.copy_(torch.from_numpy(_blocks(prob.W, _TO_IFGO).T.copy()))
            mod.weight_hh_l0.copy_(torch.from_numpy(_blocks(prob.U, _TO_IFGO).T.copy()))
            mod.bias_ih_l0.copy_(torch.from_numpy(_blocks(prob.b, _TO_IFGO).copy()))
            mod.bias_hh_l0.zero_()
        txs = torch.from_numpy(np.asarray(prob.xs)).to(tdt)
        tys = torch.from_numpy(np.asarray(prob.ys)).to(tdt)

        def run():
            mod.zero_grad(set_to_none=True)
            out, _ = mod(txs)
            loss = (out * tys).sum()
            loss.backward()
            return loss

        def grads():
            loss = run()
            return (
                float(loss.detach()),
                _from_ifgo(mod.weight_ih_l0.grad.numpy().T),
                _from_ifgo(mod.weight_hh_l0.grad.numpy().T),
                _from_ifgo((mod.bias_ih_l0.grad).numpy()),
            )

        return Impl(name, run, grads, None)

    raise ValueError(f"jlstm.bench.build: name must be one of {ALL_IMPLS}; got {name!r}.")


def _flat_jlstm(out) -> tuple:
    loss, g = out
    return (float(loss),) + tuple(np.asarray(a) for a in g)


def check_gradients(impls: Sequence[Impl], *, rtol: float = 2e-4) -> dict[str, float]:
    """Relative error of each implementation's ``(dW, dU, db)`` against the first's; raises if above
    ``rtol``. Returns ``{name: relative error}``."""
    ref = impls[0].grads()
    errs = {}
    for impl in impls:
        got = impl.grads()
        num = sum(float(np.sum((np.asarray(a, np.float64) - b) ** 2)) for a, b in zip(got[1:], ref[1:]))
        den = sum(float(np.sum(np.asarray(b, np.float64) ** 2)) for b in ref[1:])
        err = (num / den) ** 0.5
        loss_err = abs(got[0] - ref[0]) / max(abs(ref[0]), 1e-30)
        errs[impl.name] = max(err, loss_err)
        if not errs[impl.name] <= rtol:
            raise AssertionError(
                f"{impl.name}: gradient differs from {impls[0].name}'s by {errs[impl.name]:.2e} (relative) "
                f"> {rtol:.0e}."
            )
    return errs


def time_round_robin(
    impls: Sequence[Impl], rounds: int, *, clock=time.perf_counter
) -> dict[str, list[float]]:
    """Seconds per call of each implementation, ``rounds`` rounds of one call each, in turn.

    ``clock=time.process_time`` measures the process's CPU time instead of wall time: on a machine
    shared with other work it is far less disturbed by time spent descheduled.
    """
    times: dict[str, list[float]] = {impl.name: [] for impl in impls}
    for impl in impls:
        impl.run()  # warm (compiled already; first-call costs of torch and caches)
    for _ in range(rounds):
        for impl in impls:
            t0 = clock()
            impl.run()
            times[impl.name].append(clock() - t0)
    return times


def _matmul_impl(n: int = 1024) -> Impl:
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x, y: x @ y).lower(a, a).compile()
    return Impl(f"matmul{n}", lambda: jax.block_until_ready(f(a, a)), lambda: None)


def run_size(
    T: int, B: int, D: int, H: int, *, impls: Sequence[str] = ALL_IMPLS, rounds: int = 10
) -> dict:
    """Build, check and time every implementation at one size. Returns a JSON-able record."""
    prob = make_problem(T, B, D, H)
    built = []
    for name in impls:
        try:
            built.append(build(name, prob))
        except ImportError as e:  # an optional framework that is not installed
            log.warning("skipping %s: %s", name, e)
    errs = check_gradients(built)
    mm = _matmul_impl()
    times = time_round_robin(built + [mm], rounds)
    cpu = time_round_robin(built + [mm], rounds, clock=time.process_time)
    mm_gflops = 2 * 1024**3 / statistics.median(times.pop(mm.name)) / 1e9
    cpu.pop(mm.name)
    fl = flops(T, B, D, H)
    rec = {"size": {"T": T, "B": B, "D": D, "H": H}, "matmul_gflops": mm_gflops, "impls": {}}
    base = statistics.median(times["plain"]) if "plain" in times else None
    cpu_base = statistics.median(cpu["plain"]) if "plain" in cpu else None
    for impl in built:
        t = times[impl.name]
        med = statistics.median(t)
        rec["impls"][impl.name] = {
            "median_ms": 1e3 * med,
            "min_ms": 1e3 * min(t),
            "gflops": fl / med / 1e9,
            "vs_plain": med / base if base else None,
            "cpu_median_ms": 1e3 * statistics.median(cpu[impl.name]),
            "cpu_vs_plain": statistics.median(cpu[impl.name]) / cpu_base if cpu_base else None,
            "grad_rel_err": errs[impl.name],
            "temp_bytes": impl.temp_bytes,
        }
    return rec


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import jax

    out = {"cpu": cpu, "cores": os.cpu_count(), "threads": _threads(), "jax": jax.__version__}
    for mod in ("torch", "flax", "equinox"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return out


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['threads']} thread(s) for every framework; "
        f"jax {m['jax']}" + "".join(f", {k} {m[k]}" for k in ("torch", "flax", "equinox") if k in m) + ".",
        f"Median (min) ms per training step over {result['rounds']} round-robin rounds; GFLOP/s from the "
        "matrix-product FLOPs 2 T B 4H (2D + 3H); x plain = median / plain's median; temp = XLA's "
        "temporary memory of the compiled step.",
        "",
        "x plain (cpu) is the same ratio in process CPU time, from a second set of rounds.",
        "",
        "| T, B, D, H | impl | ms median (min) | x plain | x plain (cpu) | GFLOP/s | % of matmul "
        "| temp MiB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for rec in result["sizes"]:
        s = rec["size"]
        size = f"{s['T']}, {s['B']}, {s['D']}, {s['H']}"
        for name, r in rec["impls"].items():
            vs = f"{r['vs_plain']:.2f}" if r["vs_plain"] is not None else ""
            vc = f"{r['cpu_vs_plain']:.2f}" if r["cpu_vs_plain"] is not None else ""
            mem = f"{r['temp_bytes'] / 2**20:.1f}" if r["temp_bytes"] is not None else ""
            pct = 100 * r["gflops"] / rec["matmul_gflops"]
            lines.append(
                f"| {size} | {name} | {r['median_ms']:.2f} ({r['min_ms']:.2f}) | {vs} | {vc} "
                f"| {r['gflops']:.1f} | {pct:.0f} % | {mem} |"
            )
        lines.append(f"| {size} | matmul 1024^3 | | | | {rec['matmul_gflops']:.1f} | 100 % | |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = result["sizes"]
    names = list(recs[0]["impls"])
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(recs)), 4))
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        ys = [r["impls"].get(name, {}).get("vs_plain") or np.nan for r in recs]
        ax.bar(np.arange(len(recs)) + k * width, ys, width, label=name)
    ax.axhline(0.7, color="k", ls="--", lw=0.8, label="target 0.7")
    ax.set_xticks(np.arange(len(recs)) + 0.4 - width / 2)
    ax.set_xticklabels([",".join(str(v) for v in r["size"].values()) for r in recs], fontsize=8)
    ax.set_xlabel("T, B, D, H")
    ax.set_ylabel("time / plain jax.grad time (median)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(
    sizes: Sequence[tuple[int, int, int, int]] = SIZES,
    *,
    impls: Sequence[str] = ALL_IMPLS,
    rounds: int = 10,
    out: str | Path | None = None,
    name: str = "bench",
) -> dict:
    """The whole benchmark: every size, then ``<out>/<name>.md``, ``.json`` and ``.png``."""
    for i in impls:
        if i not in ALL_IMPLS:
            raise ValueError(f"jlstm.bench.run: impls must be among {ALL_IMPLS}; got {i!r}.")
    result = {"rounds": rounds, "machine": machine(), "sizes": []}
    for T, B, D, H in sizes:
        log.info("size T=%d B=%d D=%d H=%d", T, B, D, H)
        result["sizes"].append(run_size(T, B, D, H, impls=impls, rounds=rounds))
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / f"{name}.md").write_text(markdown(result))
        plot(result, out / f"{name}.png")
    return result


def parse_sizes(text: str) -> list[tuple[int, int, int, int]]:
    """``"100,32,128,128;1000,8,64,64"`` -> ``[(100, 32, 128, 128), (1000, 8, 64, 64)]``."""
    sizes = []
    for part in text.replace(" ", "").split(";"):
        if not part:
            continue
        vals = part.split(",")
        if len(vals) != 4 or not all(v.isdigit() and int(v) > 0 for v in vals):
            raise ValueError(f"sizes: each size must be T,B,D,H (positive ints); got {part!r}.")
        sizes.append(tuple(int(v) for v in vals))
    return sizes
