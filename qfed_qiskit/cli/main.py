"""The ``qfed-qiskit`` command: a Typer root with one module per command."""

from __future__ import annotations

from typing import Annotated

import typer

from qfed_qiskit import __version__
from qfed_qiskit.cli import (
    backends_cmd,
    evaluate_cmd,
    inspect_cmd,
    report_cmd,
    sweep_cmd,
    train_cmd,
)

app = typer.Typer(
    name="qfed-qiskit",
    help="Parameter-compact quantum-classical federated learning (Quantum-Train) on Qiskit.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"qfed-qiskit {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = None,
) -> None:
    """Parameter-compact quantum-classical federated learning (Quantum-Train) on Qiskit."""


app.command("train")(train_cmd.train)
app.command("inspect")(inspect_cmd.inspect)
app.command("backends")(backends_cmd.backends)
app.command("evaluate")(evaluate_cmd.evaluate)
app.command("noise-sweep")(sweep_cmd.noise_sweep)
app.command("report")(report_cmd.report)


def main() -> None:
    """Console-script entry point."""
    app()
