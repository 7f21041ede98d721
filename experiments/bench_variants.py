"""The cell variants' training step, hand-written backward against autodiff, side by side in one process.

    python experiments/bench_variants.py [--rounds 5] [--size 100,32,128,128] [--rows REGEX]

For each variant (``ROWS``) the jitted value and gradient (w.r.t. the parameters) of ``sum(hs * Y)`` is
compiled with ``backward="manual"`` and ``backward="autodiff"``, the two gradients are compared (float32,
relative), then every step runs round-robin (one call each per round, default threads) and the table
gives the medians and the ratio manual / autodiff (below 1: the hand-written backward is faster).
Zoneout and recurrent dropout run in training mode with a fixed key (the same masks in both).
"""

import argparse
import re
import statistics

import jlstm.cells.init

#: name -> (``jlstm.init`` options, ``jlstm.lstm`` options); ``key`` is added where a row trains.
ROWS = {
    "vanilla": ({}, {}),
    "peephole": ({"peephole": True}, {}),
    "proj_size=64": ({"proj_size": 64}, {}),
    "layer_norm": ({"layer_norm": True}, {}),
    "cell_clip=3": ({"cell_clip": 3.0}, {}),
    "zoneout=0.1 (train)": ({}, {"zoneout": 0.1}),
    "recurrent_dropout=0.25 (train)": ({}, {"recurrent_dropout": 0.25}),
    **{f"{v} + peephole": ({"variant": v, "peephole": True}, {}) for v in jlstm.cells.init.KNOWN},
    "all: peephole, proj 64, LN, clips 3, zoneout, dropout": (
        {"peephole": True, "proj_size": 64, "layer_norm": True, "cell_clip": 3.0, "proj_clip": 3.0},
        {"zoneout": 0.1, "recurrent_dropout": 0.25},
    ),
}  # fmt: skip


def build(name: str, T: int, B: int, D: int, H: int):
    """``{backward: Impl}`` for one row: the compiled step, run on fixed inputs."""
    import jax
    import jax.numpy as jnp

    import jlstm
    from jlstm.app.bench import Impl

    init_opts, lstm_opts = ROWS[name]
    kp, kx, ky, kd = jax.random.split(jax.random.key(0), 4)
    params = jlstm.init(kp, D, H, **init_opts)
    R = init_opts.get("proj_size") or H
    xs, ys = jax.random.normal(kx, (B, T, D)), jax.random.normal(ky, (B, T, R))
    key = kd if lstm_opts else None
    impls = {}
    for backward in ("manual", "autodiff"):

        def step(params, xs, ys, key, backward=backward):
            loss = lambda p: jnp.sum(jlstm.lstm(p, xs, backward=backward, key=key, **lstm_opts)[0] * ys)  # noqa: E731
            return jax.value_and_grad(loss)(params)

        compiled = jax.jit(step).lower(params, xs, ys, key).compile()
        run = lambda c=compiled: jax.block_until_ready(c(params, xs, ys, key))  # noqa: E731
        impls[backward] = Impl(f"{name} [{backward}]", run, run)
    return impls


def _rel_err(a, b) -> float:
    import jax
    import numpy as np

    la, lb = (jax.tree.leaves(t) for t in (a, b))
    num = sum(
        float(np.sum((np.asarray(x, np.float64) - np.asarray(y, np.float64)) ** 2)) for x, y in zip(la, lb)
    )
    return (num / sum(float(np.sum(np.asarray(y, np.float64) ** 2)) for y in lb)) ** 0.5


def run(T: int, B: int, D: int, H: int, rounds: int, rows: str = "") -> list[dict]:
    """Build, check and time the rows whose name matches the regex ``rows``; one record per row."""
    from jlstm.app.bench import time_round_robin

    built = {name: build(name, T, B, D, H) for name in ROWS if re.search(rows, name)}
    if not built:
        raise ValueError(f"run: no row matches rows={rows!r}; the rows are {list(ROWS)}.")
    errs = {n: _rel_err(i["manual"].grads()[1], i["autodiff"].grads()[1]) for n, i in built.items()}
    times = time_round_robin([impl for pair in built.values() for impl in pair.values()], rounds)
    rows = []
    for name, pair in built.items():
        man, auto = (statistics.median(times[pair[b].name]) for b in ("manual", "autodiff"))
        rows.append({"variant": name, "manual_ms": 1e3 * man, "autodiff_ms": 1e3 * auto, "ratio": man / auto,
                     "grad_rel_err": errs[name]})  # fmt: skip
    return rows


def markdown(rows: list[dict], size: tuple[int, int, int, int], rounds: int) -> str:
    import jax

    T, B, D, H = size
    head = [
        f"T={T}, B={B}, D={D}, H={H}, float32, {jax.default_backend()}, default threads, median of {rounds} "
        "rounds (round-robin)",
        "",
        "| variant | manual ms | autodiff ms | manual / autodiff | grad rel. err |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    body = [
        f"| {r['variant']} | {r['manual_ms']:.2f} | {r['autodiff_ms']:.2f} | {r['ratio']:.2f} | "
        f"{r['grad_rel_err']:.1e} |"
        for r in rows
    ]
    return "\n".join(head + body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--size", default="100,32,128,128", help="T,B,D,H")
    ap.add_argument("--rows", default="", help="a regex: only the rows whose name matches (default: all)")
    args = ap.parse_args()
    size = tuple(int(s) for s in args.size.split(","))
    if len(size) != 4:
        raise SystemExit(f"--size must be T,B,D,H; got {args.size!r}.")
    print(markdown(run(*size, rounds=args.rounds, rows=args.rows), size, args.rounds))


if __name__ == "__main__":
    main()
