"""``qfed-qiskit inspect``: sizes and circuit statistics of a QT configuration."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from qfed_qiskit.cli.errors import handle_errors


def inspect(
    blocks: Annotated[int, typer.Option(min=1, help="Ansatz blocks L.")] = 16,
    chunk_size: Annotated[int, typer.Option(min=1, help="Weights generated per basis state.")] = 1,
    backend: Annotated[
        str | None,
        typer.Option(help="Backend profile name or TOML path: add ISA size and cost per step."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show qubits, parameter counts, compression and circuit size of a QT model."""
    with handle_errors():
        from qfed_qiskit.inspection import inspect_model

        report = inspect_model(blocks=blocks, chunk_size=chunk_size, backend=backend)
    if as_json:
        typer.echo(json.dumps(report))
        return
    table = Table(title="Quantum-Train model", show_header=False)
    for key, value in report.items():
        table.add_row(key, f"{value:.1%}" if key == "compression" else str(value))
    Console().print(table)
