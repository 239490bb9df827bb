"""The noise-study benchmark scripts run and end with their JSON line (tiny settings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _last_json(*args: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def test_noise_aware_step_benchmark_runs() -> None:
    """benchmarks/noise_aware_step.py prints the ratio of every variant to the exact step."""
    out = _last_json(
        "benchmarks/noise_aware_step.py", "--blocks", "1", "--chunk-size", "1024",
        "--batch", "8", "--repeats", "1", "--warmup", "1",
    )  # fmt: skip
    assert {"trajectories M=4 ratio", "shot-aware 4096 ratio", "exact_step_ms"} <= set(out)


@pytest.mark.ibm
def test_hardware_cost_benchmark_runs() -> None:
    """benchmarks/hardware_cost.py prints QPU seconds per step for both models."""
    out = _last_json("benchmarks/hardware_cost.py", "--rounds", "1", "--clients", "2")
    paper = out["paper (13 qubits)"]
    assert isinstance(paper, dict) and paper["qubits"] == 13 and paper["qpu_s_per_step"] > 0


def test_parallel_clients_benchmark_runs() -> None:
    """benchmarks/parallel_clients.py times 1 and 2 workers and finds the same parameters."""
    out = _last_json(
        "benchmarks/parallel_clients.py", "--synthetic", "--clients", "2", "--rounds", "2",
        "--max-steps", "2", "--blocks", "1", "--chunk-size", "1024", "--batch-size", "16",
    )  # fmt: skip
    assert out["bit_identical"] is True
    runs = out["runs"]
    assert isinstance(runs, list) and [r["workers"] for r in runs] == [1, 2]


def test_peers_benchmark_runs_on_our_engine_alone() -> None:
    """benchmarks/peers.py times our engine alone (no peer needed): table, goals, JSON line."""
    proc = subprocess.run(
        [sys.executable, "benchmarks/peers.py", "--only", "ours", "--qubits", "4",
         "--blocks", "2", "--repeats", "2", "--batch", "8", "--min-seconds", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[1].split("|")[0].strip() == "engine" and "fwd+bwd ms" in lines[1]
    assert any(line.startswith("ours ") for line in lines)
    assert sum("goal:" in line and "not measured" in line for line in lines) == 2
    out = json.loads(lines[-1])
    ours = out["engines"]["ours"]
    assert (out["qubits"], out["blocks"], out["qnn_params"]) == (4, 2, 48)
    assert ours["agrees"] is True and ours["fwd_bwd_ms"] > 0 and ours["qt_step_ms"] > 0
    assert set(out["engines"]) == {"ours"} and out["goals"]["torchquantum"]["met"] is None
