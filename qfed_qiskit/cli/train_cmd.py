"""``qfed-qiskit train``: centralized or federated Quantum-Train (or classical) training.

The setting options are not written here: one option per :data:`qfed_qiskit.config.SETTINGS`
entry, with its declared help and default, is added to the command's signature below. An option
left out means "take it from --config, else the declared default".
"""

from __future__ import annotations

import inspect
import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from qfed_qiskit.cli.errors import handle_errors
from qfed_qiskit.cli.progress import RichProgress
from qfed_qiskit.config import SETTINGS, Setting

_TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}


def train(
    *,
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML file whose keys mirror these flags.")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option("--resume", help="Continue the federated run in DIR from its checkpoint."),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace the run already in --out (default: refuse)."),
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", help="Run on IBM hardware beyond the profile's shot budget.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON only.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
    **settings: Any,
) -> None:
    """Train a model and write metrics.jsonl, summary.json, model.pt and cnn.pt to --out."""
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    console = Console()
    with handle_errors():
        from qfed_qiskit.cli.hardware import confirm_cost
        from qfed_qiskit.profiles import training_cost
        from qfed_qiskit.runner import load_run_config, run_training

        cfg = load_run_config(config, settings, resume=resume)
        confirm_cost(training_cost(cfg), yes=yes)
        with RichProgress(console=console, quiet=as_json) as progress:
            summary, run_dir = run_training(
                cfg, callback=progress, resume=resume is not None, overwrite=overwrite
            )
    if as_json:
        typer.echo(json.dumps(summary, sort_keys=True))
        return
    console.print(
        f"[bold green]test accuracy {summary['test_accuracy']:.2%}[/]  "
        f"(test loss {summary['test_loss']:.4f}, {summary['trainable_params']:,} trainable "
        f"parameters for a {summary['target_params']:,}-parameter CNN, "
        f"{summary['wall_time_s']:.1f} s)"
    )
    console.print(f"outputs: {run_dir.path}")


def _option(spec: Setting) -> inspect.Parameter:
    """The ``--KEY`` option of one declared setting (None when not given)."""
    python_type = _TYPES[spec.kind]
    option = typer.Option(
        f"--{spec.key}",
        help=escape(f"{spec.help} [default: {spec.shown_default}]"),
        show_default=False,
    )
    return inspect.Parameter(
        spec.name,
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[python_type | None, option],  # type: ignore[valid-type]
    )


def _with_setting_options(func: Any) -> Any:
    """``func`` with ``**settings`` replaced by one keyword option per declared setting."""
    signature = inspect.signature(func, eval_str=True)
    fixed = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    func.__signature__ = signature.replace(
        parameters=[*fixed, *(_option(spec) for spec in SETTINGS.values())]
    )
    return func


train = _with_setting_options(train)
