"""The hardware-targeting issue's "Done when" commands, as written, on the real data (slow).

``qfed-qiskit train --backend B --chunk-size 64 --epochs 1 --max-steps-per-epoch 5`` with the
default L = 16 (7 qubits, 672 angles: 1,345 circuits x 4,096 shots per gradient): about 3 min for
``aer-noisy`` and 6 min for ``fake-torino`` on a 2-core machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qfed_qiskit.cli.main import app
from qfed_qiskit.data.fashion_mnist import find_data_dir
from qfed_qiskit.exceptions import DataError

pytestmark = [pytest.mark.slow, pytest.mark.aer, pytest.mark.ibm]


@pytest.fixture(scope="module")
def real_data() -> Path:
    """The real FashionMNIST folder (skips when it is not on this machine)."""
    try:
        return find_data_dir(download=False)
    except DataError as exc:
        pytest.skip(f"real FashionMNIST not found: {exc}")


@pytest.mark.parametrize("backend", ["aer-noisy", "fake-torino"])
def test_done_when_train_command_finishes(backend: str, real_data: Path, tmp_path: Path) -> None:
    """The command finishes and summary.json records the backend and the jobs."""
    out = tmp_path / backend
    args = [
        *("train", "--backend", backend, "--chunk-size", "64", "--epochs", "1"),
        *("--max-steps-per-epoch", "5", "--data-dir", str(real_data), "--out", str(out)),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backend"] == backend
    assert summary["steps"] == 5 and summary["engine"]["qubits"] == 7
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    (line,) = (json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines())
    assert len(line["job_ids"]) >= 10  # 5 steps x (forward + gradient) + evaluation
