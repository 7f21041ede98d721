"""Checking and timing: every gradient equal first, then round-robin rounds, one call each per round,
so that a load spike on a shared machine hits every implementation alike."""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from jlstm.app.bench.problem import flops, make_problem
from jlstm.app.bench.registry import Impl, available_impls, build

log = logging.getLogger("jlstm.app.bench")

#: Gradient tolerance (relative) against the first implementation: float32 on a CPU; on a GPU float32
#: products run in TF32 by default (JAX, cuDNN), about 1e-3 relative, still far below a layout error's 1.
GRAD_RTOL = {"cpu": 2e-4, "gpu": 1e-2}


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
    return Impl(f"matmul{n}", lambda: jax.block_until_ready(f(a, a)), lambda: ())


def _build_all(prob, impls: Sequence[str]) -> list[Impl]:
    built = []
    for name in impls:
        try:
            built.append(build(name, prob))
        except ImportError as e:  # an optional framework that is not installed
            log.warning("skipping %s: %s", name, e)
    return built


def _ratio(times: dict[str, list[float]], name: str, ref: str | None) -> float | None:
    return statistics.median(times[name]) / statistics.median(times[ref]) if ref in times else None


def run_size(T: int, B: int, D: int, H: int, *, impls: Sequence[str] | None = None, rounds: int = 10) -> dict:
    """Build, check and time every implementation at one size. Returns a JSON-able record.

    ``impls`` defaults to every implementation available here (``available_impls()``).
    """
    import jax

    prob = make_problem(T, B, D, H)
    built = _build_all(prob, available_impls() if impls is None else impls)
    rtol = GRAD_RTOL.get(jax.default_backend(), GRAD_RTOL["gpu"])
    errs = check_gradients(built, rtol=rtol)
    mm = _matmul_impl()
    times = time_round_robin(built + [mm], rounds)
    cpu = time_round_robin(built + [mm], rounds, clock=time.process_time)
    mm_gflops = 2 * 1024**3 / statistics.median(times.pop(mm.name)) / 1e9
    cpu.pop(mm.name)
    fl = flops(T, B, D, H)
    torch_ref = "torch_cuda" if "torch_cuda" in times else "torch"
    rec: dict[str, Any] = {"size": {"T": T, "B": B, "D": D, "H": H}, "matmul_gflops": mm_gflops}
    rec["grad_rtol"] = rtol
    rec["torch_ref"], rec["impls"] = (torch_ref if torch_ref in times else None), {}
    for impl in built:
        t = times[impl.name]
        med = statistics.median(t)
        rec["impls"][impl.name] = {
            "median_ms": 1e3 * med,
            "min_ms": 1e3 * min(t),
            "gflops": fl / med / 1e9,
            "vs_plain": _ratio(times, impl.name, "plain"),
            "vs_torch": _ratio(times, impl.name, torch_ref),
            "cpu_median_ms": 1e3 * statistics.median(cpu[impl.name]),
            "cpu_vs_plain": _ratio(cpu, impl.name, "plain"),
            "grad_rel_err": errs[impl.name],
            "temp_bytes": impl.temp_bytes,
        }
    return rec


def measure(
    sizes: Sequence[tuple[int, int, int, int]], *, impls: Sequence[str] | None = None, rounds: int = 10
) -> list[dict]:
    """``run_size`` at every size, in this process (at its thread setting); one record per size."""
    records = []
    for T, B, D, H in sizes:
        log.info("size T=%d B=%d D=%d H=%d", T, B, D, H)
        records.append(run_size(T, B, D, H, impls=impls, rounds=rounds))
    return records
