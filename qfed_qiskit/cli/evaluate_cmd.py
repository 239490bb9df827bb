"""``qfed-qiskit evaluate``: a trained run's test accuracy with its QNN on any backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from qfed_qiskit.cli.errors import handle_errors


def evaluate(
    run: Annotated[Path, typer.Option("--run", help="Run folder (finished or checkpointed).")],
    backend: Annotated[str, typer.Option(help="Backend profile name or TOML path.")],
    shots: Annotated[
        int | None, typer.Option(help="Shots per repeat [the profile's; 0: exact].")
    ] = None,
    repeats: Annotated[int, typer.Option(help="Measurements with fresh shots.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the shots.")] = 0,
    data_dir: Annotated[
        str | None, typer.Option(help="Folder with the FashionMNIST IDX files [the run's].")
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="Run on IBM hardware beyond the profile's shot budget.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Regenerate the run's CNN from probabilities measured on BACKEND and test it.

    Writes RUN/eval/<backend>[-<shots>].json.
    """
    with handle_errors():
        from qfed_qiskit.cli.hardware import confirm_cost
        from qfed_qiskit.profiles import evaluation_cost, load_backend_profile
        from qfed_qiskit.study.evaluate import (
            check_repeats,
            describe_report,
            run_evaluation,
            with_shots,
        )

        profile = with_shots(load_backend_profile(backend), shots)
        confirm_cost(evaluation_cost(profile, repeats=check_repeats(repeats)), yes=yes)
        report, path = run_evaluation(run, profile, repeats=repeats, seed=seed, data_dir=data_dir)
    if as_json:
        typer.echo(json.dumps(report, sort_keys=True))
        return
    Console(soft_wrap=True).print(escape(describe_report(report)))  # one line, however narrow
    Console().print(f"report: {path}")
