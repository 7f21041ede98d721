"""The study: every variant x task x random-search trial, trained bucket by bucket, then the report.

``run(Config())`` is the full study (about an hour on a 2-core machine); ``run(quick_config())`` the
smoke test of CI: tiny models, every variant trained on one task and V on all three.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from jlstm.app.odyssey import search
from jlstm.app.odyssey.search import BASELINE, VARIANTS, Space
from jlstm.app.odyssey.tasks import TASK_NAMES, Sizes

log = logging.getLogger(__name__)
ROW_HYPERS = ("trial", "seed", "lr", "hidden", "momentum", "noise")
ROW_RESULTS = ("valid", "test", "best_step", "final_loss", "skipped")


@dataclass(frozen=True)
class Config:
    """What the study runs. Each (variant, task) trains the same ``trials`` hyperparameter samples.

    ``pairs``: the (task, variant) pairs to train; None trains every variant on every task.
    """

    out: str = "runs/odyssey"
    trials: int = 32
    steps: int = 300
    eval_every: int = 100
    tasks: tuple[str, ...] = TASK_NAMES
    variants: tuple[str, ...] = tuple(VARIANTS)
    pairs: tuple[tuple[str, str], ...] | None = None
    seed: int = 0
    space: Space = field(default_factory=Space)
    sizes: Sizes = field(default_factory=Sizes)
    fast_compile: bool = False  # XLA's backend optimisation off: compiles ~3x faster, runs ~3x slower
    throughput: bool = True  # measure trials per second, vmapped against one at a time
    quick: bool = False

    def check(self) -> Config:
        """Raise ``ValueError`` naming the field for a configuration that cannot run."""
        bad = [t for t in self.tasks if t not in TASK_NAMES]
        if bad or not self.tasks:
            raise ValueError(f"tasks: each must be one of {TASK_NAMES}; got {list(self.tasks)}.")
        bad = [v for v in self.variants if v not in VARIANTS]
        if bad or BASELINE not in self.variants:
            raise ValueError(
                f"variants: each must be one of {tuple(VARIANTS)}, with {BASELINE} (the "
                f"baseline of every t-test) among them; got {list(self.variants)}."
            )
        if self.trials < 2:
            raise ValueError(f"trials: Welch's t-test needs at least 2 per variant; got {self.trials}.")
        if self.eval_every < 1 or self.steps < self.eval_every or self.steps % self.eval_every:
            raise ValueError(
                f"steps: must be a positive multiple of eval_every={self.eval_every}; got steps={self.steps}."
            )
        return self

    def variants_of(self, task: str) -> list[str]:
        """The variants trained on ``task``: V first, then the others in the paper's order."""
        chosen = [v for v in self.variants if self.pairs is None or (task, v) in self.pairs]
        return [BASELINE] + [v for v in chosen if v != BASELINE]


def quick_config(out: str = "runs/odyssey", **changes) -> Config:
    """The CI smoke test: 4 trials of H = 8, 20 steps, 24 chorale files; V on every task and each other
    variant on one task (round robin), because compiling (one program per pair) is nearly all its time."""
    others = [v for v in VARIANTS if v != BASELINE]
    pairs = [(t, BASELINE) for t in TASK_NAMES] + [(TASK_NAMES[k % 3], v) for k, v in enumerate(others)]
    sizes = Sizes(batch_size=8, seq_len=16, n_eval=8, max_pieces=24, corpus_chars=200_000)
    base = Config(
        out=out,
        trials=4,
        steps=20,
        eval_every=20,
        pairs=tuple(pairs),
        sizes=sizes,
        space=Space(hidden=(8, 8), buckets=1),
        fast_compile=True,
        quick=True,
    )
    return replace(base, **changes)


def from_options(quick: bool, out: str, trials=None, steps=None, tasks=None, variants=None, seed=0) -> Config:
    """The checked ``Config`` of the command's options: ``tasks`` and ``variants`` comma-separated
    strings, None (or empty) for the mode's default."""
    cfg = quick_config(out) if quick else Config(out=out)
    changes = {"trials": trials, "steps": steps, "seed": seed}
    changes.update(tasks=tuple(tasks.split(",")) if tasks else None)
    changes.update(variants=tuple(variants.split(",")) if variants else None)
    if steps is not None and steps % cfg.eval_every:
        changes["eval_every"] = steps  # evaluate at the end only
    return replace(cfg, **{k: v for k, v in changes.items() if v is not None}).check()


class _Compiled:
    """Compiled populations by (task, variant, hidden, trials), so the throughput check reuses one."""

    def __init__(self, cfg: Config):
        self.cfg, self.seconds = cfg, 0.0
        self.cache: dict = {}

    def get(self, task, variant: str, hidden: int, n: int, plan):
        from jlstm.app.odyssey import population as pop

        key = (task.name, variant, hidden, n, plan)
        if key not in self.cache:
            t0 = time.perf_counter()
            self.cache[key] = pop.compile_population(
                task, VARIANTS[variant], hidden, plan, n, self.cfg.fast_compile
            )
            self.seconds += time.perf_counter() - t0
        return self.cache[key]


def _train_task(cfg: Config, task, trials: dict, compiled: _Compiled, done=None) -> tuple[list[dict], float]:
    """Rows of every trial of every variant on ``task``, and the seconds spent training; ``done(rows)`` is
    called after each bucket with the task's rows so far."""
    from jlstm.app.odyssey import population as pop

    plan = pop.Plan(cfg.steps, cfg.eval_every, data_seed=cfg.seed)
    rows, seconds = [], 0.0
    for variant in cfg.variants_of(task.name):
        for hidden in np.unique(trials["hidden"]):
            sel = trials["hidden"] == hidden
            sub = {k: v[sel] for k, v in trials.items()}
            run = compiled.get(task, variant, int(hidden), int(sel.sum()), plan)
            r = pop.train_bucket(task, VARIANTS[variant], int(hidden), sub, plan, compiled=run)
            seconds += r["run_seconds"]
            log.info(
                "%s %s H=%d: %d trials, median test %s %.4g (%.1fs)",
                task.name,
                variant,
                hidden,
                sel.sum(),
                task.metric,
                np.median(r["test"]),
                r["run_seconds"],
            )
            for i in range(int(sel.sum())):
                row = {"task": task.name, "variant": variant}
                row.update({k: sub[k][i].item() for k in ROW_HYPERS})
                row.update({k: r[k][i].item() for k in ROW_RESULTS})
                rows.append(row)
            if done is not None:
                done(rows)
    return rows, seconds


def measure_throughput(cfg: Config, task, trials: dict, compiled: _Compiled) -> dict:
    """Trials per second: the largest bucket's trials of V trained vmapped in one call, against the same
    trials one at a time (each a population of one). Compilation is excluded; the plan is
    ``eval_every`` steps and one evaluation. ``max_relative_difference`` and ``median_relative_difference``
    compare the two's test metrics: vmapped trials train as they would alone, up to rounding (batched
    products sum in another order), which chaotic high-learning-rate trials amplify over many steps."""
    from jlstm.app.odyssey import population as pop
    from jlstm.app.odyssey import tasks

    sizes, counts = np.unique(trials["hidden"], return_counts=True)
    hidden = int(sizes[np.argmax(counts)])  # the bucket with the most trials
    sel = np.flatnonzero(trials["hidden"] == hidden)
    sub = {k: v[sel] for k, v in trials.items()}
    n, plan = len(sel), pop.Plan(cfg.eval_every, cfg.eval_every, cfg.seed)
    together = compiled.get(task, BASELINE, hidden, n, plan)
    alone = compiled.get(task, BASELINE, hidden, 1, plan)
    args = (task.data, tasks.evaluation_set(task)[0])
    inputs = lambda t: (
        pop.init_population(task, VARIANTS[BASELINE], hidden, t["seed"]),
        *pop.hyper_arrays(t),
    )
    one = [inputs({k: v[i : i + 1] for k, v in sub.items()}) for i in range(n)]
    all_ = inputs(sub)
    block = lambda out: [np.asarray(a) for a in out]
    block(alone(*one[0], *args))  # the first call of an executable allocates: not timed
    block(together(*all_, *args))
    t0 = time.perf_counter()
    vmapped = block(together(*all_, *args))
    t_vmap = time.perf_counter() - t0
    t0 = time.perf_counter()
    alone_out = [block(alone(*trial, *args)) for trial in one]
    t_seq = time.perf_counter() - t0
    # The same trials, vmapped or alone, must train alike: the test metric of each, at each evaluation.
    sequential = np.concatenate([o[3] for o in alone_out], axis=1)  # [E, n]
    diff = np.abs(vmapped[3] - sequential) / np.maximum(np.abs(sequential), 1e-6)
    out = {"task": task.name, "variant": BASELINE, "hidden": hidden, "trials": n, "steps": plan.steps}
    for name, t in (("vmapped", t_vmap), ("sequential", t_seq)):
        out[f"{name}_trials_per_second"] = n / t
        out[f"{name}_trial_steps_per_second"] = n * plan.steps / t
    out.update(max_relative_difference=float(np.max(diff)), median_relative_difference=float(np.median(diff)))
    return {**out, "speedup": t_seq / t_vmap}


def run(config: Config) -> dict:
    """Run the study and write ``summary.json``, ``trials.csv``, ``odyssey_<task>.png``, ``odyssey_lr.png``
    and ``report.md`` into ``config.out``. Returns the summary.

    Raises:
      jsb.MissingExtra: scipy (or music21, for the ``jsb`` task) is not installed.
      ValueError: a configuration that cannot run (see ``Config.check``).
    """
    from jlstm.app.odyssey import report, tasks
    from jlstm.app.odyssey.jsb import require

    cfg = config.check()
    require("scipy.stats")  # before an hour of training, not after
    if "jsb" in cfg.tasks:
        require("music21")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    trials = search.sample(cfg.space, cfg.trials, cfg.seed)
    compiled = _Compiled(cfg)
    rows: list = []
    run_seconds, meta, throughput = 0.0, {}, None
    for name in cfg.tasks:
        task = tasks.build(name, cfg.sizes)
        meta[name] = {"metric": task.metric, "stands_for": task.stands_for}
        partial = lambda task_rows, rows=rows: report.write_csv(out / "trials.csv", rows + task_rows)
        task_rows, seconds = _train_task(cfg, task, trials, compiled, done=partial)
        rows, run_seconds = rows + task_rows, run_seconds + seconds
        if cfg.throughput and throughput is None:
            throughput = measure_throughput(cfg, task, trials, compiled)
            log.info(
                "throughput on %s: %.2f trials/s vmapped, %.2f one at a time (%.1fx)",
                name,
                throughput["vmapped_trials_per_second"],
                throughput["sequential_trials_per_second"],
                throughput["speedup"],
            )
    budget = {"wall_seconds": time.perf_counter() - t0, "compile_seconds": compiled.seconds}
    budget.update(run_seconds=run_seconds, trials_trained=len(rows), trial_steps=len(rows) * cfg.steps)
    budget["trial_steps_per_second"] = budget["trial_steps"] / max(run_seconds, 1e-9)
    return report.write(out, asdict(cfg), meta, rows, budget, throughput)
