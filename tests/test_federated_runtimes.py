"""What every federated runtime must do the same way: faults, failed rounds, checkpoints, resume.

Each test runs on the embedded runtime and on the Flower apps (ServerApp + ClientApp code over an
in-process Grid, see tests/federated_harness.py); real Flower processes are in test_flower.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("flwr")

from qfed_qiskit.exceptions import BackendError
from qfed_qiskit.federated import ClientFn, client_fit, load_checkpoint
from qfed_qiskit.federated.checkpoint import PARTIAL_NAME
from qfed_qiskit.federated.core import sample_clients
from qfed_qiskit.training import RunDirectory
from tests import federated_harness as harness
from tests.faults import CallLog, FaultPlan
from tests.idx_utils import write_idx_dataset

REPO = Path(__file__).resolve().parents[1]
BASE: dict[str, Any] = {
    "model": "classical",
    "clients": 3,
    "rounds": 3,
    "local-epochs": 2,
    "batch-size": 32,
    "lr": 3e-3,
    "seed": 5,
    "fraction-fit": 0.67,
    "plateau-patience": 1,
    "data-check": "relaxed",
}
QT: dict[str, Any] = {"model": "qt", "blocks": 1, "chunk-size": 64, "lr": 1e-2}
FAULT_CONFIG: dict[str, Any] = {"fraction-fit": 1.0, "rounds": 2}
FAULT_ROUND = 2
SLOW_TIMEOUT = 3.0  # generous: a healthy client takes well under a second here


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small synthetic FashionMNIST IDX files (240 training, 100 test images)."""
    return write_idx_dataset(tmp_path_factory.mktemp("idx"), 240, 100, seed=4)


def _config(data_dir: Path, out: Path, **overrides: Any) -> dict[str, Any]:
    return {**BASE, **overrides, "data-dir": str(data_dir), "out": str(out)}


def _params(run_dir: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = torch.load(run_dir / "model.pt", weights_only=True)
    return state


def _assert_same_params(a: Path, b: Path) -> None:
    pa, pb = _params(a), _params(b)
    assert pa.keys() == pb.keys()
    for name in pa:
        assert torch.equal(pa[name], pb[name]), name


def _metrics(run_dir: Path) -> list[dict[str, Any]]:
    return RunDirectory(run_dir).read_metrics()


def _faulty(faults: dict[tuple[int, int], str], **kwargs: Any) -> ClientFn:
    return FaultPlan(faults, **kwargs).wrap(client_fit)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict[str, Path]:
    """Uninterrupted 3-round runs (classical and QT), embedded, to compare every run against."""
    out = {}
    for name, extra in (("classical", {}), ("qt", QT)):
        path = tmp_path_factory.mktemp(f"ref-{name}")
        harness.run("embedded", _config(data_dir, path, **extra))
        out[name] = path
    return out


@pytest.fixture(scope="module")
def dropped(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """Client 1 raises in round 2 (embedded): what every rejected client must amount to."""
    path = tmp_path_factory.mktemp("dropped")
    config = _config(data_dir, path, **FAULT_CONFIG)
    harness.run("embedded", config, client_fn=_faulty({(FAULT_ROUND, 1): "raise"}))
    return path


@pytest.mark.parametrize("runtime", harness.RUNTIMES)
def test_runtimes_give_the_reference_run(
    tmp_path: Path, data_dir: Path, reference: dict[str, Path], runtime: str
) -> None:
    """The same config gives the same rounds, metrics and parameters on every runtime."""
    summary = harness.run(runtime, _config(data_dir, tmp_path))
    _assert_same_params(tmp_path, reference["classical"])
    lines, ref = _metrics(tmp_path), _metrics(reference["classical"])
    keys = ("round", "clients_sampled", "accepted", "test_accuracy", "train_loss", "client_lr")
    keys += ("bytes_down", "bytes_up", "steps", "status")
    assert [[r[k] for k in keys] for r in lines] == [[r[k] for k in keys] for r in ref]
    assert summary["runtime"] == ("embedded" if runtime in harness.WORKERS else runtime)
    assert summary.get("workers") == harness.WORKERS.get(runtime) and summary["rounds"] == 3
    assert not (tmp_path / PARTIAL_NAME).exists()  # removed with each round's checkpoint


@pytest.mark.parametrize("runtime", harness.RUNTIMES)
@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("raise", "InjectedFault"),
        ("nan", "non-finite"),
        ("shape", "shape"),
        ("dtype", "dtype"),
        ("names", "names differ"),
        ("norm", "exceeds the bound"),
        ("slow", "timed out"),
    ],
)
def test_fault_is_rejected_recorded_and_harmless(
    tmp_path: Path, data_dir: Path, dropped: Path, runtime: str, kind: str, reason: str
) -> None:
    """A misbehaving client is dropped with its reason; the model equals the clean-drop run."""
    timeout = SLOW_TIMEOUT if kind == "slow" else 0  # does not change the numbers
    config = _config(data_dir, tmp_path, **FAULT_CONFIG, **{"round-timeout": timeout})
    # A Flower client cannot be told to stop: the slow one sleeps past the timeout, then ends.
    plan = _faulty({(FAULT_ROUND, 1): kind}, slow_seconds=2 * SLOW_TIMEOUT)
    harness.run(runtime, config, client_fn=plan)
    lines = _metrics(tmp_path)
    assert lines[0]["clients_ok"] == 3 and lines[0]["rejected"] == []
    bad = lines[1]
    assert bad["status"] == "ok" and bad["clients_ok"] == 2 and bad["accepted"] == [0, 2]
    assert bad["clients_rejected"] == 1
    assert bad["rejected"][0]["client"] == 1 and reason in bad["rejected"][0]["reason"]
    _assert_same_params(tmp_path, dropped)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["clients_rejected_total"] == 1


@pytest.mark.parametrize("runtime", harness.RUNTIMES)
def test_round_below_min_clients_fails_and_keeps_model(
    tmp_path: Path, data_dir: Path, runtime: str
) -> None:
    """Too few valid updates: the round is recorded as failed and the global model stays."""
    cfg = {**FAULT_CONFIG, "min-clients": 3}
    one_round = tmp_path / "one"
    harness.run("embedded", _config(data_dir, one_round, **{**cfg, "rounds": 1}))
    failed = tmp_path / "failed"
    harness.run(runtime, _config(data_dir, failed, **cfg), client_fn=_faulty({(2, 2): "nan"}))
    lines = _metrics(failed)
    assert lines[1]["status"] == "failed" and "min_clients=3" in lines[1]["failure"]
    assert lines[1]["test_accuracy"] == lines[0]["test_accuracy"]
    _assert_same_params(failed, one_round)
    assert json.loads((failed / "summary.json").read_text())["rounds_failed"] == 1


@pytest.mark.parametrize("runtime", harness.RUNTIMES)
@pytest.mark.parametrize("model", ["classical", "qt"])
def test_resume_is_bit_identical(
    tmp_path: Path, data_dir: Path, reference: dict[str, Path], runtime: str, model: str
) -> None:
    """2 rounds, then resume to 3 rounds == 3 rounds uninterrupted (torch.equal)."""
    extra = QT if model == "qt" else {}
    harness.run(runtime, _config(data_dir, tmp_path, **{**extra, "rounds": 2}))
    assert load_checkpoint(tmp_path).round == 2
    summary = harness.run(runtime, _config(data_dir, tmp_path, **extra), resume=True)
    _assert_same_params(tmp_path, reference[model])
    lines, ref_lines = _metrics(tmp_path), _metrics(reference[model])
    assert [r["round"] for r in lines] == [1, 2, 3]
    assert [r["test_accuracy"] for r in lines] == [r["test_accuracy"] for r in ref_lines]
    assert lines[2]["resumed_after"] == 2
    assert summary["rounds"] == 3 and summary["resumed"] is True


class _Interrupt:
    """Raises KeyboardInterrupt when round 3 starts (as Ctrl-C would)."""

    def on_phase_start(self, name: str, total_steps: int) -> None:
        if name.startswith("round 3/"):
            raise KeyboardInterrupt

    def on_step(self, loss: float) -> None:
        pass

    def on_phase_end(self, name: str, metrics: dict[str, Any]) -> None:
        pass

    def on_message(self, text: str) -> None:
        if text.startswith("round 3/"):
            raise KeyboardInterrupt


@pytest.mark.parametrize("runtime", harness.RUNTIMES)
def test_keyboard_interrupt_leaves_last_round_resumable(
    tmp_path: Path, data_dir: Path, reference: dict[str, Path], runtime: str
) -> None:
    """Ctrl-C during round 3 keeps the round-2 checkpoint; resuming matches the full run."""
    config = _config(data_dir, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        harness.run(runtime, config, callback=_Interrupt())
    assert load_checkpoint(tmp_path).round == 2
    assert len(_metrics(tmp_path)) == 2
    harness.run(runtime, config, resume=True)
    _assert_same_params(tmp_path, reference["classical"])


@pytest.mark.parametrize("runtime", harness.RUNTIMES)
def test_backend_down_stops_the_run_and_resume_redoes_only_what_is_missing(
    tmp_path: Path, data_dir: Path, reference: dict[str, Path], runtime: str
) -> None:
    """A client whose backend stays unavailable stops the run with a --resume hint; the replies
    already received are kept, and the resumed run asks only the clients without one."""
    config = _config(data_dir, tmp_path)
    sampled = sample_clients(3, fraction=0.67, min_clients=1, seed=5, server_round=2)
    down = sampled[0]
    backend_down = _faulty({(2, down): "unavailable"})
    with pytest.raises(BackendError, match=f"--resume {tmp_path}"):
        harness.run(runtime, config, client_fn=backend_down)
    assert load_checkpoint(tmp_path).round == 1
    log = CallLog(str(tmp_path / "calls.log"))
    harness.run(runtime, config, client_fn=log, resume=True)
    _assert_same_params(tmp_path, reference["classical"])
    asked_again = [cid for rnd, cid in log.calls if rnd == 2]
    # Clients in this process run in turn, so those after the failed one had not run; clients
    # side by side (workers, Flower) had.
    expected = sampled if runtime == "embedded" else [down]
    assert sorted(asked_again) == expected


_KILL_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import torch
    from tests import federated_harness as harness
    from tests.faults import FaultPlan, MarkerFile
    from qfed_qiskit.federated import client_fit

    if __name__ == "__main__":
        runtime, config_json, marker, fault_client, threads = sys.argv[1:6]
        torch.set_num_threads(int(threads))
        plan = FaultPlan({(2, int(fault_client)): "slow"}, on_fault=MarkerFile(marker))
        harness.run(runtime, json.loads(config_json), client_fn=plan.wrap(client_fit))
    """
)


def _wait_for(marker: Path, proc: subprocess.Popen[bytes], *, settle: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 120
    while not (marker.exists() and settle()):
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            pytest.fail(f"worker exited early: {err[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail("worker never reached round 2")
        time.sleep(0.05)


@pytest.mark.parametrize("runtime", harness.RUNTIMES)
def test_sigkill_mid_round_then_resume(
    tmp_path: Path, data_dir: Path, reference: dict[str, Path], runtime: str
) -> None:
    """A process killed with SIGKILL in round 2 resumes to the same final model, and the clients
    that had answered in round 2 are not asked again."""
    run_dir = tmp_path / "run"
    config = _config(data_dir, run_dir)
    marker = tmp_path / "in-round-2"
    sampled = sample_clients(3, fraction=0.67, min_clients=1, seed=5, server_round=2)
    victim = sampled[-1]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _KILL_SCRIPT,
            runtime,
            json.dumps(config),
            str(marker),
            str(victim),
            str(torch.get_num_threads()),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        # Kill once the others' replies of round 2 are stored (they are, before the victim
        # starts, in the embedded runtime; Flower's clients run side by side).
        _wait_for(marker, proc, settle=lambda: (run_dir / PARTIAL_NAME).exists())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert load_checkpoint(run_dir).round == 1
    log = CallLog(str(tmp_path / "calls.log"))
    summary = harness.run(runtime, config, client_fn=log, resume=True)
    _assert_same_params(run_dir, reference["classical"])
    lines = _metrics(run_dir)
    assert [r["round"] for r in lines] == [1, 2, 3] and lines[1]["resumed_after"] == 1
    assert summary["resumed"] is True
    assert [cid for rnd, cid in log.calls if rnd == 2] == [victim]


def test_dead_worker_is_that_clients_failure(tmp_path: Path, data_dir: Path, dropped: Path) -> None:
    """A worker process killed mid-round is its client's rejection (not a hang); the run goes on
    with a new worker and ends where the clean-drop run ends."""
    config = _config(data_dir, tmp_path, **FAULT_CONFIG)
    harness.run("workers", config, client_fn=_faulty({(FAULT_ROUND, 1): "die"}))
    bad = _metrics(tmp_path)[1]
    assert bad["accepted"] == [0, 2]
    assert bad["rejected"] == [{"client": 1, "reason": "worker process died (killed by SIGKILL)"}]
    _assert_same_params(tmp_path, dropped)


def test_resume_may_change_the_number_of_workers(
    tmp_path: Path, data_dir: Path, reference: dict[str, Path]
) -> None:
    """2 rounds in this process, then resumed on 2 worker processes: the reference run."""
    harness.run("embedded", _config(data_dir, tmp_path, rounds=2))
    harness.run("workers", _config(data_dir, tmp_path), resume=True)
    _assert_same_params(tmp_path, reference["classical"])
