"""``qfed-qiskit backends`` and ``inspect --backend``: listings, step cost keys, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from qfed_qiskit.cli.main import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
SHIPPED_BACKENDS = sorted(p.stem for p in (ROOT / "backends").glob("*.toml"))
SHIPPED_NOISE = sorted(p.stem for p in (ROOT / "noise_models").glob("*.toml"))
BACKEND_KEYS = {
    "backend",
    "isa_depth",
    "isa_two_qubit_gates",
    "circuits_per_step",
    "shots_per_step",
}


def test_backends_json_lists_every_shipped_profile() -> None:
    """backends --json is a list of objects with name, kind and description, one per profile."""
    result = runner.invoke(app, ["backends", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [row["name"] for row in rows] == SHIPPED_BACKENDS
    for row in rows:
        assert {"name", "kind", "description", "schema"} <= set(row)
        assert row["description"] and "\n" not in row["description"]


def test_backends_table_and_noise_listing() -> None:
    """The table names every profile; --noise lists the noise models."""
    result = runner.invoke(app, ["backends"])
    assert result.exit_code == 0, result.output
    for name in SHIPPED_BACKENDS:
        assert name in result.output
    noise = runner.invoke(app, ["backends", "--noise", "--json"])
    assert noise.exit_code == 0, noise.output
    assert [row["name"] for row in json.loads(noise.output)] == SHIPPED_NOISE


def test_inspect_backend_adds_step_cost_keys() -> None:
    """inspect --backend aer-ideal --json adds ISA size and circuits/shots per step."""
    args = ["inspect", "--backend", "aer-ideal", "--chunk-size", "64", "--blocks", "2", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert set(report) >= BACKEND_KEYS
    assert report["qubits"] == 7 and report["backend"] == "aer-ideal"
    assert report["circuits_per_step"] == 197
    assert report["shots_per_step"] == 197 * 4096
    assert report["isa_two_qubit_gates"] == report["two_qubit_gates"]


def test_inspect_statevector_backend_is_exact() -> None:
    """The exact engine submits no circuits."""
    result = runner.invoke(app, ["inspect", "--backend", "statevector", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["circuits_per_step"] == 0 and report["shots_per_step"] == 0 and report["exact"]


def test_inspect_without_backend_has_no_backend_keys() -> None:
    """Without --backend the foundation's keys are unchanged."""
    result = runner.invoke(app, ["inspect", "--json"])
    assert result.exit_code == 0, result.output
    assert not BACKEND_KEYS & set(json.loads(result.output))


def test_inspect_unknown_or_bad_backend_one_line_error(tmp_path: Path) -> None:
    """Unknown names and invalid profile files exit 2 with one red line, no traceback."""
    result = runner.invoke(app, ["inspect", "--backend", "no-such-backend"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "unknown backend profile" in lines[0] and "aer-ideal" in lines[0]
    bad = tmp_path / "bad.toml"
    bad.write_text('schema = 1\nkind = "aer"\nshots = -1\n')
    result = runner.invoke(app, ["inspect", "--backend", str(bad)])
    assert result.exit_code == 2
    output = result.output.replace("\n", "")
    assert str(bad) in output and "shots=-1" in output and "Traceback" not in output
