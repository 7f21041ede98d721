"""Training runs lose nothing: divergence, corrupted checkpoints, unwritable output, a full disk."""

import errno
import json
import logging
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from typer.testing import CliRunner

from jlstm.app import checkpoint, cli, metrics, runner


def _cfg(tmp_path, **kw):
    base = dict(task="adding", steps=8, out=str(tmp_path), progress=False, hidden_size=4, batch_size=4,
                seq_len=6, eval_every=4, log_every=1, checkpoint_every=2)  # fmt: skip
    return runner.Config(**{**base, **kw})


# The options of _cfg on the command line.
ARGS = [
    "--hidden-size",
    "4",
    "--batch-size",
    "4",
    "--seq-len",
    "6",
    "--eval-every",
    "4",
    "--log-every",
    "1",
    "--no-progress",
]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A run to step 6 (checkpoints at 2, 4 and 6: state.npz at 6, state.prev.npz at 4), copied by tests."""
    out = tmp_path_factory.mktemp("base")
    runner.train(_cfg(out, steps=6))
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run to step 8."""
    return runner.train(_cfg(tmp_path_factory.mktemp("reference"), steps=8))


def _copy(base, tmp_path):
    return Path(shutil.copytree(base, tmp_path / "run"))


def _digest_of_checkpoint(path):
    with np.load(path) as z:
        return {k: z[k].tobytes() for k in z.files}


def _poison_from_step(monkeypatch, k):
    """Make the data NaN from step k on: the loss becomes NaN there, as in a real divergence."""
    real_make = runner.tasks_lib.make

    def make(*a, **kw):
        problem = real_make(*a, **kw)
        real_batch = problem.batch

        def batch(s):
            b = real_batch(s)
            if s < k:
                return b
            return jax.tree.map(lambda x: x * np.nan if np.issubdtype(x.dtype, np.floating) else x, b)

        return problem._replace(batch=batch)

    monkeypatch.setattr(runner.tasks_lib, "make", make)


def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    _poison_from_step(monkeypatch, 5)
    with pytest.raises(runner.Diverged, match=r"diverged at step 6: the loss is nan; .*is kept"):
        runner.train(_cfg(tmp_path, steps=10))
    with np.load(tmp_path / runner.CHECKPOINT) as z:
        assert json.loads(str(z["meta"]))["step"] == 4  # the last good one, not overwritten
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if np.isfinite(r["loss"])] == [1, 2, 3, 4, 5]


def test_diverged_cli_message_and_exit_code(tmp_path, monkeypatch):
    _poison_from_step(monkeypatch, 2)
    res = CliRunner().invoke(cli.app, ["train", "adding", "--steps", "20", "--out", str(tmp_path),
                                       "--no-progress", "--hidden-size", "4", "--seq-len", "6",
                                       "--log-every", "1"])  # fmt: skip
    assert res.exit_code == 1
    assert "error: adding: training diverged at step 3: the loss is nan" in res.output
    assert "Traceback" not in res.output


def _damage(path, how, rng):
    data = bytearray(path.read_bytes())
    if how == "truncate":  # somewhere in the second half: for metrics.jsonl, mid-line, as a crash leaves it
        path.write_bytes(data[: int(rng.integers(len(data) // 2, len(data) - 1))])
        return
    for i in rng.integers(0, len(data), 3):  # three bit flips
        data[i] ^= 1 << int(rng.integers(0, 8))
    path.write_bytes(bytes(data))


def _reads(path):
    try:
        checkpoint.read_meta(path)  # every CRC of the file checked
    except Exception:  # noqa: BLE001
        return False
    return True


# The log and the summary are damaged together: resume never reads the summary, so one resume does for both.
FILES = [(str(runner.CHECKPOINT),), (str(runner.PREVIOUS),), (metrics.METRICS, metrics.SUMMARY)]


@pytest.mark.parametrize("how", ["truncate", "flip"])
@pytest.mark.parametrize("names", FILES, ids="+".join)
def test_a_damaged_file_of_a_run_then_resume_recovers_and_keeps_a_good_checkpoint(
    base, reference, tmp_path, names, how
):
    """Truncation or bit flips of a file of a run: one good checkpoint is always left, so resume recovers.

    It resumes with rare checkpoints, so that its only save is the final one: that save must not rotate a
    damaged newest checkpoint over the good previous one.
    """
    run = _copy(base, tmp_path)
    rng = np.random.default_rng([FILES.index(names), how == "flip"])
    for name in names:
        _damage(run / name, how, rng)
    newest_reads = _reads(run / runner.CHECKPOINT)
    res = CliRunner().invoke(
        cli.app,
        [
            "train",
            "adding",
            "--steps",
            "8",
            "--out",
            str(run),
            *ARGS,
            "--checkpoint-every",
            "100",
            "--resume",
        ],
    )
    assert res.exit_code == 0, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert json.loads(res.stdout)["params_digest"] == reference["params_digest"]
    assert _reads(run / runner.CHECKPOINT) and _reads(run / runner.PREVIOUS)
    assert (run / checkpoint.CORRUPT).exists() == (not newest_reads)  # a bad newest one is set aside


def test_resume_with_another_hidden_size_says_the_configuration_differs(base, tmp_path):
    # Both checkpoints are readable: the configuration in their meta is compared before any array is loaded.
    with pytest.raises(
        ValueError, match="resume: hidden_size is 5 but the checkpoint in .* was written with 4"
    ):
        runner.train(_cfg(_copy(base, tmp_path), hidden_size=5, resume=True))


def _tiny_state(x):
    return {"w": np.full((3,), x, np.float32)}, {"count": np.asarray(0, np.int32)}


def test_a_save_never_rotates_a_bad_checkpoint_over_a_good_one(tmp_path, caplog):
    cfg = runner.Config(task="gomez").resolved()
    path = tmp_path / runner.CHECKPOINT
    for step in (1, 2):
        runner.save_checkpoint(path, *_tiny_state(step), step, 0.0, cfg)
    bad = path.read_bytes()[:50]  # the newest one (step 2) truncated; the previous one is good
    path.write_bytes(bad)
    good = (tmp_path / runner.PREVIOUS).read_bytes()
    with caplog.at_level(logging.WARNING, logger="jlstm.runner"):
        runner.save_checkpoint(path, *_tiny_state(3), 3, 0.0, cfg)
    assert "is corrupt; set aside" in caplog.text
    assert (tmp_path / runner.PREVIOUS).read_bytes() == good  # kept, not replaced by the corrupt one
    assert checkpoint.read_meta(path)["step"] == 3
    assert (tmp_path / checkpoint.CORRUPT).read_bytes() == bad
    runner.save_checkpoint(path, *_tiny_state(4), 4, 0.0, cfg)  # a good newest one is rotated as before
    assert checkpoint.read_meta(tmp_path / runner.PREVIOUS)["step"] == 3


def test_a_bit_flip_that_numpy_reads_past_is_caught_by_the_crc(tmp_path):
    cfg = runner.Config(task="gomez").resolved()
    path = tmp_path / runner.CHECKPOINT
    big = {"w": np.ones(3000, np.float32)}, {}
    for step in (1, 2):
        runner.save_checkpoint(path, *big, step, 0.0, cfg)
    data = path.read_bytes()
    assert data.count(b"'shape': (3000,)") == 1
    # One bit (3 -> 2) in the array's header: np.load reads 2000 of the 3000 numbers and stops before the
    # end of the member, where zipfile checks the CRC.
    path.write_bytes(data.replace(b"'shape': (3000,)", b"'shape': (2000,)"))
    with np.load(path) as z:
        assert z["leaf_0000"].shape == (2000,)  # numpy alone takes it for a good file
    with pytest.raises(ValueError, match="fails its CRC check"):
        checkpoint.read_meta(path)
    runner.save_checkpoint(path, *big, 3, 0.0, cfg)
    assert checkpoint.read_meta(tmp_path / runner.PREVIOUS)["step"] == 1  # the damaged one was set aside


def test_a_checkpoint_that_does_not_read_back_never_becomes_the_newest(tmp_path, monkeypatch):
    cfg = runner.Config(task="gomez").resolved()
    path = tmp_path / runner.CHECKPOINT
    runner.save_checkpoint(path, *_tiny_state(1), 1, 0.0, cfg)
    good = path.read_bytes()
    real_savez = np.savez

    def bad_write(f, **arrays):  # the bytes on disk are not those written (a bad disk, a bad driver)
        real_savez(f, **arrays)
        f.seek(-30, 2)
        f.write(b"\xff" * 8)

    monkeypatch.setattr(np, "savez", bad_write)
    with pytest.raises(runner.RunError, match=r"checkpoint .*state.npz.tmp\d+ does not read back as written"):
        runner.save_checkpoint(path, *_tiny_state(2), 2, 0.0, cfg)
    assert path.read_bytes() == good and not (tmp_path / runner.PREVIOUS).exists()
    assert [p.name for p in path.parent.iterdir()] == ["state.npz"]  # no temporary file left


def test_corrupted_checkpoints_give_a_clear_error(base, tmp_path):
    run = _copy(base, tmp_path)
    for p in (runner.CHECKPOINT, runner.PREVIOUS):
        (run / p).write_bytes(b"not a checkpoint at all")
    with pytest.raises(runner.RunError, match=r"no readable checkpoint: .*state.npz: .*state.prev.npz"):
        runner.train(_cfg(run, resume=True))


def test_unwritable_out_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("in the way")
    with pytest.raises(runner.RunError, match="cannot write the run's output in .*a_file"):
        runner.train(_cfg(blocker / "run"))
    res = CliRunner().invoke(cli.app, ["train", "gomez", "--steps", "2", "--out", str(blocker / "run"),
                                       "--no-progress"])  # fmt: skip
    assert res.exit_code == 1 and "error: cannot write the run's output" in res.output
    assert "Traceback" not in res.output


def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(base, tmp_path, monkeypatch):
    tmp_path = _copy(base, tmp_path)
    good = _digest_of_checkpoint(tmp_path / runner.CHECKPOINT)
    real_savez = np.savez

    def full_disk(f, **arrays):
        real_savez(f, **{k: arrays[k] for k in list(arrays)[:1]})  # a partial write, then ENOSPC
        raise OSError(errno.ENOSPC, "No space left on device", str(f.name))

    monkeypatch.setattr(np, "savez", full_disk)
    with pytest.raises(runner.RunError, match="No space left on device"):
        runner.train(_cfg(tmp_path, steps=8, resume=True))
    assert _digest_of_checkpoint(tmp_path / runner.CHECKPOINT) == good
    assert not [p for p in (tmp_path / "checkpoint").iterdir() if ".tmp" in p.name]


def test_devices_option(tmp_path):
    s = runner.train(_cfg(tmp_path, steps=2, devices=1))
    assert s["devices"] == 1
    res = CliRunner().invoke(cli.app, ["train", "gomez", "--devices", "2", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "devices" in res.output


def test_parity_and_bench_commands(tmp_path):
    res = CliRunner().invoke(cli.app, ["parity", "nosuchlib"])
    assert res.exit_code == 2 and "nosuchlib" in res.output
    res = CliRunner().invoke(cli.app, ["bench", "--impls", "manual,nope"])
    assert res.exit_code == 2 and "nope" in res.output
    res = CliRunner().invoke(cli.app, ["bench", "--sizes", "1,2,3"])
    assert res.exit_code == 2 and "T,B,D,H" in res.output
