"""IBM Quantum access: credentials from the environment or a saved account; Runtime samplers."""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from qfed_qiskit.exceptions import BackendError, CredentialsError, QFedInputError

logger = logging.getLogger(__name__)

TOKEN_ENV = "QISKIT_IBM_TOKEN"
INSTANCE_ENV = "QISKIT_IBM_INSTANCE"
CHANNEL_ENV = "QISKIT_IBM_CHANNEL"
DEFAULT_CHANNEL = "ibm_quantum_platform"
CHANNELS = ("ibm_quantum_platform", "ibm_cloud")
RUNTIME_MODES = ("job", "batch", "session")

_HOW_TO = (
    f"set {TOKEN_ENV} (and {INSTANCE_ENV}, optionally {CHANNEL_ENV}={DEFAULT_CHANNEL}) or save an "
    "account with QiskitRuntimeService.save_account(...)"
)
_MASK = "***"
# Long opaque strings (API keys: 44 characters; legacy IBM Quantum tokens: 128 hex digits).
_TOKEN_LIKE = re.compile(r"(?<![A-Za-z0-9_\-])[A-Za-z0-9_\-]{40,}(?![A-Za-z0-9_\-])")
_extra_secrets: set[str] = set()


def register_secret(secret: str) -> None:
    """Make :func:`redact` mask ``secret`` from now on (ignored when empty or very short)."""
    if secret and len(secret) >= 8:
        _extra_secrets.add(secret)


def redact(text: object) -> str:
    """``str(text)`` with IBM tokens masked.

    Masks the value of ``QISKIT_IBM_TOKEN``, every secret given to :func:`register_secret`, and
    any run of 40 or more token characters (API keys and legacy tokens look like that).
    """
    out = str(text)
    secrets = set(_extra_secrets)
    env_token = os.environ.get(TOKEN_ENV, "")
    if len(env_token) >= 8:
        secrets.add(env_token)
    for secret in sorted(secrets, key=len, reverse=True):
        out = out.replace(secret, _MASK)
    return _TOKEN_LIKE.sub(_MASK, out)


class RedactingFilter(logging.Filter):
    """A logging filter that applies :func:`redact` to every record's formatted message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg = clean
            record.args = None
        return True


def install_log_redaction(
    loggers: Iterable[logging.Logger | logging.Handler] | None = None,
) -> None:
    """Add a :class:`RedactingFilter` to the root logger's handlers (or to the given ones).

    Filters on handlers see records from every logger, including ``qiskit_ibm_runtime``'s.
    """
    targets: list[Any] = (
        list(loggers) if loggers is not None else list(logging.getLogger().handlers)
    )
    for target in targets:
        if not any(isinstance(f, RedactingFilter) for f in target.filters):
            target.addFilter(RedactingFilter())


def _credentials_error(exc: BaseException | None, what: str) -> CredentialsError:
    detail = f" ({redact(exc).splitlines()[0]})" if exc is not None and str(exc) else ""
    return CredentialsError(f"IBM Quantum credentials {what}{detail}; {_HOW_TO}")


def _env_channel() -> str | None:
    channel = os.environ.get(CHANNEL_ENV) or None
    if channel is not None and channel not in CHANNELS:
        raise CredentialsError(
            f"{CHANNEL_ENV}={channel!r} is not a valid channel (allowed: {', '.join(CHANNELS)})"
        )
    return channel


def credentials_source() -> str:
    """Where IBM credentials will come from, checked without network access.

    Returns:
        ``"environment"`` when ``QISKIT_IBM_TOKEN`` is set, else ``"saved account"``.

    Raises:
        CredentialsError: If neither is available (one line saying how to set them).
    """
    channel = _env_channel()
    if os.environ.get(TOKEN_ENV):
        register_secret(os.environ[TOKEN_ENV])
        return "environment"
    from qiskit_ibm_runtime.accounts import AccountManager
    from qiskit_ibm_runtime.accounts.exceptions import AccountsError

    try:
        account = AccountManager.get(channel=channel)
    except AccountsError as exc:
        raise _credentials_error(exc, "not found") from None
    except Exception as exc:  # unreadable or malformed account file
        raise _credentials_error(exc, "could not be read") from None
    register_secret(getattr(account, "token", "") or "")
    return "saved account"


def connect_service() -> Any:
    """A ``QiskitRuntimeService`` from the environment variables or Qiskit's saved account.

    ``QISKIT_IBM_TOKEN`` (with ``QISKIT_IBM_INSTANCE`` and ``QISKIT_IBM_CHANNEL``, default
    ``"ibm_quantum_platform"``) takes precedence; otherwise ``QiskitRuntimeService()`` loads the
    saved default account (of ``QISKIT_IBM_CHANNEL`` if set). The token is never logged.

    Raises:
        CredentialsError: If no credentials are found or they are rejected (one line, redacted).
    """
    from qiskit_ibm_runtime import QiskitRuntimeService
    from qiskit_ibm_runtime.accounts.exceptions import AccountsError
    from qiskit_ibm_runtime.exceptions import IBMAccountError, IBMNotAuthorizedError

    channel = _env_channel()
    token = os.environ.get(TOKEN_ENV) or None
    instance = os.environ.get(INSTANCE_ENV) or None
    if token:
        register_secret(token)
    try:
        if token:
            return QiskitRuntimeService(
                channel=channel or DEFAULT_CHANNEL, token=token, instance=instance
            )
        if channel is not None:
            return QiskitRuntimeService(channel=channel, instance=instance)
        return QiskitRuntimeService(instance=instance) if instance else QiskitRuntimeService()
    except (AccountsError, IBMAccountError) as exc:
        raise _credentials_error(exc, "not found or invalid") from None
    except IBMNotAuthorizedError as exc:
        raise _credentials_error(exc, "were rejected") from None
    except Exception as exc:  # network or API errors: keep the type, drop any token
        raise CredentialsError(
            f"could not connect to IBM Quantum: {type(exc).__name__}: "
            f"{redact(exc).splitlines()[0] if str(exc) else ''}"
        ) from None


class RuntimeSampler(NamedTuple):
    """What :func:`runtime_sampler` returns.

    Attributes:
        sampler: A ``qiskit_ibm_runtime.SamplerV2``.
        backend: The backend it runs on (circuits must be ISA circuits for it).
        close: Closes the session or batch (a no-op in job mode); call it when done.
    """

    sampler: Any
    backend: Any
    close: Callable[[], None]


def _noop() -> None:
    return None


def _runtime_sampler_class() -> tuple[Any, bool]:
    """The Runtime sampler class, and whether it is the client-side one (0.50+)."""
    try:
        from qiskit_ibm_runtime.executor_sampler import Sampler
    except ImportError:  # qiskit-ibm-runtime < 0.50
        from qiskit_ibm_runtime import SamplerV2

        return SamplerV2, False
    return Sampler, True


def runtime_sampler(
    *,
    backend_name: str,
    mode: str = "job",
    shots: int = 4096,
    dynamical_decoupling: bool = False,
    twirling: bool = False,
    service: Any | None = None,
    seed: int | None = None,
) -> RuntimeSampler:
    """A Qiskit Runtime V2 sampler for an IBM backend, or for a fake one in local testing mode.

    Uses qiskit-ibm-runtime's client-side ``executor_sampler.Sampler`` (the replacement of the
    ``SamplerV2`` class deprecated in 0.50; same V2 interface and options), or ``SamplerV2`` on
    older versions. For ``backend_name`` naming a fake device (``"fake_manila"``, ...), the sampler
    runs in local testing mode (``mode=FakeManilaV2()``): no account or network, same code path.
    Otherwise the backend comes from ``service`` (default :func:`connect_service`).

    Args:
        backend_name: IBM backend name (``"ibm_torino"``) or a fake device name.
        mode: ``"job"`` (each run is its own job), ``"batch"`` or ``"session"``.
        shots: Shots per parameter set (``options.default_shots``).
        dynamical_decoupling: ``options.dynamical_decoupling.enable``.
        twirling: ``options.twirling.enable_gates`` and ``enable_measure``.
        service: A ``QiskitRuntimeService`` to use instead of connecting.
        seed: Simulator seed in local testing mode (ignored on hardware).

    Returns:
        A :class:`RuntimeSampler` ``(sampler, backend, close)``.

    Raises:
        QFedInputError: For a bad mode or shots.
        CredentialsError: If credentials are needed and missing.
        BackendError: If the backend cannot be found.
    """
    from qiskit_ibm_runtime import Batch, Session

    if mode not in RUNTIME_MODES:
        raise QFedInputError(f"mode must be one of {RUNTIME_MODES}, got {mode!r}")
    if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
        raise QFedInputError(f"IBM Runtime needs shots >= 1, got {shots!r}")
    local = backend_name.strip().lower().startswith("fake")
    if local:
        from qfed_qiskit.quantum.devices import fake_backend

        backend = fake_backend(backend_name)
    else:
        service = service if service is not None else connect_service()
        try:
            backend = service.backend(backend_name)
        except Exception as exc:
            raise BackendError(
                f"IBM backend {backend_name!r} is not available: {redact(exc).splitlines()[0]}"
            ) from exc

    close: Callable[[], None] = _noop
    target: Any = backend
    if mode == "session":
        session = Session(backend=backend)
        target, close = session, session.close
    elif mode == "batch":
        batch = Batch(backend=backend)
        target, close = batch, batch.close
    sampler_class, client_side = _runtime_sampler_class()
    sampler = sampler_class(mode=target)
    sampler.options.default_shots = shots
    if local and not client_side and (dynamical_decoupling or twirling):
        warnings.warn(
            "dynamical_decoupling and twirling have no effect in local testing mode with "
            "qiskit-ibm-runtime < 0.50; ignored",
            stacklevel=2,
        )
    else:
        sampler.options.dynamical_decoupling.enable = bool(dynamical_decoupling)
        sampler.options.twirling.enable_gates = bool(twirling)
        sampler.options.twirling.enable_measure = bool(twirling)
    if local and seed is not None:
        sampler.options.simulator.seed_simulator = seed
    elif seed is not None:
        warnings.warn("seed has no effect on IBM hardware; ignored", stacklevel=2)
    logger.info("IBM Runtime sampler on %s (%s mode, %d shots)", backend.name, mode, shots)
    return RuntimeSampler(sampler=sampler, backend=backend, close=close)
