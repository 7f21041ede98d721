"""One thread setting, measured in this process: ``python -m jlstm.app.bench.worker SPEC_JSON OUT_JSON``.

Started by ``threads.measure_at`` with a clean environment; SPEC_JSON holds ``threads`` (None or an int),
``sizes``, ``impls`` (None for every available one) and ``rounds``. Writes the result to OUT_JSON.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    spec, out = json.loads(argv[0]), Path(argv[1])
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("jax").setLevel(logging.WARNING)
    from jlstm.app.bench import report, threads, timing

    if spec["threads"] is not None:
        threads.configure_threads(spec["threads"])  # before JAX's first computation
    sizes = [tuple(s) for s in spec["sizes"]]
    try:
        records = timing.measure(sizes, impls=spec["impls"], rounds=spec["rounds"])
    except (ValueError, AssertionError) as e:  # an unavailable implementation, a gradient that differs
        sys.exit(f"error: {e}")
    result = {"threads": spec["threads"], "machine": report.machine(), "sizes": records}
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
