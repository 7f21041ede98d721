"""The training step of ``jlstm.lstm`` (manual backward) in two checkouts, side by side, round-robin.

    git worktree add /tmp/before <commit>
    python experiments/bench_two_trees.py /tmp/before . [--rounds 5] [--sizes T,B,D,H;...]

Each round runs one process per tree (so both see the same load, in alternation) that times the
jitted gradient of ``sum(hs ** 2)`` at every size; the table is the median over rounds, in ms, and
the ratio new / old. Default threads.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

WORKER = r"""
import json, sys, time
import jax, jax.numpy as jnp
import jlstm
out = {}
for T, B, D, H in json.loads(sys.argv[1]):
    p = jlstm.init(jax.random.key(0), D, H)
    xs = jax.random.normal(jax.random.key(1), (B, T, D))
    f = jax.jit(jax.grad(lambda p, xs: jnp.sum(jlstm.lstm(p, xs)[0] ** 2)))
    jax.block_until_ready(f(p, xs))
    times = []
    for _ in range(int(sys.argv[2])):
        t = time.perf_counter()
        jax.block_until_ready(f(p, xs))
        times.append(time.perf_counter() - t)
    out[f"{T},{B},{D},{H}"] = sorted(times)[len(times) // 2] * 1e3
print(json.dumps(out))
"""


def _run(tree: str, sizes, reps: int) -> dict:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
    res = subprocess.run(
        [sys.executable, "-c", WORKER, json.dumps(sizes), str(reps)], env=env, capture_output=True, text=True
    )
    if res.returncode:
        sys.exit(f"{tree}: {res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=10, help="timed calls per size per process")
    ap.add_argument("--sizes", default="50,8,64,64;100,32,128,128;100,32,256,256;1000,8,128,128")
    a = ap.parse_args()
    sizes = [[int(v) for v in s.split(",")] for s in a.sizes.split(";") if s]
    runs: dict[str, list[dict]] = {"old": [], "new": []}
    for _ in range(a.rounds):
        for which in ("old", "new"):
            runs[which].append(_run(getattr(a, which), sizes, a.reps))
    print("| T, B, D, H | old ms | new ms | new / old |\n| --- | --- | --- | --- |")
    for key in runs["old"][0]:
        old = statistics.median(r[key] for r in runs["old"])
        new = statistics.median(r[key] for r in runs["new"])
        print(f"| {key} | {old:.2f} | {new:.2f} | {new / old:.3f} |")


if __name__ == "__main__":
    main()
