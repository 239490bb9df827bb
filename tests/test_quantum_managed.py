"""ManagedSampler: retries with backoff, one-line failure, the job journal, no work paid twice."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from qfed_qiskit.circuits import qt_ansatz
from qfed_qiskit.config import TrainConfig
from qfed_qiskit.exceptions import BackendError, BackendUnavailableError
from qfed_qiskit.federated import load_checkpoint, resume_fingerprint, run_federated
from qfed_qiskit.federated.checkpoint import load_partial_round
from qfed_qiskit.profiles import engine_factory_for, load_backend_profile
from qfed_qiskit.quantum.devices import aer_sampler
from qfed_qiskit.quantum.journal import JobJournal, circuit_fingerprint, pub_key
from qfed_qiskit.quantum.managed import ManagedSampler, RetryPolicy
from qfed_qiskit.quantum.results import pub_probabilities
from qfed_qiskit.training import RunDirectory
from tests.idx_utils import synthetic_images

pytestmark = pytest.mark.aer

NO_WAIT = RetryPolicy(retries=2, backoff_s=0.0)


class FlakySampler:
    """A V2 sampler that fails on purpose: calls numbered in ``fail_submit`` raise at ``run``,
    those in ``fail_result`` return a job whose ``result()`` raises; everything else is Aer's.
    ``closed`` marks the error as a closed session. Counts every call."""

    def __init__(
        self,
        *,
        fail_submit: Iterable[int] = (),
        fail_result: Iterable[int] = (),
        error: type[Exception] = RuntimeError,
        message: str = "connection reset by peer",
        inner: Any | None = None,
    ) -> None:
        self.inner = inner or aer_sampler(shots=512, seed=3)
        self.fail_submit = set(fail_submit)
        self.fail_result = set(fail_result)
        self.error = error
        self.message = message
        self.calls = 0
        self.pubs_run = 0

    def run(self, pubs: Any, *, shots: int | None = None) -> Any:
        self.calls += 1
        if self.calls in self.fail_submit:
            raise self.error(self.message)
        pubs = list(pubs)
        self.pubs_run += len(pubs)
        job = self.inner.run(pubs) if shots is None else self.inner.run(pubs, shots=shots)
        if self.calls in self.fail_result:
            return _FailingJob(job.job_id(), self.error(self.message))
        return job


class _FailingJob:
    def __init__(self, job_id: str, error: Exception) -> None:
        self._id, self._error = job_id, error

    def job_id(self) -> str:
        return f"failed-{self._id}"

    def result(self) -> Any:
        raise self._error


def _pub(theta_seed: int = 0) -> tuple[Any, np.ndarray]:
    circuit = qt_ansatz(3, 1)
    circuit.measure_all()
    values = np.random.default_rng(theta_seed).uniform(-3, 3, circuit.num_parameters)
    return circuit, values


def test_transient_failures_are_retried_and_recorded() -> None:
    """A failed submit and a failed job are tried again; every attempt's job id is recorded."""
    flaky = FlakySampler(fail_submit=[1], fail_result=[2])
    managed = ManagedSampler(flaky, shots=512, retry=NO_WAIT)
    result = managed.run([_pub()]).result()
    assert flaky.calls == 3
    assert pub_probabilities(result[0]).sum() == pytest.approx(1.0)
    assert len(managed.job_ids) == 2 and managed.job_ids[0].startswith("failed-")


def test_backend_down_after_retries_is_one_line() -> None:
    """Retries are bounded; then BackendUnavailableError names the attempts and the last error."""
    flaky = FlakySampler(fail_submit=range(1, 100))
    managed = ManagedSampler(flaky, shots=512, retry=RetryPolicy(retries=2, backoff_s=0.0))
    job = managed.run([_pub()])
    with pytest.raises(BackendUnavailableError) as info:
        job.result()
    assert flaky.calls == 3
    message = str(info.value)
    assert message == "sampler job failed 3 time(s), last: RuntimeError: connection reset by peer"
    assert isinstance(info.value, BackendError)


def test_backoff_grows_between_attempts() -> None:
    """The waits grow by the policy's factor (2 s, then 8 s by default)."""
    policy = RetryPolicy()
    assert [policy.delay(a) for a in (2, 3, 4)] == [2.0, 8.0, 32.0]


def test_bad_input_is_not_retried() -> None:
    """A programming or input error fails at once: another attempt cannot fix it."""
    flaky = FlakySampler(fail_submit=[1], error=ValueError, message="bad circuit")
    with pytest.raises(ValueError, match="bad circuit"):
        ManagedSampler(flaky, shots=512, retry=NO_WAIT).run([_pub()])
    assert flaky.calls == 1


def test_closed_session_is_replaced_before_the_retry() -> None:
    """After a closed-session error the sampler asks for a new one and retries on it."""
    closed = FlakySampler(fail_result=[1], message="Session is closed")
    fresh = FlakySampler()
    asked: list[Any] = []

    def reconnect(failed: Any) -> Any:
        asked.append(failed)
        return fresh

    managed = ManagedSampler(closed, shots=512, retry=NO_WAIT, reconnect=reconnect)
    managed.run([_pub()]).result()
    assert asked == [closed] and closed.calls == 1 and fresh.calls == 1


def test_journal_answers_a_repeated_pub_without_a_job(tmp_path: Path) -> None:
    """A PUB whose result is in the journal is not submitted again, in a new process as well."""
    journal = JobJournal(tmp_path / "jobs")
    first = FlakySampler()
    circuit, values = _pub()
    result = ManagedSampler(first, shots=512, journal=journal).run([(circuit, values)]).result()
    assert first.calls == 1 and len(journal) == 1
    # A new circuit object with new Parameter ids, as a restarted process would build.
    rebuilt, _ = _pub()
    assert circuit_fingerprint(rebuilt) == circuit_fingerprint(circuit)
    second = FlakySampler()
    managed = ManagedSampler(second, shots=512, journal=JobJournal(tmp_path / "jobs"))
    again = managed.run([(rebuilt, values)]).result()
    assert second.calls == 0 and managed.replayed == 1
    np.testing.assert_array_equal(pub_probabilities(again[0]), pub_probabilities(result[0]))
    other = managed.run([(rebuilt, values + 0.1)]).result()
    assert second.calls == 1 and pub_probabilities(other[0]).shape == (1, 8)


def test_journal_reattaches_a_job_submitted_before_a_restart(tmp_path: Path) -> None:
    """A job whose id was journaled but whose result never came is fetched, not resubmitted."""
    journal = JobJournal(tmp_path / "jobs")
    circuit, values = _pub()
    inner = aer_sampler(shots=512, seed=3)
    job = inner.run([(circuit, values)], shots=512)
    journal.submitted(pub_key([(circuit, values, None)], 512), "job-42")
    fetched: list[str] = []

    def retrieve(job_id: str) -> Any:
        fetched.append(job_id)
        return job

    never = FlakySampler(fail_submit=range(1, 100))
    managed = ManagedSampler(never, shots=512, journal=journal, retrieve=retrieve)
    result = managed.run([(circuit, values)]).result()
    assert fetched == ["job-42"] and never.calls == 0
    assert journal.get(pub_key([(circuit, values, None)], 512)) is not None
    assert pub_probabilities(result[0]).sum() == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------
# A federated run on a sampler backend: stop on a dead backend, resume without paying twice
# --------------------------------------------------------------------------------------------


def _data(n: int, seed: int) -> Any:
    from torch.utils.data import TensorDataset

    labels = np.random.default_rng(seed).integers(0, 10, n)
    images = synthetic_images(labels, seed=seed).astype(np.float32) / 255.0
    return TensorDataset(torch.from_numpy(images[:, None]), torch.from_numpy(labels))


CONFIG = TrainConfig(
    model="qt",
    backend="aer-ideal",
    blocks=1,
    chunk_size=1024,
    clients=2,
    rounds=2,
    local_epochs=1,
    batch_size=16,
    max_steps_per_epoch=3,
    lr=0.05,
    seed=2,
    workers=1,  # the failing sampler is this process's: clients train here, one after another
)
"""3 qubits, 2 clients x 3 steps per round: each step is one forward and one gradient job."""


def _run(tmp_path: Path, name: str, sampler: FlakySampler, *, resume: bool = False) -> Any:
    profile = dataclasses.replace(load_backend_profile("aer-ideal"), shots=512, retry_backoff=0.0)
    factory = engine_factory_for(profile, config=CONFIG)
    assert factory is not None
    factory.shared(3).sampler = sampler  # the run's one sampler, failing on purpose
    config = dataclasses.replace(CONFIG, out=str(tmp_path / name))
    return run_federated(
        config,
        train=_data(64, 1),
        test=_data(32, 2),
        run_dir=RunDirectory(tmp_path / name),
        engine_factory=factory,
        resume=resume,
    )


def test_dead_backend_stops_the_run_and_resume_pays_nothing_twice(tmp_path: Path) -> None:
    """The sampler dies in round 2, in the middle of client 1's local training: the run stops
    with a --resume hint; the resumed run submits only the work that had not been done, and ends
    exactly where an uninterrupted run ends."""
    healthy = FlakySampler()
    _run(tmp_path, "reference", healthy)
    first_round = len(RunDirectory(tmp_path / "reference").read_metrics()[0]["job_ids"])
    # Client 0 trains first in round 2 (2 steps, a forward and a gradient job each; PUBs equal
    # to one already run are answered by the journal), then client 1: its 5th call of the round
    # is in client 1's local training.
    dying = FlakySampler(fail_submit=range(first_round + 5, 10_000))
    with pytest.raises(BackendError, match=f"--resume {tmp_path / 'run'}"):
        _run(tmp_path, "run", dying)
    done_before = dying.calls - 3  # the last call and its 2 retries failed
    assert load_checkpoint(tmp_path / "run").round == 1
    stored = load_partial_round(
        tmp_path / "run", server_round=2, fingerprint=resume_fingerprint(CONFIG)
    )
    assert sorted(stored) == [0]  # client 0 had answered; client 1 was training
    assert len(JobJournal(tmp_path / "run" / "jobs")) == done_before - first_round
    resumed = FlakySampler()
    _run(tmp_path, "run", resumed, resume=True)
    assert resumed.calls == healthy.calls - done_before  # nothing already paid for is redone
    ref = torch.load(tmp_path / "reference" / "model.pt", weights_only=True)
    got = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    for name in ref:
        assert torch.equal(ref[name], got[name]), name
    assert not (tmp_path / "run" / "jobs").exists()  # emptied with the last checkpoint


def test_cli_says_in_one_line_that_the_backend_is_down_and_how_to_continue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train on a backend that keeps failing: exit 1, one line with the attempts and --resume."""
    from typer.testing import CliRunner

    from qfed_qiskit.cli.main import app
    from qfed_qiskit.data import fashion_mnist as fm
    from qfed_qiskit.quantum import devices
    from tests.idx_utils import write_idx_dataset

    monkeypatch.setattr(fm, "FULL_SIZES", (64, 32))
    data = write_idx_dataset(tmp_path / "data", 64, 32, seed=3)
    profile = tmp_path / "flaky.toml"
    profile.write_text(
        'schema = 1\nname = "flaky"\nkind = "aer"\nshots = 256\nretries = 1\nretry-backoff = 0\n'
    )
    monkeypatch.setattr(devices, "aer_sampler", lambda **_: FlakySampler(fail_submit=range(1, 99)))
    out = tmp_path / "run"
    args = ["train", "--backend", str(profile), "--data-dir", str(data), "--out", str(out)]
    args += ["--clients", "2", "--rounds", "1", "--blocks", "1", "--chunk-size", "1024"]
    args += ["--workers", "1"]  # the failing sampler is this process's
    result = CliRunner().invoke(app, [*args, "--max-steps-per-epoch", "1"])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output
    assert "sampler job failed 2 time(s), last: RuntimeError: connection reset" in lines[0]
    assert f"--resume {out}" in result.output
    assert load_checkpoint(out).round == 0  # so that --resume can continue the first round
