"""Thread settings. XLA reads its thread flags when its CPU backend starts and torch's intra-op pool is
best fixed before its first operation, so one process measures one setting: ``configure_threads`` fixes
it in the current process, ``measure_at`` runs a fresh Python process (``worker``) per setting.

A setting is ``None`` (the default: no thread limit set for XLA or torch, what a user gets) or a
thread count for every framework.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

#: The flags ``configure_threads`` adds to ``XLA_FLAGS``; a default-threads worker has them removed.
_XLA_THREAD_FLAGS = ("--xla_cpu_multi_thread_eigen=", "intra_op_parallelism_threads=")


def configure_threads(threads: int) -> None:
    """Use ``threads`` CPU threads in XLA (and in torch when it is imported by the bench).

    Must run before JAX initialises its CPU backend (before the first computation); raises otherwise.
    """
    if threads < 1:
        raise ValueError(f"configure_threads: threads must be >= 1; got {threads}.")
    if _backend_started():
        raise RuntimeError(
            "configure_threads: JAX's backend is already initialised, so XLA's thread count can no "
            "longer change. Call it before any JAX computation (or set XLA_FLAGS in the environment)."
        )
    eigen = "true" if threads > 1 else "false"
    os.environ["XLA_FLAGS"] = (
        f"{_without_thread_flags(os.environ.get('XLA_FLAGS', ''))} "
        f"--xla_cpu_multi_thread_eigen={eigen} intra_op_parallelism_threads={threads}"
    ).strip()
    os.environ["JLSTM_BENCH_THREADS"] = str(threads)


def _backend_started() -> bool:
    try:
        from jax._src import xla_bridge
    except ImportError:  # a JAX without this private module: nothing to check against
        return False
    started = getattr(xla_bridge, "backends_are_initialized", None)
    return bool(started and started())


def _without_thread_flags(flags: str) -> str:
    return " ".join(f for f in flags.split() if not f.startswith(_XLA_THREAD_FLAGS))


def threads_in_use() -> int | None:
    """The thread count fixed by ``configure_threads`` in this process, or None (the default)."""
    return int(os.environ["JLSTM_BENCH_THREADS"]) if os.environ.get("JLSTM_BENCH_THREADS") else None


def parse_threads(text: str) -> list[int | None]:
    """``"default,1"`` -> ``[None, 1]``: one thread setting per table, ``default`` meaning no limit."""
    settings: list[int | None] = []
    for part in text.replace(" ", "").split(","):
        if part == "default":
            settings.append(None)
        elif part.isdigit() and int(part) > 0:
            settings.append(int(part))
        else:
            raise ValueError(f"threads: each setting must be 'default' or a positive int; got {part!r}.")
    if not settings or len(set(settings)) != len(settings):
        raise ValueError(f"threads: give each setting once, e.g. 'default,1'; got {text!r}.")
    return settings


def _worker_env(threads: int | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("JLSTM_BENCH_THREADS", None)
    flags = _without_thread_flags(env.get("XLA_FLAGS", ""))
    if flags:
        env["XLA_FLAGS"] = flags
    else:
        env.pop("XLA_FLAGS", None)
    root = str(Path(__file__).resolve().parents[3])  # the folder holding the jlstm package
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def measure_at(
    threads: int | None, sizes: Sequence[tuple[int, int, int, int]], impls: Sequence[str] | None, rounds: int
) -> dict:
    """Measure every size in a fresh Python process at thread setting ``threads`` (see ``measure``).

    Returns ``{"threads": ..., "machine": ..., "sizes": [record, ...]}``. The worker logs its progress on
    this process's standard error; a failure there (a gradient that differs, an unavailable
    implementation) raises ``RuntimeError`` here.
    """
    spec = {"threads": threads, "sizes": [list(s) for s in sizes], "impls": impls, "rounds": rounds}
    with tempfile.TemporaryDirectory(prefix="jlstm-bench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "jlstm.app.bench.worker", json.dumps(spec), str(out)]
        # The worker's standard output goes to our standard error, so what this process prints stays clean.
        rc = subprocess.run(cmd, env=_worker_env(threads), stdout=2, check=False).returncode
        if rc != 0:
            label = "default threads" if threads is None else f"{threads} thread(s)"
            raise RuntimeError(
                f"jlstm.bench: the measurement at {label} failed (exit status {rc}); see above"
            )
        return json.loads(out.read_text())
