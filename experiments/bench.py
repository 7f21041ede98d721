"""Issue 6: the training step of every LSTM implementation, timed round-robin. Writes runs/bench/.

    python experiments/bench.py [--threads default,1] [--rounds 10] [--sizes "100,32,128,128;50,64,512,512"]

One table per ``--threads`` setting, each measured in its own process: ``default`` (no thread limit set
for XLA or torch, what users get) and then 1 thread for every framework. On a GPU the default
implementations include ``cudnn`` and ``torch_cuda``; ``experiments/gpu_bench.sh`` runs that case.
"""

import argparse
import logging

from jlstm.app import bench


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="default,1", help="settings, one table each: 'default' or a count")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--sizes", default=None, help="T,B,D,H;T,B,D,H (default: issue 6's six sizes)")
    ap.add_argument("--impls", default=None, help="comma-separated (default: every one this machine offers)")
    ap.add_argument("--out", default="runs/bench")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sizes = bench.parse_sizes(args.sizes) if args.sizes else bench.SIZES
    impls = args.impls.split(",") if args.impls else None
    threads = bench.parse_threads(args.threads)
    bench.run(sizes, impls=impls, rounds=args.rounds, threads=threads, out=args.out)
    print(open(f"{args.out}/bench.md").read())


if __name__ == "__main__":
    main()
