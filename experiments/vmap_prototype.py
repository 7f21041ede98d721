"""Prototype for the issue "jax.vmap of the hand-written backward": a tiny chunked LSTM engine like jlstm's.

    python experiments/vmap_prototype.py test                      # float64 checks of every transformation
    python experiments/vmap_prototype.py time [H ...] [rounds=15]  # ms per gradient step, B=32 T=50 D=32

``engine(k, weights, steps, state0) -> (ys [T, B, H], (hT, cT))``, with ``k`` the static chunk length:

* ``engine_manual`` (jlstm today): one custom_vjp around the chunked loop; its bwd adds ``dW, dU, db`` up
  in the carry of the reverse chunk scan. Under vmap JAX batches that bwd per example, so the carry holds
  ``[V, D, 4H]``, ``[V, H, 4H]``, ``[V, 4H]`` and ``_match_axes_and_sum`` reduces them over V afterwards.
* ``engine_attach`` (the fix): the custom_vjp ``_attach`` covers only one chunk's recurrence, with U a
  constant. Its bwd returns ``delta gates [k, B, 4H]`` as the cotangent of the chunk's pre-activations
  ``z = x @ W + h_prev @ U + b``, which are written in plain JAX next to it (their value is dead code). So
  JAX's own transposes compute ``dW, dU, db, dxs``, after batching: summed over V inside the contraction
  in grad(vmap(f)), and per example in vmap(grad(f)). No batching rule is needed: plain vmap of the scans
  already puts V next to B (one product of V*B rows; an ensemble's batched U gets per-member products).
* ``engine_autodiff``: the same forward, differentiated by JAX (the oracle).
"""

from __future__ import annotations

import functools
import sys
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

sg = lax.stop_gradient


class Weights(NamedTuple):
    W: jax.Array  # [D, 4H]
    U: jax.Array  # [H, 4H]
    b: jax.Array  # [4H]


class Steps(NamedTuple):
    xs: jax.Array  # [T, B, D]
    mask: jax.Array | None  # [T, B] bool, True at valid steps, or None


def _chunks(a, k):
    return None if a is None else a.reshape((a.shape[0] // k, k) + a.shape[1:])


def forward_chunk(w, xs, h, c, mask):
    """k steps from ``(h, c)``: ``(hT, cT), (ys, gates, c_prevs, h_prevs)``; padded steps keep the carry."""

    def body(carry, inp):
        (h, c), (zx, m) = carry, inp
        z, H = zx + h @ w.U, c.shape[-1]
        g = jnp.concatenate([jnp.tanh(z[..., :H]), jax.nn.sigmoid(z[..., H:])], -1)  # a, i, f, o
        a, i, f, o = jnp.split(g, 4, -1)
        c_new = a * i + f * c
        h_new = y = jnp.tanh(c_new) * o
        if m is not None:
            m = m[:, None]
            h_new, c_new, y = jnp.where(m, h_new, h), jnp.where(m, c_new, c), jnp.where(m, h_new, 0)
        return (h_new, c_new), (y, g, c, h)

    return lax.scan(body, (h, c), (xs @ w.W + w.b, mask))


def bptt_chunk(U, gates, c_prevs, c_end, g_ys, dh, dc, mask):
    """The hand-written reverse scan of one chunk: ``dh, dc`` entering it and ``delta gates [k, B, 4H]``."""
    U_T = U.T

    def body(carry, inp):
        (dh, dc, c), (g, c_prev, gy, m) = carry, inp
        dh_in, dc_in = dh + gy, dc
        if m is not None:  # a padded step passes the carry's gradient through and produces nothing
            mm = m[:, None]
            dh_in, dc_in = jnp.where(mm, dh_in, 0), jnp.where(mm, dc, 0)
        a, i, f, o = jnp.split(g, 4, -1)
        tc = jnp.tanh(c)
        ds = dc_in + dh_in * o * (1 - tc * tc)  # delta state_t
        dz = jnp.concatenate(
            [ds * i * (1 - a * a), ds * a * i * (1 - i), ds * c_prev * f * (1 - f), dh_in * tc * o * (1 - o)],
            -1,
        )
        dh_prev, dc_prev = dz @ U_T, ds * f
        if m is not None:
            dh_prev, dc_prev = jnp.where(mm, dh_prev, dh), jnp.where(mm, dc_prev, dc)
        return (dh_prev, dc_prev, c_prev), dz

    (dh, dc, _), dz = lax.scan(body, (dh, dc, c_end), (gates, c_prevs, g_ys, mask), reverse=True)
    return dh, dc, dz


def _forward(k, w, steps, state0):
    """The chunked forward: ``(ys, (hT, cT)), saved``, per chunk ``(c entering, gates, c_prevs, h_prevs)``."""

    def step(carry, inp):
        final, (ys, gates, c_prevs, h_prevs) = forward_chunk(w, inp[0], *carry, inp[1])
        return final, (ys, (carry[1], gates, c_prevs, h_prevs))

    final, (ys, saved) = lax.scan(step, tuple(state0), (_chunks(steps.xs, k), _chunks(steps.mask, k)))
    return (ys.reshape((-1,) + ys.shape[2:]), final), saved


def engine_autodiff(k, w, steps, state0):
    return _forward(k, w, steps, state0)[0]


# ---- jlstm today: one custom_vjp, the weights' gradients added up in the reverse chunk scan's carry ----
@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def engine_manual(k, w, steps, state0):
    return engine_autodiff(k, w, steps, state0)


def _manual_fwd(k, w, steps, state0):
    out, saved = _forward(k, w, steps, state0)
    return out, (w, steps, out[1][1], saved)


def _manual_bwd(k, res, cts):
    w, steps, cT, saved = res
    g_ys, (g_h, g_c) = cts

    def step(carry, inp):
        (dh, dc, c_end, dW, dU, db), (x_c, g_c, m_c, (c_s, gates, c_prevs, h_prevs)) = carry, inp
        dh, dc, dz = bptt_chunk(w.U, gates, c_prevs, c_end, g_c, dh, dc, m_c)
        dW = dW + jnp.einsum("tbd,tbg->dg", x_c, dz)  # under vmap: per-example accumulators
        dU = dU + jnp.einsum("tbh,tbg->hg", h_prevs, dz)
        return (dh, dc, c_s, dW, dU, db + dz.sum((0, 1))), dz @ w.W.T

    inp = (_chunks(steps.xs, k), _chunks(g_ys, k), _chunks(steps.mask, k), saved)
    carry = (g_h, g_c, cT) + tuple(jnp.zeros_like(a) for a in w)
    (dh0, dc0, _, dW, dU, db), dxs = lax.scan(step, carry, inp, reverse=True)
    return Weights(dW, dU, db), Steps(dxs.reshape(steps.xs.shape), None), (dh0, dc0)


engine_manual.defvjp(_manual_fwd, _manual_bwd)


# ---- the fix: the custom_vjp covers one chunk's recurrence, JAX makes the weights' contractions -------
@jax.custom_vjp
def _attach(z, h, c, U, out, res, mask):
    """``out``, computed elsewhere without gradient, with the chunk's hand-written VJP attached: the
    cotangents go to its pre-activations ``z`` and to the carry ``(h, c)`` entering it."""
    return out


def _attach_fwd(z, h, c, U, out, res, mask):
    return out, (U, res, out[2], mask)


def _attach_bwd(r, cts):
    U, (gates, c_prevs), c_end, mask = r
    dh, dc, dz = bptt_chunk(U, gates, c_prevs, c_end, *cts, mask)
    return dz, dh, dc, None, None, None, None


_attach.defvjp(_attach_fwd, _attach_bwd)


def _mm(a, M):  # [k, B, K] @ [K, N] as one 2-D product: its transposes stay XLA CPU's fast (YNN) dots
    return (a.reshape(-1, a.shape[-1]) @ M).reshape(a.shape[:-1] + M.shape[1:])


def engine_attach(k, w, steps, state0, remat=False):
    w0 = jax.tree.map(sg, w)

    def step(carry, inp):
        (h, c), (x_c, m_c) = carry, inp
        (hT, cT), (ys, gates, c_prevs, h_prevs) = forward_chunk(w0, sg(x_c), sg(h), sg(c), m_c)
        z = _mm(x_c, w.W) + _mm(h_prevs, w.U) + w.b  # linear in (W, U, b, x); its value is dead code
        ys, hT, cT = _attach(z, h, c, w0.U, (ys, hT, cT), (gates, c_prevs), m_c)
        return (hT, cT), ys

    step = jax.checkpoint(step, prevent_cse=False) if remat else step  # remat: JAX recomputes the chunk
    final, ys = lax.scan(step, tuple(state0), (_chunks(steps.xs, k), _chunks(steps.mask, k)))
    return ys.reshape((-1,) + ys.shape[2:]), final


ENGINES = {
    "manual": engine_manual,
    "attach": engine_attach,
    "autodiff": engine_autodiff,
    "attach+remat": functools.partial(engine_attach, remat=True),
}


# ---- checks ---------------------------------------------------------------------------------------
def _data(key, T, B, D, H, dtype):
    k = jax.random.split(key, 7)
    shapes = [(D, 4 * H), (H, 4 * H), (4 * H,)]
    w = Weights(*(jax.random.normal(kk, s, dtype) / np.sqrt(H) for kk, s in zip(k, shapes)))
    state0 = tuple(0.5 * jax.random.normal(kk, (B, H), dtype) for kk in k[4:6])
    return w, jax.random.normal(k[3], (T, B, D), dtype), state0, jax.random.randint(k[6], (B,), 0, T + 1)


def _loss(eng, k, w, xs, state0, mask, proj):
    ys, (hT, cT) = eng(k, w, Steps(xs, mask), state0)
    return jnp.sum(jnp.sin(ys) * proj) + jnp.sum(hT**2) + jnp.sum(jnp.cos(cT))


def run_tests():
    """Every transformation, jitted, against an oracle (autodiff on the batch axis, or a loop); float64."""
    jax.config.update("jax_enable_x64", True)
    T, V, D, H = 6, 3, 2, 4
    w, xs, s0, lengths = _data(jax.random.key(0), T, V, D, H, jnp.float64)
    mask = jnp.arange(T)[:, None] < lengths[None]  # [T, V]; the lengths include 0 and T
    proj = jnp.cos(jnp.arange(T * V * H, dtype=jnp.float64)).reshape(T, V, H)
    data, AX = (xs, s0, mask, proj), (1, (0, 0), 1, 1)  # batch axis 1 of per-step arrays, 0 of the state
    VAX = (None, 1, 0, 1, 1)  # vmap's in_axes over (w, *data)
    data2 = jax.tree.map(jnp.flip, data, AX)  # a second batch, flipped over the examples,
    data2 = (*data2[:2], mask[::-1], data2[3])  # with left padding (any mask works: h_prevs is the carry)
    both = jax.tree.map(lambda a, b, ax: jnp.concatenate([a, b], ax), data, data2, AX)
    WE = Weights(*(jnp.stack([a, -0.7 * a[::-1]]) for a in w))  # an ensemble of 2
    s1 = jax.tree.map(lambda a: a[0], s0)  # one carry for every example
    shared = (xs, jax.tree.map(lambda a: jnp.broadcast_to(a, (V, H)), s1), jnp.ones((T, V), bool), proj)
    stack = lambda trees: jax.tree.map(lambda *a: jnp.stack(a), *trees)  # noqa: E731
    example = lambda v: jax.tree.map(lambda a, ax: lax.slice_in_dim(a, v, v + 1, axis=ax), data, AX)  # noqa
    unsplit = lambda a, ax: jnp.stack(jnp.split(a, 2, ax))  # noqa: E731  [.., 2V, ..] -> [2, .., V, ..]

    def ref_grad(k, w, d):  # d/d(w, xs, state0) of autodiff on the batch axis
        return jax.grad(lambda w, x, s: _loss(engine_autodiff, k, w, x, s, *d[2:]), (0, 1, 2))(w, *d[:2])

    def cases(eng, k):  # name: (function, its args, the oracle's answer)
        def one(w, x, s, m, p):  # one example, x [T, D], s ([H], [H]), m [T], p [T, H]: a batch of 1
            return _loss(eng, k, w, x[:, None], jax.tree.map(lambda a: a[None], s), m[:, None], p[:, None])

        def vsum(w, *d):
            return jnp.sum(jax.vmap(one, VAX)(w, *d))

        def xs_only(w, x, s):
            return jnp.sum(jax.vmap(one, (None, 1, None, None, 1))(w, x, s, shared[2][:, 0], proj))

        def nested(w, *d):
            return jnp.sum(jax.vmap(jax.vmap(one, VAX), (None, 0, 0, 0, 0))(w, *d))

        loop = stack([ref_grad(k, w, example(v)) for v in range(V)])
        loop = (loop[0], loop[1][:, :, 0], jax.tree.map(lambda a: a[:, 0], loop[2]))
        members = stack([ref_grad(k, Weights(*(a[e] for a in WE)), data)[0] for e in range(2)])
        g1, g2 = ref_grad(k, w, shared), ref_grad(k, w, both)  # g2: the batch axis of 2 V examples
        over_params = (0,) + (None,) * 4

        def ensemble(WE):
            return jnp.sum(jax.vmap(vsum, over_params)(WE, *data))

        return {
            "value of vmap(xs, h0, c0, lengths)": (vsum, (w, *data), _loss(engine_autodiff, k, w, *data)),
            "grad(vmap(xs, h0, c0, lengths))": (jax.grad(vsum, (0, 1, 2)), (w, *data), ref_grad(k, w, data)),
            "grad(vmap(xs)), one carry for all": (
                jax.grad(xs_only, (0, 1, 2)),
                (w, xs, s1),
                (*g1[:2], jax.tree.map(lambda a: a.sum(0), g1[2])),
            ),
            "vmap(grad) per example": (jax.vmap(jax.grad(one, (0, 1, 2)), VAX), (w, *data), loop),
            "grad(vmap(vmap))": (
                jax.grad(nested, (0, 1, 2)),
                (w, *stack([data, data2])),
                (g2[0], unsplit(g2[1], 1), jax.tree.map(lambda a: unsplit(a, 0), g2[2])),
            ),
            "grad(vmap over params (vmap xs))": (jax.grad(ensemble), (WE,), members),
            "vmap(grad) over params": (jax.vmap(jax.grad(vsum), over_params), (WE, *data), members),
        }

    checks = []
    for name, eng in ENGINES.items():
        for k in (T, 2):  # one chunk, three chunks
            for case, (fn, args, want) in cases(eng, k).items():
                got, want = jax.tree.leaves(jax.jit(fn)(*args)), jax.tree.leaves(want)
                assert [a.shape for a in got] == [b.shape for b in want], case
                err = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(got, want))
                checks.append((f"{name:12s} k={k} {case}", err))
    for n, e in checks:
        print(f"{'ok ' if e < 1e-12 else 'BAD'} {e:.1e}  {n}")
    bad = [n for n, e in checks if not e < 1e-12]
    print(f"{len(checks) - len(bad)}/{len(checks)} checks within 1e-12")
    return not bad


# ---- timing -------------------------------------------------------------------------------------
def _per_sequence(eng, k, H):  # grad of vmap over sequences [T, D], each run as jlstm.lstm runs one
    def one(w, x):
        z = jnp.zeros((1, H), x.dtype)
        return jnp.sum(eng(k, w, Steps(x[:, None], None), (z, z))[0] ** 2)

    return jax.jit(jax.grad(lambda w, X: jnp.sum(jax.vmap(one, (None, 0))(w, X))))


def _batch_axis(eng, k, B, H):  # grad of one call on the batch [T, B, D]
    z = jnp.zeros((B, H))
    return jax.jit(jax.grad(lambda w, xs: jnp.sum(eng(k, w, Steps(xs, None), (z, z))[0] ** 2)))


def run_timing(Hs=(64, 128, 256), B=32, T=50, D=32, rounds=15):
    k1, kB = T, 25  # jlstm's prepare.default_chunk(50, B): 50 for a batch of 1, 25 for 32
    print(f"ms per gradient step (grad of sum(ys**2)), median (min) of {rounds} rounds, B={B} T={T} D={D}")
    print(
        "| H | vmap manual (today) | vmap attach (fix) | vmap autodiff | batch manual | batch attach "
        "| vmap attach / batch manual |\n|---|---|---|---|---|---|---|"
    )
    for H in Hs:
        w, xs, _, _ = _data(jax.random.key(H), T, B, D, H, jnp.float32)
        X = jnp.swapaxes(xs, 0, 1)  # [B, T, D]: B sequences
        fs = [(_per_sequence(e, k1, H), X) for e in (engine_manual, engine_attach, engine_autodiff)]
        fs += [(_batch_axis(e, kB, B, H), xs) for e in (engine_manual, engine_attach)]
        ts = [[] for _ in fs]
        for f, a in fs:
            jax.block_until_ready(f(w, a))
        for _ in range(rounds):  # round-robin
            for t, (f, a) in zip(ts, fs):
                t0 = time.perf_counter()
                jax.block_until_ready(f(w, a))
                t.append(1e3 * (time.perf_counter() - t0))
        med, low = [float(np.median(t)) for t in ts], [min(t) for t in ts]
        cells = [f"{m:.2f} ({lo:.2f})" for m, lo in zip(med, low)]
        print(f"| {H} | " + " | ".join(cells) + f" | {med[1] / med[3]:.2f} ({low[1] / low[3]:.2f}) |")


if __name__ == "__main__":
    if sys.argv[1:2] == ["time"]:
        opts = dict(a.split("=") for a in sys.argv[2:] if "=" in a)
        Hs = tuple(int(h) for h in sys.argv[2:] if "=" not in h) or (64, 128, 256)
        run_timing(Hs, rounds=int(opts.get("rounds", 15)))
    else:
        sys.exit(0 if run_tests() else 1)
