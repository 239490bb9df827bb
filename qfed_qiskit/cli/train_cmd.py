"""``qfed-qiskit train``: centralized or federated Quantum-Train (or classical) training."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from qfed_qiskit.cli.errors import handle_errors
from qfed_qiskit.cli.progress import RichProgress


def train(
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML file whose keys mirror these flags.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="qt (Quantum-Train) or classical.")] = None,
    backend: Annotated[
        str | None, typer.Option(help="Backend profile name or TOML path [statevector].")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (centralized) [50].")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size [128].")] = None,
    lr: Annotated[
        float | None, typer.Option(help="Adam learning rate [qt 1e-4, classical 1e-3].")
    ] = None,
    blocks: Annotated[int | None, typer.Option(help="Ansatz blocks L [16].")] = None,
    chunk_size: Annotated[int | None, typer.Option(help="Weights per basis state [1].")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed [0].")] = None,
    max_steps_per_epoch: Annotated[
        int | None, typer.Option(help="Stop each epoch after this many steps.")
    ] = None,
    data_dir: Annotated[
        str | None, typer.Option(help="Folder with the FashionMNIST IDX files.")
    ] = None,
    out: Annotated[str | None, typer.Option(help="Output folder [runs/<model>-<time>].")] = None,
    dtype: Annotated[str | None, typer.Option(help="float32 or float64 (exact engine).")] = None,
    activation: Annotated[str | None, typer.Option(help="none (paper) or relu.")] = None,
    clients: Annotated[int | None, typer.Option(help="Federated clients (1: centralized).")] = None,
    rounds: Annotated[int | None, typer.Option(help="Federated rounds [70].")] = None,
    local_epochs: Annotated[int | None, typer.Option(help="Local epochs per round [10].")] = None,
    partition: Annotated[str | None, typer.Option(help="iid or dirichlet:ALPHA [iid].")] = None,
    fraction_fit: Annotated[
        float | None, typer.Option(help="Fraction of clients sampled per round [1.0].")
    ] = None,
    min_clients: Annotated[
        int | None, typer.Option(help="Fewest valid client updates to accept a round [1].")
    ] = None,
    round_timeout: Annotated[
        float | None, typer.Option(help="Seconds a client may take per round.")
    ] = None,
    dp_clip: Annotated[
        float | None, typer.Option(help="DP-FedAvg: clip norm of client deltas.")
    ] = None,
    dp_noise: Annotated[
        float | None, typer.Option(help="DP-FedAvg: noise multiplier sigma.")
    ] = None,
    runtime: Annotated[str | None, typer.Option(help="embedded (default) or flower.")] = None,
    resume: Annotated[
        Path | None,
        typer.Option("--resume", help="Continue the federated run in DIR from its checkpoint."),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="Run on IBM hardware beyond the profile's shot budget.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON only.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
) -> None:
    """Train a model and write metrics.jsonl, summary.json, model.pt and cnn.pt to --out."""
    overrides: dict[str, Any] = {
        "model": model,
        "backend": backend,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "blocks": blocks,
        "chunk_size": chunk_size,
        "seed": seed,
        "max_steps_per_epoch": max_steps_per_epoch,
        "data_dir": data_dir,
        "out": out,
        "dtype": dtype,
        "activation": activation,
        "clients": clients,
        "rounds": rounds,
        "local_epochs": local_epochs,
        "partition": partition,
        "fraction_fit": fraction_fit,
        "min_clients": min_clients,
        "round_timeout": round_timeout,
        "dp_clip": dp_clip,
        "dp_noise": dp_noise,
        "runtime": runtime,
    }
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    console = Console()
    with handle_errors():
        from qfed_qiskit.runner import load_run_config, run_training

        cfg = load_run_config(config, overrides, resume=resume)
        _confirm_hardware_cost(cfg, yes=yes)
        with RichProgress(console=console, quiet=as_json) as progress:
            summary, run_dir = run_training(cfg, callback=progress, resume=resume is not None)
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


def _confirm_hardware_cost(cfg: Any, *, yes: bool) -> None:
    """On IBM hardware, print what the run will submit and require --yes beyond the budget."""
    if cfg.model != "qt":
        return
    from qfed_qiskit.profiles import check_budget, estimate_cost, format_cost, load_backend_profile

    profile = load_backend_profile(cfg.backend)
    if profile.kind == "ibm-runtime":
        cost = estimate_cost(profile, None, cfg)
        Console(stderr=True).print(format_cost(cost))  # stderr keeps --json stdout clean
        check_budget(cost, yes=yes)
