"""What a training run reports: ``metrics.jsonl``, the progress bar, ``summary.json`` and ``loss.png``."""

from __future__ import annotations

import functools
import json
import logging
import time
from pathlib import Path
from typing import TextIO

METRICS = "metrics.jsonl"
SUMMARY = "summary.json"

log = logging.getLogger("jlstm.runner")


def read_history(path: Path, upto: int | None = None) -> list[dict]:
    """The rows of a ``metrics.jsonl`` (none if there is no file), those up to step ``upto`` if given.

    A line that is not a row (a JSON object with an integer ``step`` and a numeric ``loss``) is dropped
    with a warning naming the file and the line: a crash during a write leaves the last line cut short,
    and the log must not keep a run with intact checkpoints from resuming.
    """
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)  # bytes: a non-UTF-8 line raises UnicodeDecodeError, a ValueError
            if not _is_row(row):
                raise ValueError(f"not a row with an integer step and a loss: {line[:80]!r}")
        except ValueError as e:
            log.warning("%s, line %d, is cut short or corrupt (%s); dropped it", path, number, e)
            continue
        rows.append(row)
    return [r for r in rows if upto is None or r["step"] <= upto]


def _is_row(row) -> bool:
    return isinstance(row, dict) and type(row.get("step")) is int and type(row.get("loss")) in (int, float)


@functools.cache
def console():
    """The rich console on stderr of the progress bar, for ``jlstm train``'s log too.

    On stderr, so that the standard output of ``jlstm train`` holds only its JSON summary; one console
    for both, so that rich prints the log lines above the bar instead of through it.
    """
    from rich.console import Console

    return Console(stderr=True)


def progress_bar(task: str):
    """A rich progress bar showing the step, the loss, steps per second and the time left, on stderr."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn(f"[bold]{task}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TextColumn("{task.fields[rate]:.0f} steps/s"),
        TimeRemainingColumn(),
    )
    return Progress(*columns, console=console())


class MetricsLog:
    """The log of one run from step ``start``: ``metrics.jsonl``, the rows in memory, the clock, the bar.

    Opening it keeps the rows up to ``start`` (those logged after the checkpoint a run resumes from
    belong to the lost part of the run) and rewrites the file with them; use it as a context manager,
    which opens the file for appending and shows the progress bar (``progress=True``) until it exits.
    """

    def __init__(self, path: Path, *, task: str, steps: int, start: int, wall_before: float, progress: bool):
        self.path, self.start, self.wall_before = path, start, wall_before
        self.history = read_history(path, upto=start) if start else []
        path.write_text("".join(json.dumps(r) + "\n" for r in self.history))
        self.t0 = time.perf_counter()
        self._t_log, self._s_log = self.t0, start
        self._bar = progress_bar(task) if progress else None
        self._bar_id = None
        if self._bar:
            self._bar_id = self._bar.add_task(
                "train", total=steps, completed=start, loss=float("nan"), rate=0.0
            )
        self._file: TextIO | None = None

    def __enter__(self) -> MetricsLog:
        if self._bar:
            self._bar.start()
        self._file = open(self.path, "a")  # closed by __exit__
        return self

    def __exit__(self, *exc) -> None:
        if self._file is not None:
            self._file.close()
        if self._bar:
            self._bar.stop()

    def wall(self) -> float:
        """Seconds of training so far, across resumptions."""
        return self.wall_before + time.perf_counter() - self.t0

    def row(self, step: int, metrics: dict) -> dict:
        """A new row: the step's metrics as floats, with ``step``, ``steps_per_second``, ``wall_seconds``."""
        now = time.perf_counter()
        rec = {k: float(v) for k, v in metrics.items()}
        rate = (step - self._s_log) / max(now - self._t_log, 1e-9)
        rec.update(step=step, steps_per_second=rate, wall_seconds=self.wall_before + now - self.t0)
        self._t_log, self._s_log = now, step
        return rec

    def write(self, rec: dict) -> None:
        """Append a row to the file (flushed, so a killed run keeps it) and to the history; move the bar."""
        if self._file is None:
            raise RuntimeError("MetricsLog.write: use the log as a context manager (`with MetricsLog(...)`).")
        self._file.write(json.dumps(rec) + "\n")
        self._file.flush()
        self.history.append(rec)
        if self._bar:
            self._bar.update(
                self._bar_id, completed=rec["step"], loss=rec["loss"], rate=rec["steps_per_second"]
            )


def write_summary(out: Path, summary: dict) -> None:
    """``summary.json``, indented."""
    (out / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")


def plot_history(history: list[dict], metric: str, path: Path, title: str = "") -> None:
    """Training loss (log scale) and the evaluated ``metric`` against steps, side by side, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6))
    a1.plot([r["step"] for r in history], [r["loss"] for r in history], lw=1)
    a1.set(xlabel="step", ylabel="training loss", yscale="log", title=f"{title}: training loss")
    ev = [r for r in history if metric in r]
    a2.plot([r["step"] for r in ev], [r[metric] for r in ev], marker="o", ms=3)
    a2.set(xlabel="step", ylabel=metric, title=f"{title}: {metric}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
