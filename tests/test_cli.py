"""The `jlstm` command: help, errors with exit status 2, and few-step runs of train, gradcheck, demo."""

import json

import jax
import pytest
from typer.testing import CliRunner

from jlstm.app import cli, tasks

runner = CliRunner()


def test_help_lists_every_command_and_task():
    res = runner.invoke(cli.app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("example", "gradcheck", "train", "gradflow", "demo"):
        assert cmd in res.output
    res = runner.invoke(cli.app, ["train", "--help"])
    assert res.exit_code == 0
    for word in ("--steps", "--seed", "--out", "--resume", "--optimizer", "--lr", "--batch-size", "--clip",
                 "test_accuracy", "val_bpc"):  # fmt: skip
        assert word in res.output, word


def test_task_names_match_the_registry():
    assert set(cli.TASK_NAMES) == set(tasks.TASKS)


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "mnist"], "is not one of"),
        (["train"], "Missing argument"),
        (["train", "gomez", "--steps", "0"], "steps must be a positive integer; got 0"),
        (["train", "gomez", "--steps", "many"], "Invalid value for '--steps'"),
        (["train", "gomez", "--optimizer", "adamm"], "optimizer must be an optax optimizer"),
        (["train", "gomez", "--lr", "-0.1"], "lr must be a positive number"),
        (["train", "gomez", "--bogus"], "No such option"),
        (["gradcheck", "--batch", "0"], "batch"),
        (["frobnicate"], "No such command"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(args, message):
    res = runner.invoke(cli.app, args)
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.replace("\u2502", " ").split())  # rich wraps messages inside a box
    assert message in text, res.output


def test_train_gomez_and_resume_with_another_lr(tmp_path):
    out = str(tmp_path / "g")
    with jax.default_matmul_precision("highest"):  # the source's 5 digits need full float32 (GPU: TF32)
        res = runner.invoke(cli.app, ["train", "gomez", "--steps", "5", "--out", out, "--no-progress"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "g" / "summary.json").read_text())
    assert (
        summary["steps"] == 5 and summary["config"]["optimizer"] == "sgd" and summary["config"]["lr"] == 0.1
    )
    assert summary["first_step_matches_source"] is True
    res = runner.invoke(cli.app, ["train", "gomez", "--steps", "9", "--out", out, "--resume", "--lr", "0.3"])
    assert res.exit_code == 2
    assert "checkpoint" in res.output


def test_gradcheck_prints_a_passing_table():
    res = runner.invoke(cli.app, ["gradcheck"])  # the demo's configuration: compiled once for both
    assert res.exit_code == 0, res.output
    for name in ("W", "U", "b", "xs", "h0", "c0"):
        assert any(line.split()[:1] == [name] for line in res.output.splitlines()), name
    assert "passed" in res.output


def test_gradcheck_detects_a_wrong_gradient():
    from jlstm.app import demo

    rows = demo.gradcheck()
    assert demo.gradcheck_passed(rows)
    bad = [dict(r) for r in rows]
    bad[1]["manual_vs_fd"] = 1e-3
    assert not demo.gradcheck_passed(bad)


def test_demo_smoke(tmp_path):
    out = tmp_path / "demo"
    res = runner.invoke(cli.app, ["demo", "--out", str(out), "--steps", "4", "--no-progress"])
    assert res.exit_code == 0, res.output
    report = (out / "report.md").read_text()
    for section in ("worked example", "Gradient check", "digits", "**passed**"):
        assert section in report, section
    for png in ("digits/loss.png", "digits/digits.png", "gomez/gomez.png"):
        assert f"]({png})" in report and (out / png).exists()
    assert "0.81775" in (out / "example.txt").read_text()


def test_ctrl_c_exits_130_with_the_command_to_resume(tmp_path, monkeypatch):
    from jlstm.app import runner as runner_lib

    def interrupted(config):
        raise runner_lib.Interrupted(12, tmp_path)

    monkeypatch.setattr(runner_lib, "train", interrupted)
    monkeypatch.setattr("sys.argv", ["jlstm", "train", "digits", "--steps", "50"])
    res = runner.invoke(cli.app, ["train", "digits", "--steps", "50"])
    assert res.exit_code == 130
    assert "interrupted after step 12" in res.output
    assert f"jlstm train digits --steps 50 --resume --out {tmp_path}" in res.output
