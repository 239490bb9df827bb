"""Run a TrainConfig through Flower's Simulation Runtime in this process (``--runtime flower``)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
from pathlib import Path
from typing import Any

from qfed_qiskit.config import TrainConfig
from qfed_qiskit.exceptions import MissingOptionalDependencyError, QFedError, QFedInputError
from qfed_qiskit.training.callbacks import TrainingCallback
from qfed_qiskit.training.outputs import RunDirectory, check_run_folder, default_out_dir

logger = logging.getLogger(__name__)

INSTALL_HINT = "install it with: pip install 'qfed-qiskit[flower]' (flwr[simulation], with Ray)"


class _DropRunSimulationNotice(logging.Filter):
    """Hides Flower's notice that ``run_simulation`` is deprecated (we use it on purpose)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`run_simulation` function is deprecated" not in record.getMessage()


def check_installed() -> None:
    """Raise with an install hint unless ``flwr`` and ``ray`` (its simulation backend) import."""
    missing = [name for name in ("flwr", "ray") if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingOptionalDependencyError(
            f"runtime 'flower' needs {' and '.join(missing)}; {INSTALL_HINT}"
        )


def run_flower_simulation(
    config: TrainConfig,
    *,
    out: str | Path | None = None,
    callback: TrainingCallback | None = None,
    resume: bool = False,
    overwrite: bool = False,
    data_check: str = "strict",
    backend_config: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], RunDirectory]:
    """Train ``config`` with the Flower apps on ``config.clients`` simulated SuperNodes.

    The ServerApp runs in a thread of this process (so ``callback`` sees every round); the
    ClientApps run in Ray workers. Results match the embedded engine's for the same config.
    This uses ``flwr.simulation.run_simulation`` (deprecated in favour of ``flwr run``, which
    needs a SuperLink and an app folder): it runs from any working directory and leaves no
    SuperLink behind.

    Args:
        config: Run settings (``clients >= 2``).
        out: Output folder (default ``config.out``, else ``runs/<model>-<backend>-<time>``).
        callback: Progress events from the server.
        resume: Continue the run in ``out`` from its checkpoint.
        overwrite: Replace a run already in ``out``.
        data_check: ``"strict"`` (full FashionMNIST) or ``"relaxed"`` (any consistent size).
        backend_config: Flower's simulation backend config (default: Flower's, 2 CPUs per client).

    Returns:
        The summary and the run directory.

    Raises:
        QFedInputError: If the config is not federated, or the output folder cannot be used.
        MissingOptionalDependencyError: If ``flwr`` or ``ray`` is missing.
    """
    if not config.federated:
        raise QFedInputError(f"clients={config.clients}: runtime 'flower' needs clients >= 2")
    check_installed()
    folder = Path(out or config.out or default_out_dir(config.model, config.backend))
    check_run_folder(folder, resume=resume, overwrite=overwrite)
    from qfed_qiskit.runtimes.flower.task import engine_factory

    engine_factory(config)  # backend problems (profile, credentials) first, as in embedded runs
    environ = dict(os.environ)  # flwr and Ray set PYTHONPATH, PYTHONBREAKPOINT, RAY_*, GRPC_*
    from flwr.simulation import run_simulation

    from qfed_qiskit.runtimes.flower.client_app import build_client_app
    from qfed_qiskit.runtimes.flower.server_app import build_server_app
    from qfed_qiskit.runtimes.flower.task import AppSettings, load_data

    settings = AppSettings(
        config=dataclasses.replace(config, runtime="flower", out=str(folder)),
        data_check=data_check,
        resume=resume,
        overwrite=overwrite,
    )
    load_data(settings)  # fail fast on missing data; the in-process ServerApp reuses it
    errors: list[BaseException] = []
    notice = _DropRunSimulationNotice()
    flwr_logger = logging.getLogger("flwr")
    flwr_logger.addFilter(notice)
    try:
        run_simulation(
            server_app=build_server_app(settings, callback=callback, errors=errors),
            client_app=build_client_app(settings),
            num_supernodes=config.clients,
            backend_config=backend_config,  # type: ignore[arg-type]
        )
    finally:
        flwr_logger.removeFilter(notice)
        os.environ.clear()
        os.environ.update(environ)
    if errors:  # the ServerApp's own error (a bad checkpoint, a backend down), not Flower's
        raise errors[0]
    summary_path = folder / RunDirectory.SUMMARY
    if not summary_path.exists():
        raise QFedError(f"the Flower simulation ended without writing {summary_path}")
    summary: dict[str, Any] = json.loads(summary_path.read_text(encoding="utf-8"))
    return summary, RunDirectory(folder)
