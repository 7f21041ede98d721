"""Bidirectional stacks: the training step of ``jlstm.stacked_lstm`` (both directions of a layer as one
scan), of the same stack as two ``jlstm.lstm`` calls per layer (the path before the fusion), and of
``torch.nn.LSTM(num_layers, bidirectional=True)``, round-robin in one process, at default threads.

    python experiments/bench_stacked.py [--rounds 15] [--sizes "2:100,32,128,128;3:200,16,64,64"]

A size is ``layers:T,B,D,H``. The training step is the value and the gradient w.r.t. every layer's weights
of ``sum(hs * Y)``; the three steps' losses and gradients are checked equal first (float32). Prints the
median ms of each and the ratios fused / two calls and fused / torch.
"""

import argparse
import dataclasses
import statistics
import time


@dataclasses.dataclass(frozen=True)
class Config:
    sizes: tuple = ((2, 100, 32, 128, 128), (3, 200, 16, 64, 64))
    rounds: int = 15


def two_calls(layers, xs):
    """The bidirectional stack as it ran before: per layer, lstm forward and lstm(reverse=True)."""
    import jax.numpy as jnp

    import jlstm

    h = xs
    for fwd, bwd in layers:
        h = jnp.concatenate([jlstm.lstm(fwd, h)[0], jlstm.lstm(bwd, h, reverse=True)[0]], axis=-1)
    return h


def steps(L: int, T: int, B: int, D: int, H: int) -> dict:
    """name -> (run, (loss, flat gradient as numpy)) for fused, two calls and torch, on the same weights."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    import jlstm
    from jlstm import interop

    layers = jlstm.init_stacked(jax.random.key(0), D, H, L, bidirectional=True)
    xs = jax.random.normal(jax.random.key(1), (B, T, D))
    ys = jax.random.normal(jax.random.key(2), (B, T, 2 * H))
    fused = lambda p, x: jlstm.stacked_lstm(p, x, bidirectional=True)[0]  # noqa: E731
    out = {}
    for name, fn in (("fused", fused), ("two calls", two_calls)):
        step = jax.jit(jax.value_and_grad(lambda p, x, y, fn=fn: jnp.sum(fn(p, x) * y)))
        run = lambda step=step: jax.block_until_ready(step(layers, xs, ys))  # noqa: E731
        loss, g = run()
        out[name] = (run, (float(loss), np.concatenate([np.ravel(a) for a in jax.tree.leaves(g)])))
    mod = torch.nn.LSTM(D, H, num_layers=L, bidirectional=True, batch_first=True)
    mod.load_state_dict(interop.to_torch(layers))
    txs, tys = (torch.from_numpy(np.asarray(a)) for a in (xs, ys))

    def run_torch():
        mod.zero_grad(set_to_none=True)
        loss = (mod(txs)[0] * tys).sum()
        loss.backward()
        return loss

    loss = run_torch()
    grads = {n: (p.grad if "bias_hh" not in n else torch.zeros_like(p)) for n, p in mod.named_parameters()}
    g = jax.tree.leaves(interop.from_torch(grads))  # bias_hh's gradient equals bias_ih's: counted once
    out["torch"] = (run_torch, (float(loss), np.concatenate([np.ravel(np.asarray(a)) for a in g])))
    return out


def rel(a, b) -> float:
    import numpy as np

    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def main(config: Config) -> None:
    import torch

    print(f"torch threads: {torch.get_num_threads()} (default); median ms over {config.rounds} rounds")
    for L, T, B, D, H in config.sizes:
        impls = steps(L, T, B, D, H)
        ref = impls["fused"][1]
        for name, (_, (loss, g)) in impls.items():  # the same step before timing it
            err = max(abs(loss - ref[0]) / abs(ref[0]), rel(g, ref[1]))
            assert err < 1e-4, f"{name}: loss or gradient differs from fused's by {err:.1e}"
        times = {name: [] for name in impls}
        for _ in range(config.rounds):
            for name, (run, _) in impls.items():
                t0 = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - t0)
        med = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
        print(f"{L} layers, (T, B, D, H) = {(T, B, D, H)}: "
              + ", ".join(f"{n} {m:.2f} ms" for n, m in med.items())
              + f" | fused / two calls {med['fused'] / med['two calls']:.2f}"
              + f" | fused / torch {med['fused'] / med['torch']:.2f}"
              + f" | two calls / torch {med['two calls'] / med['torch']:.2f}")  # fmt: skip


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=Config.rounds)
    ap.add_argument("--sizes", default=None, help="layers:T,B,D,H;... (default: the two sizes above)")
    args = ap.parse_args()
    sizes = Config.sizes
    if args.sizes:
        sizes = tuple(
            (int(s.split(":")[0]),) + tuple(int(v) for v in s.split(":")[1].split(","))
            for s in args.sizes.split(";")
        )
    main(Config(sizes=sizes, rounds=args.rounds))
