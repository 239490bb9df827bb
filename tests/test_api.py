"""The Python API: the same runs as the command line, objects that show themselves in Jupyter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import qfed_qiskit as qf
from qfed_qiskit.cli.main import app
from qfed_qiskit.data import fashion_mnist as fm
from qfed_qiskit.exceptions import QFedInputError
from tests.idx_utils import write_idx_dataset

SMALL_QT = {"blocks": 1, "chunk_size": 1024, "batch_size": 64, "lr": 0.05}
"""3 qubits: fast on every backend."""


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_idx_dataset(tmp_path_factory.mktemp("idx"), 512, 200, seed=3)


@pytest.fixture(autouse=True)
def _small_is_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fm, "FULL_SIZES", (512, 200))


def _federated(data: Path, out: Path, **extra: object) -> qf.api.Run:
    settings = {"clients": 2, "rounds": 2, "local_epochs": 1, "max_steps_per_epoch": 3}
    return qf.train(
        data_dir=str(data), out=str(out), workers=1, progress=False,
        **{**SMALL_QT, **settings, **extra},
    )  # fmt: skip


def test_train_returns_the_run_the_cli_would_write(data: Path, tmp_path: Path) -> None:
    """qf.train and `qfed-qiskit train` with the same settings give the same parameters."""
    run = _federated(data, tmp_path / "api")
    assert run.finished and run.federated and len(run.history) == 2
    assert run.test_accuracy == run.summary["test_accuracy"]  # type: ignore[index]
    args = [
        "train", "--data-dir", str(data), "--out", str(tmp_path / "cli"), "--json",
        "--blocks", "1", "--chunk-size", "1024", "--batch-size", "64", "--lr", "0.05",
        "--clients", "2", "--rounds", "2", "--local-epochs", "1", "--max-steps-per-epoch", "3",
        "--workers", "1",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    ours = torch.load(run.path / "model.pt", weights_only=True)
    theirs = torch.load(tmp_path / "cli" / "model.pt", weights_only=True)
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_run_shows_itself_and_plots(data: Path, tmp_path: Path) -> None:
    """repr, HTML table, plot and the standalone CNN of a finished run."""
    run = _federated(data, tmp_path / "run")
    assert "finished, 2 rounds, test accuracy" in repr(run)
    page = run._repr_html_()
    assert page.count("<tr>") == 3 and "test_accuracy" in page  # header + 2 rounds
    assert [r["round"] for r in run.table()] == [1, 2]
    fig = run.plot()
    assert [ax.get_title() for ax in fig.axes] == ["Accuracy", "Loss"]
    line = fig.axes[0].get_lines()[0]
    assert list(line.get_ydata()) == [100 * r["test_accuracy"] for r in run.history]
    cnn = run.cnn()
    x = torch.zeros(3, 1, 28, 28)
    assert cnn(x).shape == (3, 10)
    assert qf.load_run(run.path).history == run.history


def test_resume_continues_the_run(data: Path, tmp_path: Path) -> None:
    """train(resume=...) adds rounds to a run, as --resume does."""
    run = _federated(data, tmp_path / "run")
    more = qf.train(resume=run.path, rounds=3, progress=False)
    assert [r["round"] for r in more.history] == [1, 2, 3]


def test_evaluate_on_a_backend(data: Path, tmp_path: Path) -> None:
    """evaluate stores its report next to the run and shows one line."""
    run = _federated(data, tmp_path / "run")
    ev = qf.evaluate(run, backend="statevector")
    assert ev.accuracy == ev.exact_accuracy == run.test_accuracy
    assert "statevector, exact probabilities: test accuracy" in repr(ev)
    assert [e.path for e in run.evaluations()] == [ev.path]
    stored = json.loads(ev.path.read_text(encoding="utf-8"))
    assert stored["accuracy_mean"] == ev.accuracy


def test_unfinished_run_loads_its_complete_rounds(data: Path, tmp_path: Path) -> None:
    """load_run of a run still going: its complete lines, no summary, a torn line ignored."""
    run = _federated(data, tmp_path / "run")
    (run.path / "summary.json").unlink()
    with (run.path / "metrics.jsonl").open("a") as fh:
        fh.write('{"round": 3, "test_acc')
    loaded = qf.load_run(run.path)
    assert not loaded.finished and len(loaded.history) == 2
    assert "unfinished, 2 rounds" in repr(loaded)
    with pytest.raises(QFedInputError, match="unfinished"):
        loaded.cnn()


def test_bad_input_is_the_clis_one_line(tmp_path: Path) -> None:
    """Unknown settings and folders without a run fail with one line naming them."""
    with pytest.raises(QFedInputError, match="unknown key 'colour'"):
        qf.train(colour="red", progress=False)
    with pytest.raises(QFedInputError, match=r"no metrics\.jsonl"):
        qf.load_run(tmp_path)


def test_cost_estimate_before_hardware() -> None:
    """estimate_cost says what an IBM run submits and is None where nothing is submitted."""
    assert qf.estimate_cost(backend="statevector") is None
    cost = qf.estimate_cost(
        backend="ibm-runtime", chunk_size=64, blocks=2, epochs=1, max_steps_per_epoch=2
    )
    assert cost is not None and cost["steps"] == 2 and cost["total_shots"] > 0
