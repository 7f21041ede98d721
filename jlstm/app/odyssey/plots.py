"""The study's figures: box plots per task in the paper's style, and the test metric against the
learning rate. matplotlib is imported here only, with the non-interactive backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jlstm.app.odyssey import stats
from jlstm.app.odyssey.search import BASELINE

COLORS = {"baseline": "0.6", "worse": "tab:red", "better": "tab:green", "n.s.": "tab:blue"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _top(values: list[np.ndarray]) -> float:
    """An upper y limit that keeps the boxes readable when some trials blew up (NOAF's losses reach
    thousands): a quarter above the median of the groups' upper quartiles. Points above are drawn at it."""
    lo = float(min(np.min(v) for v in values))
    hi = float(np.median([np.quantile(v, 0.75) for v in values]))
    return hi + 0.25 * max(hi - lo, 1e-6)


def boxes(path: Path, task: str, info: dict, rows: list[dict]) -> None:
    """All trials (top) and the best 10 % by validation (bottom) per variant, as Greff et al.'s Fig. 3;
    significantly worse variants in red, better in green, the others blue, V grey."""
    plt = _pyplot()
    variants = list(info["variants"])
    fig, axes = plt.subplots(2, 1, figsize=(max(5.5, 1.0 + 0.8 * len(variants)), 6.4), sharex=True)
    for ax, part in zip(axes, ("all", "top10")):
        data = []
        for v in variants:
            test = np.array([r["test"] for r in rows if r["variant"] == v])
            valid = np.array([r["valid"] for r in rows if r["variant"] == v])
            data.append(
                test if part == "all" else test[np.argsort(valid, kind="stable")[: stats.top_k(len(test))]]
            )
        top = _top(data)
        bp = ax.boxplot([np.minimum(d, top) for d in data], patch_artist=True, widths=0.6, showfliers=False)
        for k, (v, d) in enumerate(zip(variants, data)):
            entry = info["variants"][v] if part == "all" else info["variants"][v]["top10"]
            color = COLORS["baseline"] if v == BASELINE else COLORS[stats.verdict(entry)]
            bp["boxes"][k].set(facecolor=color, alpha=0.45, edgecolor=color)
            jitter = np.random.default_rng(k).uniform(-0.15, 0.15, len(d))
            ax.scatter(k + 1 + jitter, np.minimum(d, top), s=7, color=color, zorder=3)
        ax.set_ylim(top=top)
        ax.set_ylabel(f"test {info['metric']}")
        ax.set_title(f"{task} ({info['stands_for']}): " + ("all trials" if part == "all" else "best 10 %"))
        ax.grid(axis="y", alpha=0.3)
    axes[1].set_xticks(range(1, len(variants) + 1), variants)
    fig.text(
        0.01,
        0.005,
        "red: worse than V (Welch, p < 0.05); green: better; blue: n.s.; best 10 % by "
        "validation; values above the axis at its top",
        fontsize=6.5,
    )
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def learning_rate(path: Path, tasks: dict, rows: list[dict]) -> None:
    """Test metric against learning rate per task, every variant's trials, coloured by hidden size."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6), squeeze=False)
    for ax, (task, info) in zip(axes[0], tasks.items()):
        mine = [r for r in rows if r["task"] == task]
        test = np.array([r["test"] for r in mine])
        top = _top([test])
        sc = ax.scatter(
            [r["lr"] for r in mine],
            np.minimum(test, top),
            c=[r["hidden"] for r in mine],
            s=8,
            cmap="viridis",
            norm=_log_norm([r["hidden"] for r in mine]),
        )
        ax.set(
            xscale="log",
            xlabel="learning rate",
            ylabel=f"test {info['metric']}",
            title=task,
            ylim=(None, top),
        )
        sizes = sorted({r["hidden"] for r in mine})
        bar = fig.colorbar(sc, ax=ax, label="hidden size", ticks=sizes, format="%d")
        bar.ax.minorticks_off()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _log_norm(values):
    from matplotlib.colors import LogNorm, Normalize

    lo, hi = min(values), max(values)
    return LogNorm(lo, hi) if hi > lo else Normalize(lo - 1, hi + 1)
