"""The qfed-qiskit command line: inspect, train outputs, reproducibility and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from qfed_qiskit.cli.main import app
from qfed_qiskit.data import fashion_mnist as fm
from qfed_qiskit.models import TargetCNN
from tests.idx_utils import write_idx_dataset

runner = CliRunner()


@pytest.fixture
def small_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A 512/200-sample synthetic data set accepted as 'full size' for these tests."""
    monkeypatch.setattr(fm, "FULL_SIZES", (512, 200))
    return write_idx_dataset(tmp_path / "data", 512, 200, seed=3)


def test_inspect_json_paper_sizes() -> None:
    """inspect --json reports the paper's counts."""
    result = runner.invoke(app, ["inspect", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["qubits"] == 13
    assert report["target_params"] == 6690
    assert report["qnn_params"] == 1248
    assert report["mapping_params"] == 249
    assert report["trainable_params"] == 1497
    assert report["compression"] == pytest.approx(0.776, abs=5e-4)
    assert report["two_qubit_gates"] == 13 * 16
    assert report["circuit_depth"] > 0


def test_inspect_chunked() -> None:
    """A chunk size of 64 needs 7 qubits."""
    result = runner.invoke(app, ["inspect", "--chunk-size", "64", "--blocks", "2", "--json"])
    report = json.loads(result.output)
    assert (report["qubits"], report["qnn_params"]) == (7, 84)


def _train(data: Path, out: Path, *extra: str) -> dict[str, object]:
    args = ["train", "--data-dir", str(data), "--out", str(out), "--json", *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary: dict[str, object] = json.loads(result.output.strip().splitlines()[-1])
    return summary


def test_train_writes_outputs(small_data: Path, tmp_path: Path) -> None:
    """train writes metrics.jsonl per epoch, summary.json, model.pt and a usable cnn.pt."""
    out = tmp_path / "run"
    summary = _train(
        small_data,
        out,
        "--epochs",
        "2",
        "--blocks",
        "1",
        "--chunk-size",
        "64",
        "--batch-size",
        "64",
        "--max-steps-per-epoch",
        "3",
    )
    for key in (
        "test_accuracy",
        "test_loss",
        "trainable_params",
        "target_params",
        "wall_time_s",
        "steps",
        "config",
    ):
        assert key in summary
    assert 0.0 <= float(summary["test_accuracy"]) <= 1.0  # type: ignore[arg-type]
    assert summary["steps"] == 6
    assert summary["target_params"] == 6690
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["test_accuracy"] == summary["test_accuracy"]
    cnn = TargetCNN()
    cnn.load_state_dict(torch.load(out / "cnn.pt"))  # plain state dict, no qfed classes needed
    qt_state = torch.load(out / "model.pt")
    assert qt_state["qnn_weights"].numel() == 6 * 7 * 1


def test_train_is_reproducible(small_data: Path, tmp_path: Path) -> None:
    """Same seed -> same accuracy, loss and parameters on the CPU."""
    args = (
        "--epochs",
        "1",
        "--blocks",
        "1",
        "--chunk-size",
        "64",
        "--max-steps-per-epoch",
        "3",
        "--seed",
        "5",
    )
    a = _train(small_data, tmp_path / "a", *args)
    b = _train(small_data, tmp_path / "b", *args)
    assert (a["test_accuracy"], a["test_loss"]) == (b["test_accuracy"], b["test_loss"])
    sa, sb = torch.load(tmp_path / "a" / "model.pt"), torch.load(tmp_path / "b" / "model.pt")
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_classical_learns_synthetic_data(small_data: Path, tmp_path: Path) -> None:
    """The classical path trains and learns the synthetic classes (a test that can fail)."""
    summary = _train(
        small_data, tmp_path / "c", "--model", "classical", "--epochs", "3", "--batch-size", "32"
    )
    assert float(summary["test_accuracy"]) > 0.5  # type: ignore[arg-type]
    assert summary["trainable_params"] == 6690


def test_config_file_and_flag_precedence(small_data: Path, tmp_path: Path) -> None:
    """--config supplies values; explicit flags win."""
    config = tmp_path / "c.toml"
    config.write_text('model = "classical"\nepochs = 2\nmax-steps-per-epoch = 2\n')
    summary = _train(small_data, tmp_path / "r", "--config", str(config), "--epochs", "1")
    assert summary["steps"] == 2
    assert summary["model"] == "classical"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--epochs", "0"], "epochs=0"),
        (["--model", "resnet"], "model='resnet'"),
        (["--partition", "weird", "--clients", "2"], "partition='weird'"),
        (["--config", "missing.toml"], "missing.toml: config file not found"),
    ],
)
def test_bad_options_one_line(args: list[str], fragment: str, tmp_path: Path) -> None:
    """Bad input: one error line, exit code 2, no traceback."""
    result = runner.invoke(app, ["train", "--data-dir", str(tmp_path), *args])
    assert result.exit_code == 2
    assert fragment in result.output
    assert "Traceback" not in result.output


def test_train_refuses_a_folder_that_holds_a_run(small_data: Path, tmp_path: Path) -> None:
    """A second train into the same --out is refused in one line; --overwrite replaces it."""
    out = tmp_path / "run"
    flags = ("--model", "classical", "--epochs", "1", "--max-steps-per-epoch", "1")
    _train(small_data, out, *flags)
    before = (out / "summary.json").read_bytes()
    args = ["train", "--data-dir", str(small_data), "--out", str(out), *flags]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert f"--out {out} already holds a finished run" in result.output
    assert "--overwrite" in result.output and "Traceback" not in result.output
    assert (out / "summary.json").read_bytes() == before  # nothing was touched
    summary = _train(small_data, out, *flags, "--seed", "1", "--overwrite")
    assert summary["config"]["seed"] == 1  # type: ignore[index]


@pytest.mark.parametrize("where", ["file", "below-file"])
def test_train_out_that_cannot_be_a_folder_is_one_line(
    small_data: Path, tmp_path: Path, where: str
) -> None:
    """--out naming a file, or a folder below a file, is one line before any work is done."""
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    out = blocker if where == "file" else blocker / "run"
    args = ["train", "--data-dir", str(small_data), "--out", str(out), "--epochs", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert f"--out {out}" in result.output and "expected a folder" in result.output
    assert "Traceback" not in result.output


def test_train_help_shows_every_declared_setting_with_its_default() -> None:
    """Every declared setting is a --flag whose help ends with its declared default."""
    import click
    import typer.main

    from qfed_qiskit.config import SETTINGS

    command = typer.main.get_command(app)
    assert isinstance(command, click.Group)
    train = command.commands["train"]
    options = {opt: param for param in train.params for opt in param.opts}
    for spec in SETTINGS.values():
        param = options.get(f"--{spec.key}")
        assert param is not None, f"--{spec.key} missing"
        assert param.default is None  # unset flags leave the config file's value alone
        help_text = getattr(param, "help", "") or ""
        assert help_text.endswith(f"[default: {spec.shown_default}]"), (spec.key, help_text)
    assert SETTINGS["lr"].shown_default == "qt 0.0001, classical 0.001"
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert "Adam learning rate. [default: qt 0.0001, classical 0.001]" in result.output


def test_bad_data_dir_is_one_line_from_the_real_binary(tmp_path: Path) -> None:
    """The installed console script prints one red error line for a folder without data."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "qfed_qiskit.cli",
            "train",
            "--data-dir",
            str(tmp_path / "none"),
            "--epochs",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:") and "folder not found" in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout


def test_corrupt_data_is_one_line(small_data: Path, tmp_path: Path) -> None:
    """A corrupt data file gives one line naming the file."""
    path = small_data / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    result = runner.invoke(app, ["train", "--data-dir", str(small_data), "--epochs", "1"])
    assert result.exit_code == 1
    assert "train-images-idx3-ubyte.gz" in result.output


def test_version() -> None:
    """--version prints the package version."""
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and "qfed-qiskit" in result.output


def test_progress_prints_lines_without_a_terminal() -> None:
    """Piped output gets plain progress lines (a bar cannot be drawn), at most one per interval."""
    import io

    from rich.console import Console

    from qfed_qiskit.cli.progress import RichProgress

    now = [0.0]  # an injected clock: the lines must not depend on time since boot

    def clock() -> float:
        return now[0]

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=120)
    with RichProgress(console=console, line_interval_s=0.0, clock=clock) as progress:
        progress.on_phase_start("epoch 1", 2)
        progress.on_step(2.5)
        progress.on_step(2.25)
    lines = buffer.getvalue().splitlines()
    assert any("epoch 1: step 1/2  loss 2.5000" in line for line in lines)
    assert any("epoch 1: step 2/2  loss 2.2500" in line for line in lines)
    buffer.seek(0)
    buffer.truncate(0)
    with RichProgress(console=console, line_interval_s=30.0, clock=clock) as progress:
        for phase in ("client 0", "client 1"):
            progress.on_phase_start(phase, 2)
            progress.on_step(2.5)
            now[0] += 10.0
            progress.on_step(2.0)
        assert buffer.getvalue().count("step") == 1  # the first step only, then one per interval
        now[0] += 11.0  # 31 s after the first line
        progress.on_step(1.5)
    assert buffer.getvalue().count("step") == 2


def test_progress_prints_the_first_line_right_after_boot() -> None:
    """A clock that reads less than the interval (a machine just booted) still gets a first line."""
    import io

    from rich.console import Console

    from qfed_qiskit.cli.progress import RichProgress

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=120)
    with RichProgress(console=console, line_interval_s=30.0, clock=lambda: 5.0) as progress:
        progress.on_phase_start("epoch 1", 3)
        progress.on_step(2.5)
    assert "epoch 1: step 1/3" in buffer.getvalue()


@pytest.mark.aer
def test_train_on_noisy_aer_records_backend_and_jobs(small_data: Path, tmp_path: Path) -> None:
    """train --backend aer-noisy: summary names the backend; each epoch line lists its jobs."""
    out = tmp_path / "noisy"
    summary = _train(
        small_data,
        out,
        *("--backend", "aer-noisy", "--epochs", "2", "--blocks", "1"),
        *("--chunk-size", "1024", "--batch-size", "64", "--max-steps-per-epoch", "2"),
    )
    assert summary["backend"] == "aer-noisy"
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    per_epoch = [line["job_ids"] for line in lines]
    # 2 steps x (forward + gradient) per epoch, plus the evaluation forward
    assert all(len(ids) >= 4 for ids in per_epoch)
    every = summary["job_ids"]
    assert isinstance(every, list)
    joined = [job for ids in per_epoch for job in ids]
    # the summary also has the job that generated the saved CNN's weights after the last epoch
    assert joined == every[: len(joined)] and len(every) - len(joined) <= 1
    assert len(set(summary["job_ids"])) == len(summary["job_ids"])  # type: ignore[arg-type]
    plain = tmp_path / "plain"
    _train(small_data, plain, "--epochs", "1", "--blocks", "1", "--max-steps-per-epoch", "1")
    assert "job_ids" not in json.loads((plain / "metrics.jsonl").read_text())
