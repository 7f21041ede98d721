"""Training runs lose nothing: divergence, corrupted checkpoints, unwritable output, a full disk."""

import errno
import json

import jax
import numpy as np
import pytest
from typer.testing import CliRunner

from jlstm.app import cli, runner


def _cfg(tmp_path, **kw):
    base = dict(task="adding", steps=8, out=str(tmp_path), progress=False, hidden_size=4, batch_size=4,
                seq_len=6, eval_every=4, log_every=1, checkpoint_every=2)  # fmt: skip
    return runner.Config(**{**base, **kw})


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


def test_truncated_checkpoint_falls_back_to_the_previous_one(tmp_path):
    ref = runner.train(_cfg(tmp_path / "ref"))
    runner.train(_cfg(tmp_path / "run", steps=6))  # checkpoints at 2, 4 and the final one at 6
    ckpt = tmp_path / "run" / runner.CHECKPOINT
    prev = tmp_path / "run" / runner.PREVIOUS
    assert prev.exists()
    ckpt.write_bytes(ckpt.read_bytes()[:100])  # truncated
    resumed = runner.train(_cfg(tmp_path / "run", resume=True))
    assert resumed["resumed_from_step"] == 4  # the previous checkpoint
    assert resumed["params_digest"] == ref["params_digest"]


def test_corrupted_checkpoints_give_a_clear_error(tmp_path):
    runner.train(_cfg(tmp_path, steps=4))
    for p in (runner.CHECKPOINT, runner.PREVIOUS):
        (tmp_path / p).write_bytes(b"not a checkpoint at all")
    with pytest.raises(runner.RunError, match=r"no readable checkpoint: .*state.npz: .*state.prev.npz"):
        runner.train(_cfg(tmp_path, resume=True))


def test_unwritable_out_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("in the way")
    with pytest.raises(runner.RunError, match="cannot write the run's output in .*a_file"):
        runner.train(_cfg(blocker / "run"))
    res = CliRunner().invoke(cli.app, ["train", "gomez", "--steps", "2", "--out", str(blocker / "run"),
                                       "--no-progress"])  # fmt: skip
    assert res.exit_code == 1 and "error: cannot write the run's output" in res.output
    assert "Traceback" not in res.output


def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    runner.train(_cfg(tmp_path, steps=4))
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
