"""qfed-qiskit evaluate: a trained run's accuracy with its QNN on other backends."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from qfed_qiskit.cli.main import app
from qfed_qiskit.data import fashion_mnist as fm
from tests.idx_utils import write_idx_dataset

runner = CliRunner()
SMALL_QT = ("--blocks", "1", "--chunk-size", "1024", "--batch-size", "64", "--lr", "0.05")
"""3 qubits: fast on every backend."""


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_idx_dataset(tmp_path_factory.mktemp("idx"), 512, 200, seed=3)


@pytest.fixture(autouse=True)
def _small_is_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fm, "FULL_SIZES", (512, 200))


def _cli(*args: str) -> Any:
    return runner.invoke(app, list(args))


def _ok(*args: str) -> dict[str, Any]:
    result = _cli(*args, "--json")
    assert result.exit_code == 0, result.output
    out: dict[str, Any] = json.loads(result.output.strip().splitlines()[-1])
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, data: Path) -> Path:
    """A federated 2-client QT run on the small data."""
    out = tmp_path_factory.mktemp("runs") / "fed"
    pytest.MonkeyPatch().setattr(fm, "FULL_SIZES", (512, 200))
    _ok(
        "train", "--data-dir", str(data), "--out", str(out), *SMALL_QT,
        "--clients", "2", "--rounds", "2", "--local-epochs", "1", "--max-steps-per-epoch", "3",
    )  # fmt: skip
    return out


def test_exact_backend_reproduces_the_runs_own_accuracy(trained: Path) -> None:
    """On the exact engine the regenerated CNN is the run's: the same accuracy, no distance."""
    report = _ok("evaluate", "--run", str(trained), "--backend", "statevector", "--repeats", "2")
    summary = json.loads((trained / "summary.json").read_text())
    assert report["accuracy_mean"] == summary["test_accuracy"] == report["exact_accuracy"]
    assert report["accuracy_std"] == 0.0 and report["tv_distance_mean"] < 1e-6  # float32 run
    assert report["weight_rel_l2_mean"] < 1e-6
    assert report["method"] == "exact statevector (torch)"
    assert (trained / "eval" / "statevector.json").is_file()


@pytest.mark.aer
def test_shots_on_aer_repeat_with_fresh_shots_in_one_job(trained: Path) -> None:
    """K repeats of S shots: K accuracies in [0, 1], a spread, a TV distance > 0, one job."""
    report = _ok(
        "evaluate", "--run", str(trained), "--backend", "aer-noisy",
        "--shots", "64", "--repeats", "4", "--seed", "2",
    )  # fmt: skip
    assert len(report["accuracies"]) == 4 and all(0 <= a <= 1 for a in report["accuracies"])
    assert len(set(report["accuracies"])) > 1 or report["accuracy_std"] == 0.0
    assert 0 < report["tv_distance_mean"] <= 1 and report["weight_rel_l2_mean"] > 0
    assert report["shots"] == 64 and "exact density matrix (Aer" in report["method"]
    assert (trained / "eval" / "aer-noisy-64.json").is_file()
    exact = _ok("evaluate", "--run", str(trained), "--backend", "aer-ideal", "--shots", "0")
    assert exact["accuracy_mean"] == pytest.approx(exact["exact_accuracy"], abs=0.006)
    assert exact["tv_distance_mean"] < 1e-6


@pytest.mark.ibm
def test_ibm_runtime_local_testing_mode_is_one_job(trained: Path, tmp_path: Path) -> None:
    """ibm-runtime on a fake device (local testing mode): the cost line, one job, accuracies."""
    profile = tmp_path / "ibm-fake.toml"
    profile.write_text(
        'schema = 1\nname = "ibm-fake"\nkind = "ibm-runtime"\ndevice = "fake_manila"\n'
        'shots = 128\nmode = "job"\n'
    )
    result = _cli(
        "evaluate", "--run", str(trained), "--backend", str(profile), "--repeats", "3", "--json"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert len(report["job_ids"]) == 1 and len(report["accuracies"]) == 3
    assert "local testing mode on fake_manila" in report["method"]
    assert "384 shots" in result.output  # the cost line: 128 shots x 3 repeats, one job


def test_checkpointed_run_is_evaluated_from_its_checkpoint(trained: Path, tmp_path: Path) -> None:
    """A run without model.pt (stopped early) is evaluated from its global parameters."""
    partial = tmp_path / "partial"
    shutil.copytree(trained, partial, ignore=shutil.ignore_patterns("summary.json", "model.pt"))
    report = _ok("evaluate", "--run", str(partial), "--backend", "statevector")
    assert report["parameters"] == "checkpoint.pt (round 2)"
    assert (
        report["accuracy_mean"]
        == json.loads((trained / "summary.json").read_text())["test_accuracy"]
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--backend", "statevector", "--shots", "-1"], "--shots -1 (expected an integer >= 1"),
        (["--backend", "statevector", "--repeats", "0"], "--repeats 0 (expected an integer >= 1)"),
        (["--backend", "no-such-backend"], "no-such-backend"),
    ],
)
def test_bad_input_is_one_line(trained: Path, args: list[str], fragment: str) -> None:
    """Bad shots, repeats or backend: one error line, exit code 2."""
    result = _cli("evaluate", "--run", str(trained), *args)
    assert result.exit_code == 2, result.output
    assert fragment in result.output and "Traceback" not in result.output


def test_folder_without_parameters_is_one_line(tmp_path: Path) -> None:
    """A folder with no model.pt or checkpoint says what it needs."""
    result = _cli("evaluate", "--run", str(tmp_path), "--backend", "statevector")
    assert result.exit_code == 2 and "no trained parameters" in result.output


def test_model_too_large_for_the_method_says_the_limit_and_the_alternative(
    data: Path, tmp_path: Path
) -> None:
    """13 qubits on the torch density matrix: the 10-qubit limit and what to use instead."""
    out = tmp_path / "paper"
    _ok(
        "train", "--data-dir", str(data), "--out", str(out), "--blocks", "1",
        "--epochs", "1", "--max-steps-per-epoch", "1",
    )  # fmt: skip
    result = _cli("evaluate", "--run", str(out), "--backend", "density-matrix")
    assert result.exit_code == 2
    assert "at most 10 qubits, this model has 13" in result.output
    assert "aer-noisy" in result.output and "trajectories" in result.output


def test_noisy_shots_of_a_large_model_use_aer_trajectories() -> None:
    """From 11 qubits, noisy Aer shots come from per-shot trajectories (same counts, faster);
    exact probabilities, small models and explicit methods keep the density matrix."""
    from qfed_qiskit.profiles import load_backend_profile
    from qfed_qiskit.study.evaluate import fast_sampling, simulation_method

    noisy = load_backend_profile("aer-noisy")
    assert fast_sampling(noisy, 13).method == "statevector"
    assert "one per shot" in simulation_method(fast_sampling(noisy, 13), 13)
    assert fast_sampling(noisy, 7).method == "automatic"
    exact = with_shots_zero(noisy)
    assert fast_sampling(exact, 13).method == "automatic"
    assert "1 GiB" in simulation_method(exact, 13)


def with_shots_zero(profile: Any) -> Any:
    from qfed_qiskit.study.evaluate import with_shots

    return with_shots(profile, 0)
