"""The odyssey study: the quick run's outputs (schema, every variant trained, finite metrics), its parts
(search, statistics, chorales, tasks) and the command's errors."""

import copy
import csv
import json
import math
import sys

import jax
import numpy as np
import pytest
from typer.testing import CliRunner

from jlstm.app import cli
from jlstm.app.odyssey import jsb, report, search, stats, study, tasks

VARIANT_FIELDS = (
    "n_trials",
    "median",
    "mean",
    "best",
    "p_value",
    "significantly_worse",
    "significantly_better",
)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One quick run for the whole module: (summary as returned, its output directory)."""
    out = tmp_path_factory.mktemp("odyssey")
    with jax.default_matmul_precision("highest"):  # float32 training, on a GPU too (TF32 by default)
        return study.run(study.quick_config(out=str(out))), out


def check_entry(entry: dict, baseline: bool) -> None:
    assert set(VARIANT_FIELDS) <= set(entry), entry.keys()
    assert entry["n_trials"] >= 2
    for k in ("median", "mean", "best"):
        assert isinstance(entry[k], float) and math.isfinite(entry[k]), (k, entry[k])
    assert entry["best"] <= entry["median"]
    if baseline:
        assert (
            entry["p_value"] is None
            and not entry["significantly_worse"]
            and not entry["significantly_better"]
        )
    else:
        assert entry["p_value"] is None or 0.0 <= entry["p_value"] <= 1.0
        assert not (entry["significantly_worse"] and entry["significantly_better"])
        if entry["significantly_worse"] or entry["significantly_better"]:
            assert entry["p_value"] < stats.ALPHA


def check_summary(summary: dict) -> None:
    """The schema of summary.json; every variant of the study trained on some task, V on every task."""
    for key in ("study", "cells", "not_built", "config", "budget", "throughput", "tasks", "paper_comparison"):
        assert key in summary, key
    assert summary["not_built"] == ["FGR"]
    assert set(summary["tasks"]) == set(tasks.TASK_NAMES)
    trained = set()
    for info in summary["tasks"].values():
        assert info["metric"] in ("nll", "frame_error", "bpc") and info["lower_is_better"] is True
        assert info["stands_for"] in report.PAPER_TASKS
        assert next(iter(info["variants"])) == search.BASELINE
        for v, entry in info["variants"].items():
            assert v in search.VARIANTS
            check_entry(entry, v == search.BASELINE)
            check_entry(entry["top10"], v == search.BASELINE)
            trained.add(v)
        assert set(info["importance"]) == {*search.HYPERS, "lr x hidden", stats.EFFECTIVE_LR}
        assert all(0.0 <= x <= 1.0 for x in info["importance"].values())
        assert -1.0 <= info["noise_effect"] <= 1.0
    assert trained == set(search.VARIANTS)
    b = summary["budget"]
    assert b["trials_trained"] == sum(
        e["n_trials"] for i in summary["tasks"].values() for e in i["variants"].values()
    )
    assert all(math.isfinite(b[k]) and b[k] > 0 for k in ("wall_seconds", "compile_seconds", "run_seconds"))


def test_summary_schema_and_every_variant_trained(quick):
    summary, out = quick
    check_summary(summary)
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))


def test_the_schema_check_can_fail(quick):
    summary = quick[0]
    broken = copy.deepcopy(summary)
    broken["tasks"]["jsb"]["variants"]["V"]["median"] = float("nan")
    with pytest.raises(AssertionError):
        check_summary(broken)
    missing = copy.deepcopy(summary)
    for info in missing["tasks"].values():
        info["variants"].pop("NFG", None)
    with pytest.raises(AssertionError):
        check_summary(missing)


def test_trials_csv_has_a_finite_row_per_trained_network(quick):
    summary, out = quick
    with open(out / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == report.COLUMNS
    assert len(rows) == summary["budget"]["trials_trained"]
    assert {r["variant"] for r in rows} == set(search.VARIANTS)
    for r in rows:
        for k in ("valid", "test", "final_loss", "lr", "momentum", "noise"):
            assert math.isfinite(float(r[k])), (r["task"], r["variant"], k, r[k])
        assert float(r["lr"]) > 0 and 0 <= float(r["momentum"]) < 1
    # The same hyperparameter samples for every variant of a task.
    by_trial = {}
    for r in rows:
        by_trial.setdefault((r["task"], r["trial"]), set()).add(
            (r["lr"], r["hidden"], r["momentum"], r["noise"])
        )
    assert all(len(s) == 1 for s in by_trial.values())


def test_figures_and_report_are_written(quick):
    summary, out = quick
    for name in [f"odyssey_{t}.png" for t in tasks.TASK_NAMES] + ["odyssey_lr.png"]:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
    text = (out / "report.md").read_text()
    for word in ("Welch", "FGR", "**Paper:**", "hand-written backward", *search.VARIANTS):
        assert word in text, word
    assert len(summary["paper_comparison"]) == sum(len(i["variants"]) - 1 for i in summary["tasks"].values())


def test_vmapped_trials_train_as_they_would_alone(quick):
    tp = quick[0]["throughput"]
    assert (
        tp["trials"] >= 2 and tp["vmapped_trials_per_second"] > 0 and tp["sequential_trials_per_second"] > 0
    )
    # float32 rounding (batched sums in another order) grown by training, which a chaotic trial does
    # without a bound; measured median 0, max 1.2e-7. A trial trained with another's settings is O(1).
    assert tp["median_relative_difference"] < 1e-4 and tp["max_relative_difference"] < 1e-2


def test_search_samples_are_reproducible_and_bucketed():
    space = search.Space(lr=(1e-3, 1.0), hidden=(16, 128), buckets=4)
    a, b = search.sample(space, 200, seed=3), search.sample(space, 200, seed=3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["lr"], search.sample(space, 200, seed=4)["lr"])
    assert set(np.unique(a["hidden"])) == {16, 32, 64, 128}
    assert a["lr"].min() >= 1e-3 and a["lr"].max() <= 1.0
    assert np.all((a["momentum"] >= 0) & (a["momentum"] <= 0.99 + 1e-6))
    with pytest.raises(ValueError, match="n"):
        search.sample(space, 0, seed=0)


def test_welch_matches_the_formula_and_verdicts_follow_the_means():
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([3.0, 5.0, 7.0, 9.0, 11.0])
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    from scipy.stats import t as student

    assert stats.welch_p(a, b) == pytest.approx(2 * student.sf(abs(t), dof), rel=1e-10)
    assert stats.welch_p(a, a[:1]) is None and stats.welch_p(np.ones(3), np.ones(4)) is None
    worse = stats.compare(b + 100, b, a, a)
    assert worse["significantly_worse"] and stats.verdict(worse) == "worse"
    assert stats.verdict(stats.compare(a, a, a, a)) == "n.s."


def test_importance_finds_the_hyperparameter_that_matters():
    rng = np.random.default_rng(0)
    n = 400
    hypers = {"lr": np.exp(rng.uniform(-7, 0, n)), "hidden": rng.choice([16, 32, 64], n),
              "momentum": 1 - np.exp(rng.uniform(-4.6, 0, n)), "noise": rng.uniform(0, 1, n)}  # fmt: skip
    test = (np.log(hypers["lr"]) + 3) ** 2 + 0.1 * rng.normal(size=n)  # a valley in log lr, as in the paper
    which = np.array(["V", "NP"] * (n // 2))
    imp = stats.importance(test, which, hypers)
    assert imp["lr"] > 0.5
    assert max(imp["hidden"], imp["momentum"], imp["noise"], imp["lr x hidden"]) < 0.05
    assert stats.noise_effect(test, which, hypers["noise"]) == pytest.approx(0.0, abs=0.15)
    assert stats.noise_effect(hypers["noise"] + 0.01 * test, which, hypers["noise"]) > 0.9


def test_config_errors_name_the_field():
    for changes, field in [({"tasks": ("timit",)}, "tasks"), ({"variants": ("NP", "NFG")}, "variants"),
                           ({"variants": ("V", "FGR")}, "variants"), ({"trials": 1}, "trials"),
                           ({"steps": 30, "eval_every": 20}, "steps")]:  # fmt: skip
        with pytest.raises(ValueError, match=field):
            study.Config(**changes).check()


def test_a_chorale_becomes_a_piano_roll():
    path = next(p for p in jsb.chorale_paths() if p.name == "bwv10.7.mxl")
    roll = jsb.piano_roll(path)
    assert roll.shape[1] == jsb.KEYS and roll.dtype == np.uint8 and set(np.unique(roll)) <= {0, 1}
    voices = roll.sum(axis=1)
    assert np.median(voices) == 4 and voices.max() <= 4  # four parts, sampled on the beat
    on = np.flatnonzero(roll.any(axis=0)) + jsb.LOW
    assert 36 <= on.min() and on.max() <= 84  # a choir's range, in MIDI numbers
    parts = jsb.split([roll] * 10)
    assert [len(parts[k]) for k in ("train", "valid", "test")] == [6, 2, 2]


def test_tasks_sample_batches_on_the_device():
    sizes = tasks.Sizes(batch_size=3, seq_len=16, n_eval=4, corpus_chars=200_000)
    for name in ("digitstream", "charlm"):
        task = tasks.build(name, sizes)
        inputs, targets = jax.jit(task.sample)(task.data, jax.random.key(0))
        xs = task.features(inputs)
        assert xs.shape == (3, 16, task.input_size) and xs.dtype == np.float32
        assert targets.shape == (3, 16) and int(targets.max()) < task.output_size
        again = jax.jit(task.sample)(task.data, jax.random.key(0))[1]
        assert np.array_equal(np.asarray(targets), np.asarray(again))
        both, n_valid = tasks.evaluation_set(task)
        assert n_valid == 4 and both.mask.shape == (8, 16)
    with pytest.raises(ValueError, match="name"):
        tasks.build("timit", sizes)


def test_command_rejects_bad_options_with_status_2():
    res = CliRunner().invoke(cli.app, ["odyssey", "--tasks", "timit"])
    assert res.exit_code == 2 and "tasks" in res.output


@pytest.mark.parametrize("module", ["music21", "scipy.stats"])
def test_a_missing_extra_names_it_and_exits_2(module, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails, as if not installed
    res = CliRunner().invoke(cli.app, ["odyssey", "--quick", "--out", str(tmp_path)])
    assert res.exit_code == 2, res.output
    assert "pip install 'jlstm[odyssey]'" in res.output and module in res.output
    assert not (tmp_path / "summary.json").exists()
