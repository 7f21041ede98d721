"""``jlstm demo`` and ``jlstm gradcheck``: the worked example, a gradient check, a short run, a report.

``run(out)`` writes ``out/report.md`` (markdown, with the plots beside it) in well under three minutes
on two CPU cores: the source's worked example number by number, the hand-written gradient against
autodiff and finite differences on a random configuration, a short ``digits`` run with its progress
bar and the source's own two-step example trained by SGD.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp

from jlstm.core.params import LSTMParams, LSTMState, init
from jlstm.functional import lstm

log = logging.getLogger("jlstm.demo")


def gradcheck(
    seed: int = 0, batch: int = 3, T: int = 7, D: int = 4, H: int = 5, eps: float = 1e-6
) -> list[dict]:
    """Hand-written gradient vs ``jax.grad`` through the same forward vs central finite differences.

    In float64, on a random LSTM (weights scaled by 2 so that gates are not all near 0.5), random
    inputs ``xs [batch, T, D]`` and a random initial carry, under a loss that touches every output,
    the final ``h`` and the final ``c``. For each argument ``x`` and a random unit direction ``v``,
    finite differences give ``(L(x + eps v) - L(x - eps v)) / (2 eps)``, to compare with ``<grad, v>``.

    Returns:
      One dict per argument (``W``, ``U``, ``b``, ``xs``, ``h0``, ``c0``) with ``shape``,
      ``manual_vs_autodiff`` (max abs difference over max abs value), ``manual_dot_v``,
      ``autodiff_dot_v``, ``finite_difference`` and ``manual_vs_fd`` (relative difference).
    """
    with jax.enable_x64(True):
        out = _gradcheck_arrays(jax.random.key(seed), batch, T, D, H, eps)
        out = jax.tree.map(float, out)
    shapes = {
        "W": (D, 4 * H),
        "U": (H, 4 * H),
        "b": (4 * H,),
        "xs": (batch, T, D),
        "h0": (batch, H),
        "c0": (batch, H),
    }
    rows = []
    for name in shapes:  # the order of the arguments, not the pytree's sorted keys
        max_diff, max_auto, dm, da, fd = out[name]
        rows.append(
            {
                "name": name,
                "shape": shapes[name],
                "manual_vs_autodiff": max_diff / max_auto,
                "manual_dot_v": dm,
                "autodiff_dot_v": da,
                "finite_difference": fd,
                "manual_vs_fd": abs(dm - fd) / max(abs(fd), 1e-300),
            }
        )
    return rows


@partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _gradcheck_arrays(key, batch, T, D, H, eps):
    """Everything of ``gradcheck`` in one compiled program (eager float64 ops would each compile)."""
    ks = jax.random.split(key, 6)
    p = jax.tree.map(lambda a: 2.0 * a, init(ks[0], D, H, dtype=jnp.float64))
    xs = jax.random.normal(ks[1], (batch, T, D), jnp.float64)
    h0 = 0.5 * jax.random.normal(ks[2], (batch, H), jnp.float64)
    c0 = 0.5 * jax.random.normal(ks[3], (batch, H), jnp.float64)
    w = jax.random.normal(ks[4], (batch, T, H), jnp.float64)
    args = {"W": p.W, "U": p.U, "b": p.b, "xs": xs, "h0": h0, "c0": c0}

    def loss(a, backward):
        hs, (h, c) = lstm(
            LSTMParams(a["W"], a["U"], a["b"]), a["xs"], LSTMState(a["h0"], a["c0"]), backward=backward
        )
        return jnp.sum(w * hs) + 0.5 * jnp.sum(h**2) + jnp.sum(jnp.sin(c))

    g_man = jax.grad(loss)(args, "manual")
    g_auto = jax.grad(loss)(args, "autodiff")
    names = list(args)
    dirs = {}
    for name, kd in zip(names, jax.random.split(ks[5], len(names))):
        v = jax.random.normal(kd, args[name].shape, jnp.float64)
        dirs[name] = v / jnp.linalg.norm(v)
    # The 2 x 6 perturbed problems as one batch: one vmapped forward instead of twelve compiled ones.
    cases = [(name, sign) for name in names for sign in (1.0, -1.0)]
    stacked = {
        k: jnp.stack([args[k] + sign * eps * dirs[k] if k == name else args[k] for name, sign in cases])
        for k in names
    }
    losses = jax.vmap(lambda a: loss(a, "autodiff"))(stacked).reshape(len(names), 2)
    out = {}
    for i, name in enumerate(names):
        fd = (losses[i, 0] - losses[i, 1]) / (2 * eps)
        gm, ga, v = g_man[name], g_auto[name], dirs[name]
        out[name] = (jnp.max(jnp.abs(gm - ga)), jnp.max(jnp.abs(ga)), jnp.vdot(gm, v), jnp.vdot(ga, v), fd)
    return out


def gradcheck_table(rows: list[dict]) -> str:
    """The rows of ``gradcheck`` as an aligned text table (also valid inside a markdown code block)."""
    head = (
        f"{'arg':<4}{'shape':>12}{'|man-auto|/|auto|':>19}{'<man,v>':>15}{'<auto,v>':>15}"
        f"{'fin. diff':>15}{'man vs fd':>11}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['name']:<4}{str(r['shape']):>12}{r['manual_vs_autodiff']:>19.2e}{r['manual_dot_v']:>15.10f}"
            f"{r['autodiff_dot_v']:>15.10f}{r['finite_difference']:>15.10f}{r['manual_vs_fd']:>11.1e}"
        )
    return "\n".join(lines)


def gradcheck_passed(rows: list[dict]) -> bool:
    """Manual equals autodiff to 1e-10 and finite differences to 1e-6 (relative), on every argument."""
    return all(r["manual_vs_autodiff"] < 1e-10 and r["manual_vs_fd"] < 1e-6 for r in rows)


def run(
    out: str | Path = "runs/demo",
    *,
    digits_steps: int = 1500,
    gomez_steps: int = 100,
    progress: bool = True,
    show: Callable[[str], None] = print,
) -> Path:
    """Run the demo and write ``out/report.md``; returns its path.

    Args:
      out: the output directory (``digits/`` and ``gomez/`` runs go under it).
      digits_steps: SGD steps of the short ``digits`` run.
      gomez_steps: SGD steps on the source's two-step example.
      progress: show the progress bars.
      show: where the tables go (stdout by default; they are too wide for log lines).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    sections = [
        _worked_example(out, show),
        _gradient_check(show),
        _digits_run(out, digits_steps, progress),
        _gomez_run(out, gomez_steps),
    ]
    total = time.perf_counter() - t0
    head = [
        "# jlstm demo",
        "",
        f"Written by `jlstm demo` in {total:.0f} s (JAX {jax.__version__}, backend {jax.default_backend()}).",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(head + [line for section in sections for line in section] + _NEXT))
    log.info("report: %s (%.0f s)", path, total)
    return path


def _worked_example(out: Path, show: Callable[[str], None]) -> list[str]:
    """Step 1: the source's worked example, number by number; its report section."""
    from jlstm.app import example

    log.info("1/4  the source's worked example, number by number")
    with jax.enable_x64(True):  # so the table shows the equations, not float32 rounding
        table = example.report()
        rows = example.rows()
    (out / "example.txt").write_text(table + "\n")
    show(table)
    return [
        "## 1. The source's worked example",
        "",
        f"Each of the {len(rows)} numbers the source prints, next to jlstm's value in float64. `units` is "
        "the difference in units of the source's last printed digit; `replay` recomputes each line from the "
        "source's own (rounded) inputs.",
        "",
        "```text",
        table,
        "```",
        "",
    ]


def _gradient_check(show: Callable[[str], None]) -> list[str]:
    """Step 2: the hand-written gradient against autodiff and finite differences; its report section."""
    log.info("2/4  hand-written gradient vs autodiff vs finite differences")
    checks = gradcheck()
    gc_table = gradcheck_table(checks)
    ok = gradcheck_passed(checks)
    show(gc_table + "\n" + ("gradient check passed" if ok else "GRADIENT CHECK FAILED"))
    return [
        "## 2. Gradient check",
        "",
        "The hand-written backward pass (custom_vjp) against `jax.grad` through the same forward and "
        "against central finite differences along a random direction, float64, "
        f"{'**passed**' if ok else '**FAILED**'}.",
        "",
        "```text",
        gc_table,
        "```",
        "",
    ]


def _digits_run(out: Path, steps: int, progress: bool) -> list[str]:
    """Step 3: a short ``digits`` run under ``out/digits``; its report section."""
    from jlstm.app.runner import Config, train

    log.info("3/4  a short digits run")
    # overwrite: the tour replaces its earlier runs (a run into a used --out is refused otherwise).
    digits = train(
        Config(task="digits", steps=steps, out=str(out / "digits"), progress=progress, overwrite=True)
    )
    log.info(
        "digits: test accuracy %.4f after %d steps in %.1f s",
        digits["test_accuracy"],
        steps,
        digits["wall_seconds"],
    )
    return [
        "## 3. Handwritten digits, read row by row",
        "",
        f"scikit-learn's 8x8 digits, 8 steps of 8 pixels, classified from the final `h` (H = "
        f"{digits['config']['hidden_size']}), SGD lr {digits['config']['lr']}, {steps} steps in "
        f"{digits['wall_seconds']:.1f} s: held-out accuracy **{digits['test_accuracy']:.4f}**.",
        "",
        "![digits loss](digits/loss.png)",
        "",
        "![digits confusion matrix](digits/digits.png)",
        "",
    ]


def _gomez_run(out: Path, steps: int) -> list[str]:
    """Step 4: the source's two-step example trained by SGD under ``out/gomez``; its report section."""
    from jlstm.app.runner import Config, train

    log.info("4/4  the source's two-step example trained by SGD (lr 0.1)")
    runner_log = logging.getLogger("jlstm.runner")
    level = runner_log.level
    runner_log.setLevel(logging.WARNING)  # its evaluation every 10 steps would flood the tour
    try:
        gomez = train(
            Config(task="gomez", steps=steps, out=str(out / "gomez"), progress=False, overwrite=True)
        )
    finally:
        runner_log.setLevel(level)
    log.info(
        "gomez: loss %.5f after %d steps; first step as the source's: %s",
        gomez["final_loss"],
        steps,
        gomez["first_step_matches_source"],
    )
    return [
        "## 4. The source's example, trained",
        "",
        f"SGD with lr 0.1 on the two-step example: the first step reproduces the source's new weights "
        f"(worst difference {gomez['first_step_max_units']:.2f} units of the last printed digit); "
        f"after {steps} steps the loss is {gomez['final_loss']:.5f}.",
        "",
        "![gomez outputs](gomez/gomez.png)",
        "",
    ]


_NEXT = [
    "## Next",
    "",
    "```bash",
    "jlstm train digits            # 3000 steps, test accuracy >= 0.95",
    "jlstm train adding            # the adding problem, T = 100",
    "jlstm train charlm            # a character model of the Python standard library",
    "jlstm gradflow                # how the gradient decays with distance, LSTM vs tanh RNN",
    "```",
    "",
]
