"""qfed-qiskit noise-sweep and report: outputs, ranges, resumption, one-line errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from qfed_qiskit.cli.main import app
from qfed_qiskit.data import fashion_mnist as fm
from qfed_qiskit.exceptions import QFedInputError
from qfed_qiskit.study.sweep import parse_levels, parse_modes, parse_shots
from tests.idx_utils import write_idx_dataset

runner = CliRunner()

CONFIG = """model = "qt"
blocks = 1
chunk-size = 1024
clients = 2
rounds = 2
local-epochs = 1
batch-size = 64
max-steps-per-epoch = 3
lr = 0.05
seed = 1
out = "runs/unused"
"""


@pytest.fixture(autouse=True)
def _small_is_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fm, "FULL_SIZES", (512, 200))


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    data = write_idx_dataset(tmp_path / "idx", 512, 200, seed=3)
    config = tmp_path / "sweep.toml"
    config.write_text(CONFIG)
    return data, config


def _sweep(data: Path, config: Path, out: Path, *extra: str) -> Any:
    args = ["noise-sweep", "--config", str(config), "--out", str(out), "--data-dir", str(data)]
    return runner.invoke(app, [*args, *extra])


@pytest.mark.aer
def test_sweep_writes_every_cell_and_resumes_without_redoing_any(
    setup: tuple[Path, Path], tmp_path: Path
) -> None:
    """Levels x shots x modes (+ a device): csv, md and png; a second run recomputes nothing."""
    data, config = setup
    out = tmp_path / "sweep"
    flags = ("--levels", "0,1e-2", "--shots", "100,exact", "--repeats", "2")
    flags += ("--devices", "fake-torino")
    result = _sweep(data, config, out, *flags)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    # ideal: 2 levels x 2 shots + 1 device; noise-aware at 1e-2: 1 level x 2 shots + 1 device
    assert len(rows) == 8
    for row in rows:
        assert 0.0 <= float(row["accuracy_mean"]) <= 1.0
        assert 0.0 <= float(row["tv_distance_mean"]) <= 1.0
    exact_ideal = [
        r for r in rows if r["model"] == "ideal" and r["level"] == "0.0" and r["shots"] == "0"
    ]
    assert float(exact_ideal[0]["tv_distance_mean"]) < 1e-6
    summary = json.loads((out / "train" / "ideal" / "summary.json").read_text())
    assert float(exact_ideal[0]["accuracy_mean"]) == summary["test_accuracy"]
    noisy_run = json.loads((out / "train" / "noise-aware-0.01" / "summary.json").read_text())
    assert noisy_run["engine"]["engine"] == "pauli-trajectories"
    assert (out / "sweep.png").stat().st_size > 10_000 and "| ideal |" in (
        out / "sweep.md"
    ).read_text()
    cells = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    assert len(cells) == 8
    again = _sweep(data, config, out, *flags)
    assert again.exit_code == 0, again.output
    assert "accuracy" not in again.output.replace("sweep.md", "")  # no cell was evaluated again
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")} == cells


def test_shot_aware_mode_trains_with_shot_frequencies(
    setup: tuple[Path, Path], tmp_path: Path
) -> None:
    """--modes shot-aware: one model per finite shot count, on the shot-aware engine."""
    data, config = setup
    out = tmp_path / "shots"
    result = _sweep(
        data, config, out, "--modes", "shot-aware", "--levels", "0", "--shots", "100,exact"
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "train").iterdir()) == ["shot-aware-100"]
    summary = json.loads((out / "train" / "shot-aware-100" / "summary.json").read_text())
    assert summary["engine"]["shots"] == 100 and summary["engine"]["engine"] == "statevector"
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert [(r["model"], r["shots"]) for r in rows] == [
        ("shot-aware-100", "100"),
        ("shot-aware-100", "0"),
    ]


def test_a_sweep_folder_of_another_plan_is_refused(
    setup: tuple[Path, Path], tmp_path: Path
) -> None:
    """An unfinished sweep folder from another config is one line, not a mix of two sweeps."""
    data, config = setup
    out = tmp_path / "sweep"
    (out).mkdir()
    (out / "sweep.json").write_text(json.dumps({"fingerprint": "another", "plan": {}}))
    result = _sweep(data, config, out, "--levels", "0", "--shots", "exact")
    assert result.exit_code == 2 and "holds a sweep of another plan" in result.output


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--levels", "0,abc"], "--levels: 'abc' is not a number"),
        (["--levels", "1.5"], "--levels: 1.5 is outside [0, 0.1]"),
        (["--levels", "-1e-3"], "outside [0, 0.1]"),
        (["--shots", "0"], "--shots: 0 (expected a whole number >= 1, or 'exact')"),
        (["--shots", "1e3,many"], "--shots: 'many' is not a number or 'exact'"),
        (["--devices", "fake-nowhere"], "fake-nowhere"),
        (["--devices", "aer-noisy"], "is a 'aer' profile, not a fake device"),
        (["--modes", "magic"], "--modes: magic (allowed: ideal-train, noise-aware, shot-aware)"),
    ],
)
def test_bad_sweep_options_are_one_line(
    setup: tuple[Path, Path], tmp_path: Path, flags: list[str], fragment: str
) -> None:
    """Each bad option: one error line naming it, exit code 2, nothing trained."""
    data, config = setup
    result = _sweep(data, config, tmp_path / "sweep", *flags)
    assert result.exit_code == 2, result.output
    assert fragment in result.output and "Traceback" not in result.output
    assert not (tmp_path / "sweep" / "train").exists()


def test_option_parsers() -> None:
    """Levels and shots are sorted and deduplicated; 'exact' is 0 and sorts last."""
    assert parse_levels("1e-3, 0,1e-3") == (0.0, 1e-3)
    assert parse_shots("exact,1e4,1000") == (1000, 10000, 0)
    assert parse_modes("noise-aware,ideal-train") == ("ideal-train", "noise-aware")
    with pytest.raises(QFedInputError):
        parse_levels("")


def test_report_plots_a_finished_and_a_partial_run(
    setup: tuple[Path, Path], tmp_path: Path
) -> None:
    """report writes report.md and PNGs for a run; also when it has only some rounds so far."""
    data, config = setup
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        ["train", "--config", str(config), "--data-dir", str(data), "--out", str(out), "--json"],
    )
    assert result.exit_code == 0, result.output
    done = runner.invoke(app, ["report", "--run", str(out)])
    assert done.exit_code == 0, done.output
    text = (out / "report" / "report.md").read_text()
    assert "Finished: test accuracy" in text and "![client_lr](client_lr.png)" in text
    for name in ("accuracy_loss.png", "clients_bytes.png", "client_lr.png"):
        assert (out / "report" / name).stat().st_size > 5_000
    (out / "summary.json").unlink()
    lines = (out / "metrics.jsonl").read_text().splitlines()
    (out / "metrics.jsonl").write_text(lines[0] + "\n" + lines[1][:20])  # a torn second line
    partial = runner.invoke(app, ["report", "--run", str(out)])
    assert partial.exit_code == 0, partial.output
    assert "Unfinished run: 1 round(s) so far." in (out / "report" / "report.md").read_text()
    missing = runner.invoke(app, ["report", "--run", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "no metrics.jsonl" in missing.output
