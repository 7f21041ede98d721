"""Draw docs/bench.png from the measured table in docs/performance.md (section "Issue 6").

    python docs/perf_plot.py            # after `python experiments/bench.py --rounds 10` updated the table

Two panels per size (T, B, D, H): the training step's median time over plain ``jax.grad`` of a
``lax.scan`` LSTM, and XLA's temporary memory of the compiled step. Not part of the site (mkdocs.yml
excludes it); the numbers come only from the page, so the plot cannot disagree with it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

HERE = Path(__file__).parent


def read_table(page: Path, section: str) -> dict[str, dict[str, dict[str, float]]]:
    """``{size: {impl: {"x plain": .., "temp MiB": ..}}}`` from the first table under ``## section``."""
    lines = page.read_text().splitlines()
    at = lines.index(next(ln for ln in lines if ln.startswith(f"## {section}")))
    first = next(i for i in range(at, len(lines)) if lines[i].startswith("| "))
    rows = []
    for ln in lines[first:]:
        if not ln.startswith("|"):
            break  # the end of the first table
        rows.append([c.strip() for c in ln.strip().strip("|").split("|")])
    header = rows[0]
    table: dict[str, dict[str, dict[str, float]]] = {}
    for cells in (dict(zip(header, r, strict=True)) for r in rows[2:]):
        if cells["impl"].startswith("matmul"):
            continue
        num = lambda k, c=cells: float(c[k]) if c.get(k) else np.nan  # noqa: E731
        table.setdefault(cells["T, B, D, H"], {})[cells["impl"]] = {"x plain": num("x plain"),
                                                                   "temp MiB": num("temp MiB")}  # fmt: skip
    return table


def draw(table: dict, out: Path) -> None:
    sizes = list(table)
    impls = list(table[sizes[0]])
    x = np.arange(len(sizes))
    width = 0.8 / len(impls)
    fig, axes = plt.subplots(2, 1, figsize=(10, 7.5))
    for j, impl in enumerate(impls):
        for ax, key in zip(axes, ("x plain", "temp MiB"), strict=True):
            ys = [table[s].get(impl, {}).get(key, np.nan) for s in sizes]
            ax.bar(x + j * width, ys, width, label=impl)
    axes[0].axhline(1.0, color="k", lw=0.8)
    axes[0].axhline(0.7, color="k", ls="--", lw=0.8, label="0.7x plain")
    axes[0].set_ylabel("time / plain jax.grad time\n(median, lower is faster)")
    axes[0].set_title("Training step, 1 thread per framework (docs/performance.md, experiments/bench.py)",
                      fontsize=10)  # fmt: skip
    axes[1].set_yscale("log")
    axes[1].set_ylabel("XLA temporary memory (MiB)\n(torch: not measured)")
    axes[1].set_title("Compiled step's temporary memory (manual at T = 1000 with remat=32: 16.4 MiB)",
                      fontsize=10)  # fmt: skip
    for ax in axes:
        ax.set_xticks(x + 0.4 - width / 2, sizes, fontsize=8)
        ax.set_xlabel("T, B, D, H")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8, ncol=4)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    page = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "performance.md"
    draw(read_table(page, "Issue 6"), HERE / "bench.png")
    print(f"wrote {HERE / 'bench.png'}")
