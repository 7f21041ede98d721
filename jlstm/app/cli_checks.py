"""The commands that check jlstm's numbers: the source's worked example, the gradient check, and parity
with the other LSTM libraries. ``cli`` registers them on the ``jlstm`` app, in the order of its help.
"""

from __future__ import annotations

from typing import Annotated

import typer


def example() -> None:
    """Print every number of the source's worked example next to jlstm's, with the errata."""
    import jax

    jax.config.update("jax_enable_x64", True)  # so the table shows the equations, not float32 rounding
    from jlstm.app import example as ex

    typer.echo(ex.report())


def gradcheck(
    seed: Annotated[int, typer.Option(help="PRNG seed of the random configuration.")] = 0,
    batch: Annotated[int, typer.Option(min=1, help="Batch size.")] = 3,
    steps: Annotated[int, typer.Option("--steps", "-T", min=1, help="Sequence length T.")] = 7,
    input_size: Annotated[int, typer.Option(min=1, help="Input size D.")] = 4,
    hidden_size: Annotated[int, typer.Option(min=1, help="Hidden size H.")] = 5,
) -> None:
    """Hand-written gradient vs autodiff vs finite differences (float64) on a random LSTM, as a table.

    Exits with 1 if manual and autodiff differ by more than 1e-10 or finite differences by 1e-6.
    """
    from jlstm.app import demo

    rows = demo.gradcheck(seed, batch, steps, input_size, hidden_size)
    typer.echo(demo.gradcheck_table(rows))
    ok = demo.gradcheck_passed(rows)
    typer.echo("\npassed: manual == autodiff (< 1e-10) == finite differences (< 1e-6)" if ok else "\nFAILED")
    raise typer.Exit(0 if ok else 1)


def parity(
    libraries: Annotated[
        list[str] | None,
        typer.Argument(
            help="Libraries to compare (default: all): torch, flax.linen, flax.nnx, keras, haiku, equinox.",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the inputs and of the JAX libraries' weights.")] = 0,
) -> None:
    """Compare jlstm with torch, Flax, Keras, Haiku and Equinox in float64: outputs, final state, grads."""
    import os

    os.environ.setdefault("KERAS_BACKEND", "jax")  # before keras is imported: jax.grad needs its JAX backend
    import jax

    jax.config.update("jax_enable_x64", True)
    from jlstm.app import parity as par

    try:
        rows = par.parity_rows(libraries or None, seed=seed)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="LIBRARIES") from None
    typer.echo(par.format_table(rows))
