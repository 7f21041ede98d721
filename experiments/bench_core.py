"""Issue 2: manual vs autodiff vs a plain lax.scan LSTM under jax.grad, round-robin. Writes runs/bench_core/.

    python experiments/bench_core.py [--threads 1] [--rounds 15]
"""

import argparse
import logging

from jlstm import bench


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--out", default="runs/bench_core")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    bench.configure_threads(args.threads)
    bench.run(bench.CORE_SIZES, impls=bench.CORE_IMPLS, rounds=args.rounds, out=args.out, name="bench_core")
    print(open(f"{args.out}/bench_core.md").read())


if __name__ == "__main__":
    main()
