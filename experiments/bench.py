"""Issue 6: the training step of every LSTM implementation, timed round-robin. Writes runs/bench/.

    python experiments/bench.py [--threads 1] [--rounds 10] [--sizes "100,32,128,128;50,64,512,512"]
"""

import argparse
import logging

from jlstm.app import bench


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--sizes", default=None, help="T,B,D,H;T,B,D,H (default: issue 6's six sizes)")
    ap.add_argument("--impls", default=",".join(bench.ALL_IMPLS))
    ap.add_argument("--out", default="runs/bench")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    bench.configure_threads(args.threads)  # before JAX's first computation
    sizes = bench.parse_sizes(args.sizes) if args.sizes else bench.SIZES
    bench.run(sizes, impls=args.impls.split(","), rounds=args.rounds, out=args.out)
    print(open(f"{args.out}/bench.md").read())


if __name__ == "__main__":
    main()
