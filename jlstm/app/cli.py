"""The ``jlstm`` command line (typer). Heavy imports happen inside each command.

Bad arguments exit with status 2 and a message (typer's usage errors, and ``typer.BadParameter`` for
values the library rejects); Ctrl-C during ``train`` saves a checkpoint and exits with 130.
"""

from __future__ import annotations

import logging
from enum import Enum
from typing import Annotated

import typer

from jlstm.app.cli_checks import example, gradcheck, parity

app = typer.Typer(
    name="jlstm",
    help="A functional LSTM for JAX with a hand-written backward pass through time.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# The names of jlstm.tasks.TASKS (kept here so that `jlstm --help` does not import JAX).
TASK_NAMES = ("digits", "adding", "charlm", "gomez")
Task = Enum("Task", [(n, n) for n in TASK_NAMES], type=str)  # type: ignore[misc]


def _logging(quiet: bool = False, console=None) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(show_path=False, markup=False, console=console)],  # None: rich's, on stdout
        force=True,
    )
    logging.getLogger("jax").setLevel(logging.WARNING)  # not "Unable to initialize backend 'tpu'"


@app.callback()
def _root() -> None:
    """A functional LSTM for JAX with a hand-written backward pass through time."""


# The options of `jlstm train`. Each is forwarded by name to jlstm.runner.Config: a new option needs a
# parameter here and a Config field of the same name, nothing else. Defaults of None mean the task's.
def train(
    ctx: typer.Context,
    task: Annotated[Task, typer.Argument(help="What to train on.", show_default=False, metavar="TASK")],
    steps: Annotated[int | None, typer.Option(help="Training steps (task default).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the initialisation and of the data order.")] = 0,
    out: Annotated[str | None, typer.Option(help="Output directory (default runs/TASK).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the checkpoint in --out.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the run in --out.")] = False,
    optimizer: Annotated[
        str | None, typer.Option(help="An optax optimizer by name: sgd, adam, adamw, ...")
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate (task default).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size (task default).")] = None,
    clip: Annotated[float | None, typer.Option(help="Clip the gradient's global norm; 0 = off.")] = None,
    hidden_size: Annotated[int | None, typer.Option(help="LSTM hidden size H (task default).")] = None,
    seq_len: Annotated[int | None, typer.Option(help="T for adding, unroll length for charlm.")] = None,
    eval_every: Annotated[int | None, typer.Option(help="Evaluate every N steps.")] = None,
    checkpoint_every: Annotated[int | None, typer.Option(help="Checkpoint every N steps.")] = None,
    log_every: Annotated[int | None, typer.Option(help="Write metrics.jsonl every N steps.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    devices: Annotated[
        int | None,
        typer.Option(help="Data-parallel over the first N local devices (default: all dividing the batch)."),
    ] = None,
) -> None:
    """Train on TASK; write summary.json, metrics.jsonl, plots and a checkpoint into --out.

    Prints the summary as JSON on stdout, the log on stderr. A used --out needs --resume or --overwrite.

    \b
    Tasks and their metric (in summary.json):
      digits  scikit-learn's 8x8 digits, row by row      test_accuracy
      adding  the adding problem, T = 100                test_mse
      charlm  characters of the Python stdlib's source   val_bpc
      gomez   the source's two-step example, SGD 0.1     final_loss
    """
    import json
    import sys

    from jlstm.app import metrics, runner

    opts = {k: (v.value if isinstance(v, Enum) else v) for k, v in ctx.params.items()}
    try:
        config = runner.Config(**opts)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    _logging(console=metrics.console())  # stderr, as the progress bar: stdout carries the JSON only
    try:
        summary = runner.train(config)
    except runner.Interrupted as e:
        typer.echo(f"\n{e}. Continue with: {e.resume_command(sys.argv[1:])}", err=True)
        raise typer.Exit(130) from None
    except runner.RunError as e:  # diverged, unwritable or busy --out, no readable checkpoint
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    except ValueError as e:  # a used --out without --resume or --overwrite; another configuration
        raise typer.BadParameter(str(e)) from None
    shown = {k: v for k, v in summary.items() if k not in ("config", "sample")}
    typer.echo(json.dumps(shown, indent=2))
    if "sample" in summary:  # text for a reader, not JSON: on stderr (it is in summary.json too)
        typer.echo("\nsampled text:\n" + summary["sample"], err=True)


def gradflow(
    steps: Annotated[int, typer.Option(min=0, help="Adam steps on `adding` per model.")] = 1500,
    seq_len: Annotated[int, typer.Option(min=2, help="Sequence length T of the adding problem.")] = 100,
    hidden_size: Annotated[int, typer.Option(min=1, help="Hidden size of every model.")] = 64,
    seed: Annotated[int, typer.Option(help="PRNG seed.")] = 0,
    out: Annotated[str, typer.Option(help="Output directory.")] = "runs/gradflow",
) -> None:
    """How the gradient reaching step t decays with distance to the loss: LSTM vs tanh RNN.

    LSTMs with forget-gate bias 0, 1 and 3 and a tanh RNN of the same size.

    Measured at initialisation and after training on `adding`; writes gradflow.csv, gradflow.png and
    summary.json into --out.
    """
    from jlstm.app import gradflow as gf

    _logging()
    result = gf.run(gf.StudyConfig(steps=steps, seq_len=seq_len, hidden_size=hidden_size, seed=seed, out=out))
    typer.echo(gf.describe(result))


def demo(
    out: Annotated[str, typer.Option(help="Output directory of the report.")] = "runs/demo",
    steps: Annotated[int, typer.Option(min=1, help="Steps of the digits run.")] = 1500,
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
) -> None:
    """The tour: the worked example, a gradient check, a short digits run, and a report in --out."""
    from jlstm.app import demo as demo_lib

    _logging()
    path = demo_lib.run(out, digits_steps=steps, progress=progress)
    typer.echo(f"report: {path}")


def bench(
    sizes: Annotated[str | None, typer.Option(help="T,B,D,H;T,B,D,H (default: the six sizes).")] = None,
    impls: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated: manual,autodiff,plain,flax,equinox,torch,lstm_ref; where JAX runs on a "
            "GPU also cudnn,torch_cuda. Default: every one this machine offers."
        ),
    ] = None,
    rounds: Annotated[int, typer.Option(min=1, help="Round-robin rounds (>= 10 to report).")] = 10,
    threads: Annotated[
        str,
        typer.Option(
            help="One table per setting, in this order, each measured in its own process: 'default' (no "
            "thread limit set for XLA or torch: what users get) or a thread count for every framework."
        ),
    ] = "default,1",
    out: Annotated[str, typer.Option(help="Output directory (bench.md, .json, .png).")] = "runs/bench",
) -> None:
    """Time the training step of every LSTM implementation round-robin, gradients checked equal first.

    \b
    The report (printed; bench.md in --out) has one table per --threads
    setting. By default:
      Table 1  default threads: none set for XLA or torch (what users get)
      Table 2  1 thread for every framework
    x plain, x torch: median time over that of plain jax.grad (lax.scan)
    and of torch.nn.LSTM (torch_cuda on a GPU).
    """
    from pathlib import Path

    from jlstm.app import bench as b

    chosen_impls = impls.split(",") if impls else None
    unknown = [i for i in chosen_impls or () if i not in b.IMPLEMENTATIONS]
    if unknown:
        msg = f"must be among {','.join(b.IMPLEMENTATIONS)}; got {unknown}"
        raise typer.BadParameter(msg, param_hint="--impls")
    try:
        chosen = b.parse_sizes(sizes) if sizes is not None else b.SIZES
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--sizes") from None
    try:
        settings = b.parse_threads(threads)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--threads") from None
    _logging()
    try:
        b.run(chosen, impls=chosen_impls, rounds=rounds, threads=settings, out=out)
    except RuntimeError as e:  # a measurement failed in its process, which printed why
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    typer.echo((Path(out) / "bench.md").read_text())


def odyssey(
    quick: Annotated[bool, typer.Option("--quick", help="The CI smoke test (a minute or two).")] = False,
    out: Annotated[str, typer.Option(help="Output directory.")] = "runs/odyssey",
    trials: Annotated[int | None, typer.Option(min=2, help="Trials per variant and task.")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="SGD steps per trial.")] = None,
    tasks: Annotated[str | None, typer.Option(help="Comma-separated: jsb,digitstream,charlm.")] = None,
    variants: Annotated[str | None, typer.Option(help="Comma-separated: V,NIG,NFG,...,CIFG.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random search and of the data order.")] = 0,
) -> None:
    """Greff et al.'s LSTM variants x tasks x vmapped random search, Welch's t-tests against V; writes
    summary.json, trials.csv, plots and report.md into --out (about an hour; needs the odyssey extra)."""
    from jlstm.app import odyssey as ody

    try:
        config = ody.from_options(quick, out, trials, steps, tasks, variants, seed)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    _logging()
    try:
        typer.echo(ody.report.short(ody.run(config)))
    except ody.MissingExtra as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None


# The commands, in the order of `jlstm --help` (example, gradcheck and parity are in cli_checks).
COMMANDS = (example, gradcheck, train, gradflow, demo, parity, bench, odyssey)
for _command in COMMANDS:
    app.command()(_command)


def main() -> None:
    """The ``jlstm`` command; without the plotting or data libraries, one line naming the extra (exit 2)."""
    try:
        app()
    except ModuleNotFoundError as e:  # parity and bench skip a missing framework themselves
        if (missing := (e.name or "").partition(".")[0]) not in ("matplotlib", "sklearn"):
            raise
        typer.echo(f"jlstm: needs {missing}, not installed: pip install 'jlstm[experiments]'", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
