"""The Python API: what the command line does, as functions for scripts and notebooks.

    >>> import qfed_qiskit as qf
    >>> run = qf.train(clients=4, rounds=3, out="runs/api")   # federated QT, exact engine
    >>> run                                                   # in Jupyter: summary + history table
    >>> run.plot()                                            # accuracy and loss per round
    >>> qf.evaluate(run, backend="aer-noisy")                 # its QNN measured on noisy Aer
    >>> qf.noise_sweep("configs/noise-chunked.toml", out="runs/sweep").plot()

Each function runs the same code as its command (:func:`qfed_qiskit.runner.run_training`,
:mod:`qfed_qiskit.study`), takes the command's options as keyword arguments (``batch_size=64`` is
``--batch-size 64``) and raises :class:`~qfed_qiskit.exceptions.QFedInputError` with the one-line
message the command prints. Runs are folders: a run trained here can be resumed, evaluated or
reported on from the command line, and the other way round.
"""

from __future__ import annotations

import html
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qfed_qiskit.exceptions import QFedInputError

__all__ = [
    "Evaluation",
    "Run",
    "SweepResult",
    "estimate_cost",
    "evaluate",
    "fashion_mnist_dir",
    "load_run",
    "noise_sweep",
    "train",
]

_HISTORY_COLUMNS = ("test_accuracy", "test_loss", "train_loss", "clients_ok", "wall_time_s")


def _show_cost(line: str) -> None:
    print(line, file=sys.stderr)


def _html_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4f}"
        return "" if value is None else html.escape(str(value))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


@dataclass(frozen=True)
class Run:
    """A run folder written by :func:`train` or ``qfed-qiskit train``, finished or not.

    Attributes:
        path: The folder.
        history: One dict per ``metrics.jsonl`` line (per round, or per epoch when centralized).
        summary: ``summary.json`` (None while the run is unfinished).
    """

    path: Path
    history: list[dict[str, Any]]
    summary: dict[str, Any] | None

    @property
    def finished(self) -> bool:
        """Whether the run wrote its summary."""
        return self.summary is not None

    @property
    def federated(self) -> bool:
        """Whether the history is per round (federated) rather than per epoch."""
        return bool(self.history) and "round" in self.history[0]

    @property
    def test_accuracy(self) -> float | None:
        """Final test accuracy (the last recorded one while unfinished; None before any)."""
        if self.summary is not None:
            return float(self.summary["test_accuracy"])
        return float(self.history[-1]["test_accuracy"]) if self.history else None

    @property
    def config(self) -> dict[str, Any] | None:
        """The run's settings as stored in its summary (None while unfinished)."""
        return None if self.summary is None else dict(self.summary["config"])

    def table(self) -> list[dict[str, Any]]:
        """The history's headline columns, one dict per round or epoch."""
        step = "round" if self.federated else "epoch"
        return [
            {step: r[step], **{c: r[c] for c in _HISTORY_COLUMNS if c in r}} for r in self.history
        ]

    def plot(self) -> Any:
        """A matplotlib figure of test accuracy and loss per round (or epoch)."""
        if not self.history:
            raise QFedInputError(f"run {self.path}: no metrics recorded yet, nothing to plot")
        from qfed_qiskit.study.plots import run_figure

        return run_figure(self.history)

    def cnn(self) -> Any:
        """The trained CNN (``cnn.pt``) as a plain torch module, ready for inference."""
        import torch

        from qfed_qiskit.models.cnn import SmallCNN, TargetCNN

        if self.summary is None or not (self.path / "cnn.pt").is_file():
            raise QFedInputError(f"run {self.path}: unfinished (no cnn.pt yet)")
        config = self.summary["config"]
        model = SmallCNN if config.get("model") == "small-cnn" else TargetCNN
        cnn = model(activation=config.get("activation", "none"))
        cnn.load_state_dict(torch.load(self.path / "cnn.pt", weights_only=True))
        return cnn.eval()

    def evaluations(self) -> list[Evaluation]:
        """The backend evaluations stored in ``<run>/eval/`` (see :func:`evaluate`)."""
        folder = self.path / "eval"
        files = sorted(folder.glob("*.json")) if folder.is_dir() else []
        return [Evaluation(json.loads(f.read_text(encoding="utf-8")), f) for f in files]

    def report(self) -> Path:
        """Write ``<run>/report/report.md`` and its figures (``qfed-qiskit report``)."""
        from qfed_qiskit.study.report import write_report

        return write_report(self.path)

    def _headline(self) -> str:
        step = "round" if self.federated else "epoch"
        done = f"{len(self.history)} {step}{'s' if len(self.history) != 1 else ''}"
        state = "finished" if self.finished else "unfinished"
        accuracy = self.test_accuracy
        shown = "" if accuracy is None else f", test accuracy {accuracy:.2%}"
        extra = ""
        if self.summary is not None:
            extra = (
                f", {self.summary['trainable_params']:,} trainable parameters, "
                f"{self.summary['wall_time_s']:.0f} s"
            )
        return f"{self.path}: {state}, {done}{shown}{extra}"

    def __repr__(self) -> str:
        return f"Run({self._headline()})"

    def _repr_html_(self) -> str:
        rows = self.table()
        columns = list(rows[0]) if rows else []
        return f"<p><b>Run</b> {html.escape(self._headline())}</p>" + _html_table(rows, columns)


def fashion_mnist_dir(data_dir: str | Path | None = None) -> Path | None:
    """The folder of FashionMNIST that runs will read (``data_dir``, ``QFED_DATA_DIR``, Debian's
    package, torchvision's cache), or None after printing one line saying why it is not here.
    Nothing is downloaded."""
    from qfed_qiskit.data.fashion_mnist import find_data_dir
    from qfed_qiskit.exceptions import DataError

    try:
        return find_data_dir(data_dir, download=False)
    except DataError as exc:
        print(f"FashionMNIST is not on this machine: {exc}")
        return None


def load_run(path: str | Path) -> Run:
    """The run in folder ``path`` (finished, or still going: its complete metric lines).

    Raises:
        QFedInputError: If the folder holds no ``metrics.jsonl``.
    """
    from qfed_qiskit.training.outputs import RunDirectory, read_metrics

    folder = Path(path)
    if not (folder / RunDirectory.METRICS).is_file():
        raise QFedInputError(f"run {folder}: no metrics.jsonl; not a folder written by train")
    summary_path = folder / RunDirectory.SUMMARY
    summary = (
        json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else None
    )
    return Run(path=folder, history=read_metrics(folder), summary=summary)


def estimate_cost(config: str | Path | None = None, **settings: Any) -> dict[str, Any] | None:
    """What a training run would submit to IBM Runtime (circuits, shots, jobs, budget), before
    running it; None when the run submits nothing (another backend, or a classical model)."""
    from qfed_qiskit.profiles import training_cost
    from qfed_qiskit.runner import load_run_config

    return training_cost(load_run_config(config, settings))


def train(
    config: str | Path | None = None,
    *,
    resume: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    yes: bool = False,
    **settings: Any,
) -> Run:
    """Train as ``qfed-qiskit train`` does and return the run.

    Args:
        config: TOML file whose keys mirror the settings.
        resume: Continue the federated run in this folder from its checkpoint (``rounds`` may
            grow; settings that would change the result are refused).
        overwrite: Replace a run already in ``out`` (default: refuse).
        progress: Show progress (a bar in a terminal, lines in Jupyter or a log).
        yes: Run on IBM hardware beyond the profile's shot budget.
        **settings: Any setting of ``qfed-qiskit train`` by its field name (``clients=4``,
            ``backend="aer-noisy"``, ``local_epochs=1``); they win over ``config``.

    Returns:
        The finished :class:`Run`.
    """
    from qfed_qiskit.cli.progress import RichProgress
    from qfed_qiskit.profiles import guard_cost, training_cost
    from qfed_qiskit.runner import load_run_config, run_training

    cfg = load_run_config(config, settings, resume=resume)
    cost = training_cost(cfg)
    if cost is not None:
        guard_cost(cost, yes=yes, show=_show_cost)
    with RichProgress(quiet=not progress) as bar:
        _, run_dir = run_training(cfg, callback=bar, resume=resume is not None, overwrite=overwrite)
    return load_run(run_dir.path)


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of a trained model with its QNN on a backend (``<run>/eval/*.json``).

    Attributes:
        report: The stored report (accuracy mean and spread, the exact accuracy, TV distance,
            weight error, shots, repeats, method, job ids).
        path: Where it is stored.
    """

    report: dict[str, Any]
    path: Path

    @property
    def accuracy(self) -> float:
        """Mean test accuracy over the repeats."""
        return float(self.report["accuracy_mean"])

    @property
    def exact_accuracy(self) -> float:
        """The same model's accuracy from exact probabilities."""
        return float(self.report["exact_accuracy"])

    def __repr__(self) -> str:
        from qfed_qiskit.study.evaluate import describe_report

        return f"Evaluation({describe_report(self.report)})"


def _run_path(run: Run | str | Path) -> Path:
    return run.path if isinstance(run, Run) else Path(run)


def evaluate(
    run: Run | str | Path,
    *,
    backend: str,
    shots: int | None = None,
    repeats: int = 1,
    seed: int = 0,
    data_dir: str | None = None,
    yes: bool = False,
) -> Evaluation:
    """Test a trained run with its QNN on ``backend`` (``qfed-qiskit evaluate``).

    Args:
        run: A :class:`Run` or its folder (finished, or checkpointed).
        backend: Backend profile name or TOML path (``aer-noisy``, ``fake-torino``, ...).
        shots: Shots per repeat (default: the profile's; 0: exact probabilities).
        repeats: Measurements with fresh shots (their spread is reported).
        seed: Seed of the shots.
        data_dir: FashionMNIST folder (default: the run's).
        yes: Run on IBM hardware beyond the profile's shot budget.
    """
    from qfed_qiskit.profiles import evaluation_cost, guard_cost, load_backend_profile
    from qfed_qiskit.study.evaluate import check_repeats, run_evaluation, with_shots

    profile = with_shots(load_backend_profile(backend), shots)
    cost = evaluation_cost(profile, repeats=check_repeats(repeats))
    guard_cost(cost, yes=yes, show=_show_cost)
    report, path = run_evaluation(
        _run_path(run), profile, repeats=repeats, seed=seed, data_dir=data_dir
    )
    return Evaluation(report, path)


@dataclass(frozen=True)
class SweepResult:
    """The cells of a noise sweep (``sweep.csv``), with its folder.

    Attributes:
        out: The sweep folder (``sweep.csv``, ``sweep.md``, ``sweep.png``).
        rows: One dict per (model, evaluation backend, shots) cell.
    """

    out: Path
    rows: list[dict[str, Any]] = field(repr=False)

    def plot(self) -> Any:
        """A matplotlib figure: accuracy against noise level and against shots."""
        from qfed_qiskit.study.plots import sweep_figure

        return sweep_figure(self.rows)

    def markdown(self) -> str:
        """The sweep's accuracy table (``sweep.md``)."""
        from qfed_qiskit.study.sweep import markdown_table

        return markdown_table(self.rows)

    def __repr__(self) -> str:
        return f"SweepResult({self.out}: {len(self.rows)} cells)"

    def _repr_markdown_(self) -> str:
        return self.markdown()


def _items(value: str | Sequence[Any]) -> str:
    return value if isinstance(value, str) else ",".join(str(v) for v in value)


def noise_sweep(
    config: str | Path,
    *,
    out: str | Path,
    levels: str | Sequence[float] = (0, 1e-4, 1e-3, 3e-3, 1e-2),
    shots: str | Sequence[int | str] = (1000, 10_000, 100_000, 1_000_000, "exact"),
    devices: str | Sequence[str] = (),
    modes: str | Sequence[str] = ("ideal-train", "noise-aware"),
    repeats: int = 3,
    seed: int = 0,
    data_dir: str | None = None,
    progress: bool = True,
) -> SweepResult:
    """Train in the same federated loop and evaluate across noise levels, shots and devices
    (``qfed-qiskit noise-sweep``). A finished cell is never redone: call it again to continue.

    Args:
        config: TOML training config (a QT model).
        out: The sweep folder (resumed if it holds this sweep).
        levels: Depolarizing levels ``l`` (one- and two-qubit error ``l`` and ``10 l``, readout
            ``10 l``).
        shots: Shots per evaluation; ``"exact"`` for exact probabilities.
        devices: Fake-device profiles, e.g. ``["fake-torino"]``.
        modes: ``ideal-train``, ``noise-aware``, ``shot-aware``.
        repeats: Shot draws per cell.
        seed: Seed of the shot draws.
        data_dir: FashionMNIST folder.
        progress: Show progress.
    """
    from qfed_qiskit.cli.progress import RichProgress
    from qfed_qiskit.study.sweep import Sweep, SweepPlan

    plan = SweepPlan.from_options(
        config,
        levels=_items(levels),
        shots=_items(shots),
        modes=_items(modes),
        devices=_items(devices),
        repeats=repeats,
        seed=seed,
    )
    with RichProgress(quiet=not progress) as bar:
        rows = Sweep(plan, out, callback=bar, data_dir=data_dir).run()
    return SweepResult(Path(out), list(rows))
