"""The run directory's rules, with real processes: SIGKILL anywhere, two runs at once, a used --out."""

import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from typer.testing import CliRunner

from jlstm.app import checkpoint, cli, metrics, rundir, runner

# The smallest run whose data order depends on the step (gomez trains on one sequence): a few ms a step.
OPTS = dict(
    steps=400,
    hidden_size=4,
    batch_size=4,
    seq_len=6,
    optimizer="adam",
    lr=0.01,
    checkpoint_every=7,
    log_every=1,
    eval_every=400,
)
# The processes share a compilation cache: each start after the first compiles nothing (about 2 s less).
CACHE = {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def _cli(out, *extra, **opts):
    args = [a for k, v in {**OPTS, **opts}.items() for a in (f"--{k.replace('_', '-')}", str(v))]
    return [sys.executable, "-m", "jlstm.app.cli", "train", "adding", *args, "--out", str(out), *extra]


def _wait(condition, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.002)


def _wait_for_step(proc, path: Path, step: int) -> None:
    _wait(lambda: _last_step(path) >= step or proc.poll() is not None)


def _last_step(path: Path) -> int:
    """The step of the last complete row of a metrics.jsonl being written (0 if none yet)."""
    try:
        lines = path.read_bytes().split(b"\n")[:-1]  # the part after the last newline may be torn
        return json.loads(lines[-1])["step"] if lines else 0
    except (OSError, ValueError, KeyError):
        return 0


def _steps(out: Path) -> list[int]:
    return [json.loads(x)["step"] for x in (out / metrics.METRICS).read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, logged and saved rarely, in this process with x64 off like the command.

    (Under x64, Adam's bias correction is computed in float64, which changes the last bits.)
    """
    with jax.enable_x64(False):
        out = tmp_path_factory.mktemp("reference")
        cfg = runner.Config(
            task="adding", out=str(out), progress=False, **{**OPTS, "log_every": 400, "checkpoint_every": 400}
        )
        return runner.train(cfg)


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    """A run SIGKILLed three times at seeded random points, then resumed to the end; while the last
    resume runs, a second run into its directory is tried three ways (in process, so it costs no start).

    The kills land mid-step, mid-log-line or mid-checkpoint, as they fall. Each resume after a kill must
    take the lock of the killed process: a stale lock would refuse it.
    """
    out = tmp_path_factory.mktemp("killed") / "run"
    cache = tmp_path_factory.mktemp("jax_cache")
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": str(cache), **CACHE}
    rng = np.random.default_rng(0)
    kills = []
    for k in range(3):
        target = 20 + 80 * k + int(rng.integers(0, 40))  # the last logged step when the kill is sent
        resume = ["--resume"] if k else []
        proc = subprocess.Popen(
            _cli(out, "--no-progress", *resume), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait_for_step(proc, out / metrics.METRICS, target)
        time.sleep(rng.uniform(0.0, 0.01))
        kills.append(proc.poll() is None)  # still running when killed
        proc.kill()
        proc.wait()
    summary_before = (out / metrics.SUMMARY).exists()
    # The last resume shows its progress bar: stdout must still hold the JSON summary and nothing else.
    proc = subprocess.Popen(
        _cli(out, "--resume"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lock = out / rundir.LOCK
    _wait(lambda: (lock.exists() and lock.read_text().strip() == str(proc.pid)) or proc.poll() is not None)
    held = proc.poll() is None
    second = []
    cfg = dict(task="adding", out=str(out), progress=False, **OPTS)
    for extra in ({}, {"resume": True}, {"overwrite": True}):  # --overwrite must not remove its files
        try:
            runner.train(runner.Config(**cfg, **extra))
            second.append(None)
        except Exception as e:  # noqa: BLE001 - the test looks at what came
            second.append(e)
    cli_second = CliRunner().invoke(cli.app, ["train", "adding", "--out", str(out), "--no-progress"])
    still_held = proc.poll() is None
    stdout, stderr = proc.communicate(timeout=300)
    return dict(
        out=out,
        kills=kills,
        summary_before=summary_before,
        pid=proc.pid,
        held=held,
        still_held=still_held,
        second=second,
        cli_second=cli_second,
        returncode=proc.returncode,
        stdout=stdout,
        stderr=stderr,
    )


def test_sigkill_at_random_points_then_resume_gives_the_same_digest(killed_and_resumed, reference):
    run = killed_and_resumed
    assert run["kills"] == [True] * 3, "a run ended before it could be killed"
    assert not run["summary_before"]
    assert run["returncode"] == 0, run["stderr"][-3000:]
    summary = json.loads(run["stdout"])  # the JSON summary alone: the log and the bar are on stderr
    assert "resuming adding from step" in run["stderr"]
    assert summary["resumed_from_step"] > 100
    assert summary["params_digest"] == reference["params_digest"]
    assert _steps(run["out"]) == list(range(1, 401))  # every step logged once across the four processes


def test_a_second_run_into_a_held_directory_is_refused_and_the_first_is_unharmed(
    killed_and_resumed, reference
):
    run = killed_and_resumed
    assert run["held"] and run["still_held"], (
        "the second runs must be tried while the first holds the directory"
    )
    busy = f"another run is using {re.escape(str(run['out']))} \\(pid {run['pid']}\\)"
    for e in run["second"]:  # plain, --resume, --overwrite
        assert isinstance(e, rundir.RunDirBusy) and re.search(busy, str(e)), repr(e)
    res = run["cli_second"]
    assert res.exit_code == 1 and f"error: another run is using {run['out']}" in res.output, res.output
    assert run["returncode"] == 0 and json.loads(run["stdout"])["params_digest"] == reference["params_digest"]
    assert _steps(run["out"]) == list(range(1, 401))


def test_a_used_directory_needs_resume_or_overwrite(tmp_path):
    out = tmp_path / "g"
    args = ["train", "gomez", "--steps", "2", "--out", str(out), "--no-progress"]
    res = CliRunner().invoke(cli.app, args)
    assert res.exit_code == 0, res.output
    assert "params_digest" in json.loads(
        res.stdout
    )  # stdout holds the JSON summary only, the log is on stderr
    assert "step 2" in res.stderr
    (out / "notes.txt").write_text("the user's")
    log_before = (out / metrics.METRICS).read_bytes()
    res = CliRunner().invoke(cli.app, args)
    text = " ".join(res.output.replace("\u2502", " ").split())  # rich wraps messages inside a box
    assert res.exit_code == 2 and "is not empty" in text and "--resume" in text and "--overwrite" in text, (
        text
    )
    with pytest.raises(ValueError, match=f"out: {re.escape(str(out))} is not empty .*--resume.*--overwrite"):
        runner.train(runner.Config(task="gomez", steps=2, out=str(out), progress=False))
    assert (out / metrics.METRICS).read_bytes() == log_before  # refused before anything was written
    res = CliRunner().invoke(cli.app, [*args, "--overwrite"])
    assert res.exit_code == 0, res.output
    # The old run's files went first: its checkpoint did not become the new run's fallback.
    assert not (out / checkpoint.PREVIOUS).exists()
    assert (out / "notes.txt").read_text() == "the user's"  # not a run's file: left alone
    res = CliRunner().invoke(cli.app, [*args, "--overwrite", "--resume"])
    assert res.exit_code == 2 and "exclude each other" in res.output


def test_the_lock_is_released_when_the_run_ends(tmp_path):
    with rundir.claim(tmp_path, resume=False, overwrite=False):
        with pytest.raises(rundir.RunDirBusy, match=f"pid {os.getpid()}"):
            with rundir.claim(tmp_path, resume=True, overwrite=False):
                pass
    with rundir.claim(tmp_path, resume=False, overwrite=False):  # the lock file alone is no run
        pass


def test_a_torn_metrics_line_is_dropped_with_a_warning(tmp_path, caplog):
    path = tmp_path / metrics.METRICS
    rows = [{"step": s, "loss": 1.0 / s} for s in (1, 2, 3)]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    path.write_bytes(text.encode() + b'{"step": 4, "lo')  # a crash during the write of row 4
    with caplog.at_level(logging.WARNING, logger="jlstm.runner"):
        assert metrics.read_history(path, upto=3) == rows
    assert f"{path}, line 4, is cut short or corrupt" in caplog.text
    path.write_bytes(text.encode() + b'{"step": "x", "loss": 1}\n\xff\xfe\n' + text.encode())
    assert metrics.read_history(path) == rows + rows  # a row of the wrong kind and non-UTF-8 bytes


def test_the_command_to_continue_an_interrupted_run_drops_overwrite(tmp_path):
    e = runner.Interrupted(12, tmp_path)
    assert (
        e.resume_command(["train", "gomez", "--overwrite"]) == f"jlstm train gomez --resume --out {tmp_path}"
    )
