"""IBM access: credentials from env or saved account, one-line errors, redaction, local mode."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import torch

from qfed_qiskit.circuits import qt_ansatz
from qfed_qiskit.exceptions import BackendError, CredentialsError, QFedInputError
from qfed_qiskit.quantum import ibm
from qfed_qiskit.quantum.devices import fake_backend, fake_backend_names
from qfed_qiskit.quantum.ibm import (
    RedactingFilter,
    connect_service,
    credentials_source,
    install_log_redaction,
    redact,
    runtime_sampler,
)

TOKEN = "qfedTESTtoken_" + "x7" * 20 + "_END"  # 58 token characters, never printed


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """No IBM environment variables and no saved account."""
    from qiskit_ibm_runtime.accounts import AccountManager
    from qiskit_ibm_runtime.accounts.exceptions import AccountNotFoundError

    for name in (ibm.TOKEN_ENV, ibm.INSTANCE_ENV, ibm.CHANNEL_ENV):
        monkeypatch.delenv(name, raising=False)

    def missing(*_: Any, **__: Any) -> Any:
        raise AccountNotFoundError("Unable to find account.")

    monkeypatch.setattr(AccountManager, "get", staticmethod(missing))


def test_missing_credentials_one_line_error(
    no_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """QiskitRuntimeService raising AccountNotFoundError becomes a one-line CredentialsError."""
    import qiskit_ibm_runtime
    from qiskit_ibm_runtime.accounts.exceptions import AccountNotFoundError

    def service(*_: Any, **__: Any) -> Any:
        raise AccountNotFoundError("Unable to find account.")

    monkeypatch.setattr(qiskit_ibm_runtime, "QiskitRuntimeService", service)
    with pytest.raises(CredentialsError) as info:
        connect_service()
    message = str(info.value)
    assert "\n" not in message
    assert ibm.TOKEN_ENV in message and "save_account" in message
    assert info.value.__cause__ is None


def test_real_service_without_account_one_line_error(no_credentials: None) -> None:
    """The real QiskitRuntimeService() with no account gives our one-line error (no network)."""
    with pytest.raises(CredentialsError) as info:
        connect_service()
    assert "\n" not in str(info.value)


def test_credentials_source_checks_without_network(
    no_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """credentials_source raises without env or account, reports the environment otherwise."""
    with pytest.raises(CredentialsError, match=ibm.TOKEN_ENV):
        credentials_source()
    monkeypatch.setenv(ibm.TOKEN_ENV, TOKEN)
    assert credentials_source() == "environment"


def test_bad_channel_is_rejected(no_credentials: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown QISKIT_IBM_CHANNEL is a one-line CredentialsError naming the allowed values."""
    monkeypatch.setenv(ibm.CHANNEL_ENV, "ibm_quantum")
    with pytest.raises(CredentialsError, match="ibm_quantum_platform"):
        credentials_source()


def test_connect_service_passes_environment(
    no_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Token, instance and the default channel from the environment reach the service."""
    import qiskit_ibm_runtime

    seen: dict[str, Any] = {}

    class Service:
        def __init__(self, **kwargs: Any) -> None:
            seen.update(kwargs)

    monkeypatch.setattr(qiskit_ibm_runtime, "QiskitRuntimeService", Service)
    monkeypatch.setenv(ibm.TOKEN_ENV, TOKEN)
    monkeypatch.setenv(ibm.INSTANCE_ENV, "crn:v1:bluemix:public:quantum-computing:us-east:a/1::")
    connect_service()
    assert seen["token"] == TOKEN
    assert seen["channel"] == ibm.DEFAULT_CHANNEL
    assert seen["instance"].startswith("crn:")


def test_token_never_in_errors_or_logs(
    no_credentials: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A rejected token never appears in the error, its repr, or log records."""
    import qiskit_ibm_runtime
    from qiskit_ibm_runtime.exceptions import IBMNotAuthorizedError

    def service(**kwargs: Any) -> Any:
        logging.getLogger("qiskit_ibm_runtime").warning("login with %s failed", kwargs["token"])
        raise IBMNotAuthorizedError(f"401 Unauthorized for token {kwargs['token']}")

    monkeypatch.setattr(qiskit_ibm_runtime, "QiskitRuntimeService", service)
    monkeypatch.setenv(ibm.TOKEN_ENV, TOKEN)
    install_log_redaction([caplog.handler])
    with caplog.at_level(logging.WARNING), pytest.raises(CredentialsError) as info:
        connect_service()
    for text in (str(info.value), repr(info.value), caplog.text):
        assert TOKEN not in text
    assert "***" in str(info.value) and "***" in caplog.text


def test_redact_masks_env_and_token_like_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    """redact masks the env token, registered secrets and long token-like runs, nothing else."""
    monkeypatch.setenv(ibm.TOKEN_ENV, "shortish-token")
    text = "a shortish-token b " + "A" * 44 + " job d1abc2def3 crn:v1:x:y"
    out = redact(text)
    assert "shortish-token" not in out and "A" * 44 not in out
    assert "job d1abc2def3 crn:v1:x:y" in out
    record = logging.LogRecord("x", logging.INFO, "f", 1, "tok=%s", ("shortish-token",), None)
    RedactingFilter().filter(record)
    assert "shortish-token" not in record.getMessage()


def test_fake_backend_names_and_error() -> None:
    """Fake devices resolve by several spellings; unknown names give a one-line error."""
    assert "fake_manila" in fake_backend_names() and "fake_torino" in fake_backend_names()
    assert fake_backend("FakeManilaV2").num_qubits == 5
    assert fake_backend("manila").name == fake_backend("fake_manila").name
    with pytest.raises(QFedInputError) as info:
        fake_backend("fake_nowhere")
    assert "\n" not in str(info.value) and "fake_manila" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"mode": "stream"}, "mode"), ({"shots": 0}, "shots")]
)
def test_runtime_sampler_rejects_bad_settings(kwargs: dict[str, Any], match: str) -> None:
    """Bad mode or shots are input errors."""
    with pytest.raises(QFedInputError, match=match):
        runtime_sampler(backend_name="fake_manila", **kwargs)


def test_runtime_sampler_unknown_backend_without_service_needs_credentials(
    no_credentials: None,
) -> None:
    """A real backend name without credentials fails with CredentialsError before any job."""
    with pytest.raises(CredentialsError):
        runtime_sampler(backend_name="ibm_torino")


def test_runtime_sampler_backend_lookup_error_is_backend_error() -> None:
    """A service that does not know the backend gives a BackendError."""

    class Service:
        def backend(self, name: str) -> Any:
            raise KeyError(name)

    with pytest.raises(BackendError, match="ibm_nowhere"):
        runtime_sampler(backend_name="ibm_nowhere", service=Service())


@pytest.mark.ibm
@pytest.mark.aer
@pytest.mark.parametrize("mode", ["job", "batch", "session"])
def test_runtime_sampler_local_mode_end_to_end(
    mode: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Runtime SamplerV2 in local testing mode drives the engine: forward, backward, job ids."""
    from qfed_qiskit.engines.qiskit_sampler import QiskitSamplerEngine
    from qfed_qiskit.quantum.transpile import preset_pass_manager

    monkeypatch.setenv(ibm.TOKEN_ENV, TOKEN)
    runtime = runtime_sampler(
        backend_name="fake_manila",
        mode=mode,
        shots=256,
        dynamical_decoupling=mode == "session",
        seed=1,
    )
    circuit = qt_ansatz(2, 1)
    engine = QiskitSamplerEngine(
        circuit=circuit,
        sampler=runtime.sampler,
        shots=256,
        pass_manager=preset_pass_manager(runtime.backend, seed=1),
    )
    theta = torch.zeros(circuit.num_parameters, requires_grad=True)
    with caplog.at_level(logging.DEBUG):
        probs = engine(theta)
        (probs @ torch.arange(4.0)).backward()
    runtime.close()
    assert probs.shape == (4,)
    assert abs(float(probs.detach().sum()) - 1.0) < 1e-6
    assert theta.grad is not None and torch.isfinite(theta.grad).all()
    assert len(engine.job_ids) == 2
    described = json.dumps(engine.describe())
    assert TOKEN not in described and TOKEN not in caplog.text and TOKEN not in repr(runtime)
