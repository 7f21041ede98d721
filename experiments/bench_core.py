"""Issue 2: manual vs autodiff vs a plain lax.scan LSTM under jax.grad, round-robin. Writes runs/bench_core/.

    python experiments/bench_core.py [--threads default,1] [--rounds 15] [--sizes "100,32,128,128"]
    python experiments/bench_core.py --lowp [--threads 1] [--sizes "100,32,128,128"]  # issue 6: low precision

The comparison gives one table per ``--threads`` setting (default: ``default`` = no thread limit set for
XLA or torch, then 1), each measured in its own process. ``--lowp`` measures in this process at one
setting (default 1 thread).

``--lowp`` times the training step (value and gradient of ``sum(hs * Y)``) in float32 against bfloat16 and
float16 compute (16-bit inputs and params; and float32 params with ``compute_dtype=jnp.bfloat16``),
round-robin, and measures each one's error against the float32 run: the largest absolute error of
``hs`` and the relative (Frobenius) error of ``(dW, dU, db)``. Writes ``<out>/lowp.md`` and ``.json``.
"""

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

from jlstm.app import bench

#: name -> (dtype of xs and params, compute_dtype keyword, backward)
LOWP_VARIANTS = {
    "float32 manual": ("float32", None, "manual"),
    "bfloat16 manual": ("bfloat16", None, "manual"),
    "bfloat16 autodiff": ("bfloat16", None, "autodiff"),
    "float16 manual": ("float16", None, "manual"),
    "f32 params, compute_dtype=bf16": ("float32", "bfloat16", "manual"),
}


def lowp_size(T: int, B: int, D: int, H: int, rounds: int) -> dict:
    """Time every variant of LOWP_VARIANTS round-robin and measure its error against float32."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jlstm

    prob = bench.make_problem(T, B, D, H)
    impls, outs = [], {}
    for name, (dt, cd, backward) in LOWP_VARIANTS.items():
        params = jlstm.LSTMParams(*(jnp.asarray(a, dt) for a in (prob.W, prob.U, prob.b)))
        xs, ys = jnp.asarray(prob.xs, dt), jnp.asarray(prob.ys, jnp.float32)

        def step(params, xs, ys, cd=cd, backward=backward):
            def loss(p):
                hs = jlstm.lstm(p, xs, backward=backward, compute_dtype=cd)[0]
                return jnp.sum(hs.astype(jnp.float32) * ys), hs

            return jax.value_and_grad(loss, has_aux=True)(params)

        compiled = jax.jit(step).lower(params, xs, ys).compile()
        args = (params, xs, ys)
        impls.append(bench.Impl(name, lambda c=compiled, a=args: jax.block_until_ready(c(*a)), lambda: None))
        (_, hs), g = compiled(*args)
        outs[name] = (np.asarray(hs, np.float64), [np.asarray(a, np.float64) for a in g])
    times = bench.time_round_robin(impls, rounds)
    cpu = bench.time_round_robin(impls, rounds, clock=time.process_time)
    ref_hs, ref_g = outs["float32 manual"]
    base, cpu_base = (statistics.median(t["float32 manual"]) for t in (times, cpu))
    rec = {"size": {"T": T, "B": B, "D": D, "H": H}, "variants": {}}
    for name, (hs, g) in outs.items():
        num = sum(float(np.sum((a - b) ** 2)) for a, b in zip(g, ref_g))
        den = sum(float(np.sum(b**2)) for b in ref_g)
        rec["variants"][name] = {
            "median_ms": 1e3 * statistics.median(times[name]),
            "vs_f32": statistics.median(times[name]) / base,
            "cpu_vs_f32": statistics.median(cpu[name]) / cpu_base,
            "hs_max_abs_err": float(np.max(np.abs(hs - ref_hs))),
            "grad_rel_err": (num / den) ** 0.5,
        }
    return rec


def lowp_markdown(result: dict) -> str:
    threads = "default threads" if result["threads"] is None else f"{result['threads']} thread(s)"
    lines = [
        f"Median ms per training step over {result['rounds']} round-robin rounds, {threads}; x f32 = "
        "median / float32 manual's median (wall, then CPU time); errors against the "
        "float32 run on the same (float32) weights and inputs.",
        "",
        "| T, B, D, H | variant | ms median | x f32 | x f32 (cpu) | max abs err hs | rel err dW, dU, db |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for rec in result["sizes"]:
        size = ", ".join(str(v) for v in rec["size"].values())
        for name, r in rec["variants"].items():
            lines.append(
                f"| {size} | {name} | {r['median_ms']:.2f} | {r['vs_f32']:.2f} | {r['cpu_vs_f32']:.2f} "
                f"| {r['hs_max_abs_err']:.2e} | {r['grad_rel_err']:.2e} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default=None, help="'default', a count, or several (default: default,1)")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--sizes", default=None, help='"T,B,D,H;T,B,D,H" (default: the two core sizes)')
    ap.add_argument("--lowp", action="store_true", help="float32 vs bfloat16/float16 compute instead")
    ap.add_argument("--out", default="runs/bench_core")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sizes = bench.parse_sizes(args.sizes) if args.sizes else bench.CORE_SIZES
    threads = bench.parse_threads(args.threads or ("1" if args.lowp else "default,1"))
    if args.lowp:
        if len(threads) != 1:
            ap.error(f"--lowp measures in this process, at one --threads setting; got {args.threads!r}")
        if threads[0] is not None:
            bench.configure_threads(threads[0])  # before JAX's first computation
        result = {"rounds": args.rounds, "threads": threads[0], "machine": bench.machine(), "sizes": []}
        for size in sizes:
            result["sizes"].append(lowp_size(*size, rounds=args.rounds))
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "lowp.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / "lowp.md").write_text(lowp_markdown(result))
        print(lowp_markdown(result))
        return
    bench.run(
        sizes, impls=bench.CORE_IMPLS, rounds=args.rounds, threads=threads, out=args.out, name="bench_core"
    )
    print(open(f"{args.out}/bench_core.md").read())


if __name__ == "__main__":
    main()
