"""The ``jlstm`` command line (typer). Heavy imports happen inside each command."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="jlstm",
    help="A functional LSTM for JAX with a hand-written backward pass through time.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """A functional LSTM for JAX with a hand-written backward pass through time."""


@app.command()
def example() -> None:
    """Print every number of the source's worked example next to jlstm's, with the errata."""
    import jax

    jax.config.update("jax_enable_x64", True)  # so the table shows the equations, not float32 rounding
    from jlstm import example as ex

    typer.echo(ex.report())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
