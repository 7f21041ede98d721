"""The report: the machine, one Markdown table per thread setting, the JSON record and a plot."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

from jlstm.app.bench.threads import threads_in_use

_LIBS = ("torch", "flax", "equinox")
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def machine() -> dict:
    """This process's machine, library versions and thread setting (``threads`` None: the default)."""
    import jax

    out = {"cpu": _cpu_name(), "cores": os.cpu_count(), "threads": threads_in_use(), "jax": jax.__version__}
    out["backend"] = jax.default_backend()
    if out["backend"] != "cpu":
        out["device"] = jax.devices()[0].device_kind
    if "torch" in sys.modules:  # torch ran in this process (below, it is imported for its version alone)
        out["torch_threads"] = sys.modules["torch"].get_num_threads()
    for mod in _LIBS:
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            pass
    for var in ("XLA_FLAGS", *_THREAD_VARS):
        if os.environ.get(var):
            out[var] = os.environ[var]
    return out


def table_title(table: dict) -> str:
    """Which thread setting a table was measured at, in words."""
    m, n = table["machine"], table["threads"]
    torch = f"; torch used {m['torch_threads']} thread(s)" if "torch_threads" in m else ""
    env = "".join(f"; {v}={m[v]} in the environment" for v in _THREAD_VARS if v in m)
    if n is None:
        return f"Default threads: no thread limit set for XLA or torch, as a user gets them{torch}{env}"
    flags = f"--xla_cpu_multi_thread_eigen={'true' if n > 1 else 'false'} intra_op_parallelism_threads={n}"
    return f"{n} thread(s) for every framework: XLA_FLAGS={flags}, torch.set_num_threads({n}){env}"


def _header(result: dict) -> list[str]:
    m = result["machine"]
    gpu = f", GPU {m['device']} (JAX backend {m['backend']})" if "device" in m else ""
    rtols = ", ".join(map(str, sorted({rec["grad_rtol"] for t in result["tables"] for rec in t["sizes"]})))
    return [
        f"Machine: {m['cpu']}, {m['cores']} cores{gpu}; jax {m['jax']}"
        + "".join(f", {k} {m[k]}" for k in _LIBS if k in m)
        + ".",
        f"Median (min) ms per training step over {result['rounds']} round-robin rounds; GFLOP/s from the "
        "matrix-product FLOPs 2 T B 4H (2D + 3H); x plain = median / plain's median; x torch = median / "
        "torch.nn.LSTM's median (torch_cuda's where it ran); temp = XLA's temporary memory of the compiled "
        f"step. Gradients checked equal to the first implementation's (relative {rtols}) "
        "before timing.",
        "",
        "x plain (cpu) is the same ratio in process CPU time, from a second set of rounds (with several "
        "threads it counts the work of all of them).",
        "",
        "Each table was measured in its own process, since XLA fixes its thread count when it starts: "
        "compare the ratios within a table.",
    ]


def _rows(table: dict) -> list[str]:
    lines = [
        "| T, B, D, H | impl | ms median (min) | x plain | x torch | x plain (cpu) | GFLOP/s | % of matmul "
        "| temp MiB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    fmt = lambda v: f"{v:.2f}" if v is not None else ""  # noqa: E731
    for rec in table["sizes"]:
        s = rec["size"]
        size = f"{s['T']}, {s['B']}, {s['D']}, {s['H']}"
        for name, r in rec["impls"].items():
            mem = f"{r['temp_bytes'] / 2**20:.1f}" if r["temp_bytes"] is not None else ""
            pct = 100 * r["gflops"] / rec["matmul_gflops"]
            lines.append(
                f"| {size} | {name} | {r['median_ms']:.2f} ({r['min_ms']:.2f}) | {fmt(r['vs_plain'])} "
                f"| {fmt(r['vs_torch'])} | {fmt(r['cpu_vs_plain'])} | {r['gflops']:.1f} | {pct:.0f} % "
                f"| {mem} |"
            )
        lines.append(f"| {size} | matmul 1024^3 | | | | | {rec['matmul_gflops']:.1f} | 100 % | |")
    return lines


def markdown(result: dict) -> str:
    """The report: the machine and the conventions, then one table per thread setting, titled by it."""
    lines = _header(result)
    for k, table in enumerate(result["tables"], 1):
        lines += ["", f"### Table {k}. {table_title(table)}", "", *_rows(table)]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    """Bars of x plain per size and implementation, one panel per table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = result["tables"]
    n_sizes = len(tables[0]["sizes"])
    fig, axes = plt.subplots(len(tables), 1, figsize=(max(6, 1.6 * n_sizes), 4 * len(tables)), squeeze=False)
    for k, (ax, table) in enumerate(zip(axes[:, 0], tables), 1):
        recs = table["sizes"]
        names = list(recs[0]["impls"])
        width = 0.8 / len(names)
        for j, name in enumerate(names):
            ys = [r["impls"].get(name, {}).get("vs_plain") or np.nan for r in recs]
            ax.bar(np.arange(len(recs)) + j * width, ys, width, label=name)
        ax.axhline(0.7, color="k", ls="--", lw=0.8, label="target 0.7")
        ax.set_xticks(np.arange(len(recs)) + 0.4 - width / 2)
        ax.set_xticklabels([",".join(str(v) for v in r["size"].values()) for r in recs], fontsize=8)
        ax.set_xlabel("T, B, D, H")
        ax.set_ylabel("time / plain jax.grad time (median)")
        threads = "default threads" if table["threads"] is None else f"{table['threads']} thread(s)"
        ax.set_title(f"Table {k}: {threads}", fontsize=9)
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(result: dict, out: str | Path, name: str) -> None:
    """``<out>/<name>.json``, ``.md`` and ``.png``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{name}.md").write_text(markdown(result))
    plot(result, out / f"{name}.png")
