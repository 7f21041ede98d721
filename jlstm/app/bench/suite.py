"""The whole benchmark: each thread setting measured in its own process, then one report."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from jlstm.app.bench.problem import SIZES
from jlstm.app.bench.registry import IMPLEMENTATIONS
from jlstm.app.bench.report import write
from jlstm.app.bench.threads import measure_at

log = logging.getLogger("jlstm.app.bench")

#: The tables of a report: at the default threads (what users get), then at one thread.
DEFAULT_THREADS: tuple[int | None, ...] = (None, 1)


def run(
    sizes: Sequence[tuple[int, int, int, int]] = SIZES,
    *,
    impls: Sequence[str] | None = None,
    rounds: int = 10,
    threads: Sequence[int | None] = DEFAULT_THREADS,
    out: str | Path | None = None,
    name: str = "bench",
) -> dict:
    """Measure every size at every thread setting, then write ``<out>/<name>.md``, ``.json`` and ``.png``.

    Args:
      sizes: ``(T, B, D, H)`` tuples.
      impls: names from ``IMPLEMENTATIONS``; None: every one this machine offers (``cudnn`` and
        ``torch_cuda`` only where JAX runs on a GPU).
      rounds: round-robin rounds per size.
      threads: one table per setting: None for the default (no thread limit set for XLA or torch), or
        a thread count for every framework. Each setting runs in a fresh Python process, because XLA
        reads its thread flags once, when its backend starts.
      out: the output folder (nothing written if None).

    Returns:
      ``{"rounds", "machine", "tables": [{"threads", "machine", "sizes": [record, ...]}, ...]}``.
    """
    for i in impls or ():
        if i not in IMPLEMENTATIONS:
            raise ValueError(f"jlstm.bench.run: impls must be among {tuple(IMPLEMENTATIONS)}; got {i!r}.")
    if not threads:
        raise ValueError("jlstm.bench.run: threads must name at least one setting; got none.")
    tables = []
    for setting in threads:
        log.info("threads: %s", "default" if setting is None else setting)
        tables.append(measure_at(setting, sizes, None if impls is None else list(impls), rounds))
    result = {"rounds": rounds, "machine": tables[0]["machine"], "tables": tables}
    if out is not None:
        write(result, out, name)
    return result
