"""The training loop: outputs, one trace, checkpoints, exact resume after Ctrl-C and SIGKILL."""

import hashlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jlstm.app import runner, tasks

SMALL = {
    "digits": dict(hidden_size=4, batch_size=8),
    "adding": dict(hidden_size=4, batch_size=8, seq_len=10),
    "charlm": dict(hidden_size=4, batch_size=2, seq_len=10),
    "gomez": dict(),
}


def _cfg(task, tmp_path, **kw):
    base = dict(task=task, steps=6, out=str(tmp_path), progress=False, eval_every=3, log_every=2,
                checkpoint_every=4)  # fmt: skip
    return runner.Config(**{**base, **SMALL[task], **kw})


@pytest.mark.parametrize("task", ["digits", "adding", "charlm", "gomez"])
def test_smoke_every_task_writes_its_outputs(task, tmp_path):
    summary = runner.train(_cfg(task, tmp_path))
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    metric = tasks.TASKS[task].metric
    for key in ("task", "steps", "seed", "final_loss", "wall_seconds", "params_digest", metric):
        assert key in saved, key
    assert saved["task"] == task and saved["steps"] == 6 and saved["metric"] == metric
    assert saved["traces"] == 1  # one jitted step, traced once
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [2, 3, 4, 6]  # log_every 2, eval_every 3, and the last step
    assert metric in lines[1] and metric not in lines[0]
    assert all(np.isfinite(r["loss"]) for r in lines)
    for png in ("loss.png", f"{task}.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / runner.CHECKPOINT).exists()
    assert not [p for p in (tmp_path / "checkpoint").iterdir() if ".tmp" in p.name]


def test_gomez_loss_falls_and_first_step_matches(tmp_path):
    s = runner.train(runner.Config(task="gomez", steps=20, out=str(tmp_path), progress=False))
    first = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert s["first_step_matches_source"]
    assert s["final_loss"] < first["loss"]


def test_resume_after_ctrl_c_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    # Adam, so that the optimizer state (moments, count) must come back exactly too.
    full = runner.train(_cfg("digits", tmp_path / "a", steps=10, optimizer="adam", lr=0.01))
    make = tasks.make

    def interrupting(*args, **kw):  # a Ctrl-C while the batch of step 7 is being prepared
        prob = make(*args, **kw)

        def batch(step):
            if step == 7:
                raise KeyboardInterrupt
            return prob.batch(step)

        return prob._replace(batch=batch)

    monkeypatch.setattr(tasks, "make", interrupting)
    with pytest.raises(runner.Interrupted) as info:
        runner.train(_cfg("digits", tmp_path / "b", steps=10, optimizer="adam", lr=0.01))
    assert info.value.step == 7
    monkeypatch.setattr(tasks, "make", make)
    resumed = runner.train(_cfg("digits", tmp_path / "b", steps=10, optimizer="adam", lr=0.01, resume=True))
    assert resumed["resumed_from_step"] == 7
    assert resumed["params_digest"] == full["params_digest"]
    # The log has each step once, in order, across the interruption.
    steps = [json.loads(x)["step"] for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 3, 4, 6, 8, 9, 10]


def test_resume_drops_log_lines_written_after_the_checkpoint(tmp_path):
    runner.train(_cfg("gomez", tmp_path, steps=8, checkpoint_every=4, log_every=1))
    # Pretend the process died at step 8 before its final checkpoint: roll the checkpoint back to 4.
    ckpt = tmp_path / runner.CHECKPOINT
    with np.load(ckpt) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    meta["step"] = 4
    arrays["meta"] = np.asarray(json.dumps(meta))
    np.savez(ckpt, **arrays)
    runner.train(_cfg("gomez", tmp_path, steps=8, log_every=1, resume=True))
    steps = [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))


def test_resume_refuses_another_configuration(tmp_path):
    runner.train(_cfg("gomez", tmp_path, steps=4))
    with pytest.raises(ValueError, match="lr is 0.2 but the checkpoint"):
        runner.train(_cfg("gomez", tmp_path, steps=8, lr=0.2, resume=True))


def test_checkpoint_round_trip_is_exact_and_atomic(tmp_path):
    params = {"lstm": jax.random.normal(jax.random.key(0), (3, 4), jnp.float32), "head": {"b": jnp.ones(2)}}
    opt = optax.adam(1e-3)
    state = opt.init(params)
    cfg = runner.Config(task="gomez").resolved()
    path = tmp_path / "ck" / "state.npz"
    runner.save_checkpoint(path, params, state, 17, 1.5, cfg)
    # A torn write of a later checkpoint (its temp file) leaves the good one readable.
    (path.parent / "state.npz.tmp999").write_bytes(b"garbage")
    (p2, s2), meta = runner.load_checkpoint(path, (params, state))
    assert meta["step"] == 17 and meta["config"]["task"] == "gomez"
    assert runner.params_digest(p2) == runner.params_digest(params)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(s2), jax.tree.leaves(state)))
    with pytest.raises(ValueError, match="expected"):
        runner.load_checkpoint(path, ({"lstm": jnp.zeros((3, 5), jnp.float32), "head": {"b": jnp.ones(2)}},
                                      state))  # fmt: skip


def test_params_digest_is_sha256_of_shapes_dtypes_and_bytes():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.ones(2, np.float32)
    want = hashlib.sha256()
    for x in (a, b):  # dict keys sorted: "a" before "b"
        want.update(f"{x.shape}{x.dtype}".encode())
        want.update(x.tobytes())
    assert runner.params_digest({"b": b, "a": a}) == want.hexdigest()
    a2 = a.copy()
    a2[0, 0] = np.nextafter(a2[0, 0], np.float32(1))
    assert runner.params_digest({"b": b, "a": a2}) != want.hexdigest()


def test_optimizer_by_name_and_clipping():
    cfg = runner.Config(task="digits", optimizer="sgd", lr=1.0, clip=0.5).resolved()
    opt = runner.make_optimizer(cfg)
    g = {"w": jnp.full((4,), 3.0)}
    updates, _ = opt.update(g, opt.init(g), g)
    np.testing.assert_allclose(optax.tree.norm(updates), 0.5, rtol=1e-6)  # -lr * clipped gradient
    assert runner.Config(task="adding", clip=0).resolved().clip is None  # 0 turns clipping off
    adam = runner.make_optimizer(runner.Config(task="digits", optimizer="adam", lr=0.1, clip=0).resolved())
    step, _ = adam.update(g, adam.init(g), g)
    np.testing.assert_allclose(step["w"], -0.1, rtol=1e-5)  # Adam's first step is -lr * sign(g)


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(task="mnist"), "task must be one of"),
        (dict(task="digits", steps=0), "steps must be a positive integer; got 0"),
        (dict(task="digits", batch_size=2.5), "batch_size must be a positive integer"),
        (dict(task="digits", lr=-1.0), "lr must be a positive number"),
        (dict(task="digits", clip=-1.0), "clip must be a non-negative number"),
        (dict(task="digits", optimizer="adamm"), "optimizer must be an optax optimizer"),
        (
            dict(task="gomez", hidden_size=5),
            r"gomez does not take hidden_size \(--hidden-size\): .* H = 1, so it is "
            "fixed at 1; got 5. Leave --hidden-size out.",
        ),
        (dict(task="gomez", batch_size=4), r"gomez does not take batch_size \(--batch-size\)"),
        (dict(task="digits", seq_len=3), r"digits does not take seq_len \(--seq-len\): .* fixed at 8; got 3"),
        (dict(task="gomez", resume=True, overwrite=True), "resume and overwrite exclude each other"),
    ],
)
def test_config_rejects_bad_values(kw, match):
    with pytest.raises(ValueError, match=match):
        runner.Config(**kw)


def test_an_option_the_task_does_not_use_is_refused_not_recorded(tmp_path):
    from typer.testing import CliRunner

    from jlstm.app import cli

    for task, option, value in (("gomez", "--hidden-size", "5"), ("digits", "--seq-len", "3")):
        res = CliRunner().invoke(
            cli.app, ["train", task, option, value, "--out", str(tmp_path), "--no-progress"]
        )
        text = " ".join(res.output.replace("\u2502", " ").split())  # rich wraps messages inside a box
        assert res.exit_code == 2, text
        assert f"{task} does not take" in text and f"Leave {option} out" in text, text
    assert not list(tmp_path.iterdir())  # refused before anything was written
    # The value a task fixes itself is what it uses, and what the summary records.
    assert runner.Config(task="gomez", hidden_size=1).resolved().hidden_size == 1
