"""The layers issue: each jlstm.nn layer's training step against its framework's own LSTM, side by side.

    python experiments/bench_layers.py [--size 100,32,128,128] [--rounds 5] [--steps 5] [--only nnx,keras]

One training step = the framework's idiomatic jitted step on ``loss = sum(hs * Y)`` with an SGD update:
``nnx.jit`` + ``nnx.Optimizer`` (NNX), ``jax.jit`` over ``apply`` + optax (linen), ``eqx.filter_jit`` over
a vmapped module (Equinox), ``train_on_batch`` of a compiled ``Sequential`` (Keras 3, JAX backend). The
framework's own LSTM is ``nnx.RNN(OptimizedLSTMCell)``, ``nn.RNN(OptimizedLSTMCell)``, a ``lax.scan`` of
``eqx.nn.LSTMCell`` and ``keras.layers.LSTM``. Every step is compiled before timing; then the rounds
time ``--steps`` steps of each implementation in turn (round-robin, default threads, float32), and the
table gives the median time per step and the ratio ``own / jlstm`` (above 1: the jlstm layer is faster).
"""

import argparse
import os
import statistics
import time
from dataclasses import dataclass

os.environ.setdefault("KERAS_BACKEND", "jax")


@dataclass(frozen=True)
class Config:
    T: int = 100
    B: int = 32
    D: int = 128
    H: int = 128
    rounds: int = 5
    steps: int = 5
    only: tuple[str, ...] = ("nnx", "linen", "equinox", "keras")


def _data(c: Config):
    import jax

    kx, ky = jax.random.split(jax.random.key(0))
    return jax.random.normal(kx, (c.B, c.T, c.D)), jax.random.normal(ky, (c.B, c.T, c.H))


def nnx_steps(c: Config) -> dict:
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from jlstm.nn.nnx import LSTM

    xs, ys = _data(c)

    def make(model):
        opt = nnx.Optimizer(model, optax.sgd(1e-3), wrt=nnx.Param)

        @nnx.jit
        def step(model, opt):
            loss, grads = nnx.value_and_grad(lambda m: jnp.sum(m(xs) * ys))(model)
            opt.update(model, grads)
            return loss

        return lambda: step(model, opt).block_until_ready()

    own = nnx.RNN(nnx.OptimizedLSTMCell(c.D, c.H, rngs=nnx.Rngs(0)))
    return {"nnx": {"jlstm": make(LSTM(c.D, c.H, rngs=nnx.Rngs(0))), "own": make(own)}}


def linen_steps(c: Config) -> dict:
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax

    from jlstm.nn.linen import LSTM

    xs, ys = _data(c)
    tx = optax.sgd(1e-3)

    def make(model):
        state = [model.init(jax.random.key(0), xs)]
        state.append(tx.init(state[0]))

        @jax.jit
        def step(params, opt_state):
            loss, grads = jax.value_and_grad(lambda p: jnp.sum(model.apply(p, xs) * ys))(params)
            updates, opt_state = tx.update(grads, opt_state)
            return optax.apply_updates(params, updates), opt_state, loss

        def run():
            state[0], state[1], loss = step(*state)
            loss.block_until_ready()

        return run

    return {"linen": {"jlstm": make(LSTM(c.H)), "own": make(nn.RNN(nn.OptimizedLSTMCell(c.H)))}}


def equinox_steps(c: Config) -> dict:
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import optax

    from jlstm.nn.equinox import LSTM

    xs, ys = _data(c)
    tx = optax.sgd(1e-3)

    class CellScan(eqx.Module):
        cell: eqx.nn.LSTMCell

        def __call__(self, x):
            h0 = (jnp.zeros(c.H), jnp.zeros(c.H))
            return jax.lax.scan(lambda s, xt: (self.cell(xt, s),) * 2, h0, x)[1][0]

    def make(model, run_one):
        state = [model, tx.init(eqx.filter(model, eqx.is_inexact_array))]

        @eqx.filter_jit
        def step(model, opt_state):
            loss, grads = eqx.filter_value_and_grad(lambda m: jnp.sum(jax.vmap(run_one(m))(xs) * ys))(model)
            updates, opt_state = tx.update(grads, opt_state, eqx.filter(model, eqx.is_inexact_array))
            return eqx.apply_updates(model, updates), opt_state, loss

        def run():
            state[0], state[1], loss = step(*state)
            loss.block_until_ready()

        return run

    ours = LSTM(c.D, c.H, key=jax.random.key(0))
    own = make(CellScan(eqx.nn.LSTMCell(c.D, c.H, key=jax.random.key(0))), lambda m: m)
    vmapped = make(ours, lambda m: lambda x: m(x)[0])  # jax.vmap over per-example calls, the idiom

    def batch_call(m):
        def run_batch(xs):
            return m(xs)[0]  # the layer takes leading batch axes: one call on the whole batch

        return run_batch

    state = [ours, tx.init(eqx.filter(ours, eqx.is_inexact_array))]

    @eqx.filter_jit
    def step(model, opt_state):
        loss, grads = eqx.filter_value_and_grad(lambda m: jnp.sum(batch_call(m)(xs) * ys))(model)
        updates, opt_state = tx.update(grads, opt_state, eqx.filter(model, eqx.is_inexact_array))
        return eqx.apply_updates(model, updates), opt_state, loss

    def run_batched():
        state[0], state[1], loss = step(*state)
        loss.block_until_ready()

    return {"equinox (vmap)": {"jlstm": vmapped, "own": own},
            "equinox (batch call)": {"jlstm": run_batched, "own": own}}  # fmt: skip


def keras_steps(c: Config) -> dict:
    import keras
    import numpy as np

    from jlstm.nn.keras import LSTM

    xs, ys = (np.asarray(a) for a in _data(c))

    def make(layer):
        model = keras.Sequential([keras.Input((c.T, c.D)), layer])
        model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
        return lambda: model.train_on_batch(xs, ys)

    own = keras.layers.LSTM(c.H, return_sequences=True, use_cudnn=False)
    return {"keras": {"jlstm": make(LSTM(c.H, return_sequences=True)), "own": make(own)}}


FRAMEWORKS = {"nnx": nnx_steps, "linen": linen_steps, "equinox": equinox_steps, "keras": keras_steps}


def run(c: Config) -> dict[str, dict[str, float]]:
    """Median seconds per training step, ``{row: {"jlstm": s, "own": s}}``, round-robin."""
    steps = {row: impls for name in c.only for row, impls in FRAMEWORKS[name](c).items()}
    for impls in steps.values():
        for fn in impls.values():
            fn()  # compile
    times = {name: {k: [] for k in impls} for name, impls in steps.items()}
    for _ in range(c.rounds):
        for name, impls in steps.items():
            for k, fn in impls.items():
                t0 = time.perf_counter()
                for _ in range(c.steps):
                    fn()
                times[name][k].append((time.perf_counter() - t0) / c.steps)
    return {name: {k: statistics.median(v) for k, v in d.items()} for name, d in times.items()}


def table(c: Config, medians: dict) -> str:
    rows = [f"training step, (T, B, D, H) = ({c.T}, {c.B}, {c.D}, {c.H}), float32, default threads, "
            f"median of {c.rounds} rounds x {c.steps} steps", "",
            "| framework | jlstm layer (ms) | framework's own LSTM (ms) | own / jlstm |",
            "| --- | --- | --- | --- |"]  # fmt: skip
    for name, m in medians.items():
        rows.append(
            f"| {name} | {1e3 * m['jlstm']:.1f} | {1e3 * m['own']:.1f} | {m['own'] / m['jlstm']:.2f} |"
        )
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="100,32,128,128", help="T,B,D,H")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument(
        "--only", default=",".join(FRAMEWORKS), help="a comma-separated subset of " + ",".join(FRAMEWORKS)
    )
    a = p.parse_args()
    T, B, D, H = (int(v) for v in a.size.split(","))
    c = Config(T, B, D, H, a.rounds, a.steps, tuple(a.only.split(",")))
    print(table(c, run(c)))


if __name__ == "__main__":
    main()
