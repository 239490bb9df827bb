"""ManagedSampler: the one sampler every Qiskit engine submits through.

It transpiles each circuit once, records job ids, looks every PUB batch up in the run's job
journal before paying for it (:mod:`qfed_qiskit.quantum.journal`), and retries a failed job with
backoff a bounded number of times before giving up with
:class:`~qfed_qiskit.exceptions.BackendUnavailableError`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from qiskit.circuit import QuantumCircuit
from qiskit.primitives import BaseSamplerV2
from qiskit.primitives.containers.sampler_pub import SamplerPub

from qfed_qiskit.exceptions import BackendError, BackendUnavailableError, QFedInputError
from qfed_qiskit.quantum.aer_circuits import aer_safe_circuit
from qfed_qiskit.quantum.journal import JobJournal, pub_key
from qfed_qiskit.quantum.results import check_shots
from qfed_qiskit.quantum.transpile import IsaTranspiler

logger = logging.getLogger(__name__)

JobRecorder = Callable[[str], object] | list[str]
"""Where job ids go: a list to append to, or a callable taking each id."""

PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    QFedInputError,
    TypeError,
    ValueError,
    KeyError,
    AttributeError,
    IndexError,
    NotImplementedError,
    AssertionError,
)
"""Failures that another attempt cannot fix (bad input, bugs); everything else is retried."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failed sampler job is tried again, and how long to wait between tries.

    Attributes:
        retries: Further attempts after the first (0: fail at once).
        backoff_s: Wait before the first retry; each later wait is ``factor`` times longer.
        factor: Growth of the wait.
    """

    retries: int = 2
    backoff_s: float = 2.0
    factor: float = 4.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt`` (2 = the first retry)."""
        return self.backoff_s * self.factor ** max(0, attempt - 2)


def _needs_new_session(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}".lower()
    return "closed" in text or "invalidstate" in text


class ManagedSampler(BaseSamplerV2):  # type: ignore[misc]
    """Wraps a V2 sampler: ISA-transpiles each circuit once, records job ids, sets shots.

    Everything qiskit-machine-learning submits (the ``SamplerQNN`` forward PUB and the gradient
    PUBs) goes through :meth:`run`, so:

    * each distinct circuit is transpiled once per run by ``transpiler`` (cached by circuit
      identity) and the PUB's parameter values are re-ordered for the transpiled circuit. As the
      measurements are added before transpiling, their classical bits keep the logical qubit
      order, so results need no re-mapping;
    * for Aer's ``SamplerV2``, gates Aer would leave unbound (:func:`aer_unsafe_gates`) are
      decomposed first;
    * every job's id is appended to :attr:`job_ids` (and to ``record_jobs``);
    * ``shots`` is passed to every call (``None``: the wrapped sampler's default, or exact for an
      exact sampler).

    Args:
        sampler: The V2 sampler to wrap.
        shots: Shots per parameter set, or None.
        transpiler: An :class:`IsaTranspiler` (or None: circuits run as given).
        record_jobs: A list to append job ids to, or a callable called with each id.
        journal: Where results are kept by content (None: nothing is kept).
        retry: How failed jobs are retried (default :class:`RetryPolicy`).
        reconnect: Called with the failed sampler after a closed session or batch; returns a
            working one (None: retry on the same sampler).
        retrieve: Fetches a submitted job by id (IBM Runtime's ``service.job``), to collect a job
            a previous process submitted but did not wait for (None: such work is resubmitted).
    """

    def __init__(
        self,
        sampler: BaseSamplerV2,
        *,
        shots: int | None = None,
        transpiler: IsaTranspiler | None = None,
        record_jobs: JobRecorder | None = None,
        journal: JobJournal | None = None,
        retry: RetryPolicy | None = None,
        reconnect: Callable[[BaseSamplerV2], BaseSamplerV2] | None = None,
        retrieve: Callable[[str], Any] | None = None,
    ) -> None:
        self._sampler = sampler
        self._shots = check_shots(shots)
        self._transpiler = transpiler
        self._record = record_jobs
        self._aer = any(c.__module__.startswith("qiskit_aer") for c in type(sampler).__mro__)
        self.journal = journal
        self.retry = retry or RetryPolicy()
        self._reconnect = reconnect
        self._retrieve = retrieve
        self.replayed = 0
        """Runs answered from the journal (no job submitted)."""
        self._safe: dict[int, tuple[QuantumCircuit, QuantumCircuit]] = {}
        self.job_ids: list[str] = []

    @property
    def sampler(self) -> BaseSamplerV2:
        """The wrapped sampler."""
        return self._sampler

    @property
    def shots(self) -> int | None:
        """Shots per parameter set passed to each call (None: the sampler's default)."""
        return self._shots

    @property
    def is_exact(self) -> bool:
        """Whether the wrapped sampler returns exact probabilities."""
        return bool(getattr(self._sampler, "is_exact", False))

    @property
    def options(self) -> Any:
        """The wrapped sampler's options."""
        return getattr(self._sampler, "options", None)

    @property
    def transpiler(self) -> IsaTranspiler | None:
        """The ISA transpiler, if any."""
        return self._transpiler

    def _prepare(self, pub: SamplerPub) -> tuple[Any, ...]:
        circuit = pub.circuit
        target = circuit if self._transpiler is None else self._transpiler(circuit)
        if self._aer:
            cached = self._safe.get(id(target))
            if cached is None or cached[0] is not target:
                cached = (target, aer_safe_circuit(target))
                self._safe[id(target)] = cached
            target = cached[1]
        params = list(circuit.parameters)
        if not params:
            return (target, None, pub.shots)
        values = pub.parameter_values.as_array(params)
        if target is not circuit:
            index = {p: i for i, p in enumerate(params)}
            missing = [p.name for p in target.parameters if p not in index]
            if missing:
                raise BackendError(f"transpiled circuit has unknown parameters {missing[:3]}")
            columns = [index[p] for p in target.parameters]
            values = values[..., columns]
        return (target, values, pub.shots)

    def run(self, pubs: Iterable[Any], *, shots: int | None = None) -> Any:
        """Run PUBs on the wrapped sampler (transpiled once, journaled, retried, ids recorded).

        Args:
            pubs: Sampler PUBs (circuit, optional parameter values, optional shots).
            shots: Overrides :attr:`shots` for this call.

        Returns:
            A job: its ``result()`` waits, retries, and stores the result in the journal.
        """
        prepared = [self._prepare(SamplerPub.coerce(pub)) for pub in pubs]
        chosen = shots if shots is not None else self._shots
        key = pub_key(prepared, chosen) if self.journal is not None else None
        if key is not None and self.journal is not None:
            stored = self.journal.get(key)
            if stored is not None:
                self.replayed += 1
                logger.debug("journal: %d PUBs answered without a job", len(prepared))
                return StoredJob(*stored)
            pending = self.journal.pending(key)
            if pending is not None and self._retrieve is not None:
                try:
                    job = self._retrieve(pending)
                except Exception as exc:  # gone or expired: submit it anew
                    logger.info("journal: job %s cannot be fetched (%s)", pending, exc)
                else:
                    logger.info("journal: waiting for job %s submitted before the restart", pending)
                    return ManagedJob(self, prepared, chosen, key, job=job)
        return ManagedJob(self, prepared, chosen, key)

    def _submit(self, prepared: Sequence[tuple[Any, ...]], shots: int | None) -> Any:
        """Submit once (no retry) and record the job's id."""
        sampler = self._sampler
        job = sampler.run(prepared) if shots is None else sampler.run(prepared, shots=shots)
        job_id = str(job.job_id())
        self.job_ids.append(job_id)
        if isinstance(self._record, list):
            self._record.append(job_id)
        elif self._record is not None:
            self._record(job_id)
        logger.debug("submitted sampler job %s (%d PUBs)", job_id, len(prepared))
        return job

    def _recover(self, exc: BaseException) -> None:
        """Before a retry: a closed session or batch is replaced by a new one."""
        if self._reconnect is not None and _needs_new_session(exc):
            logger.warning("sampler session closed; opening a new one")
            self._sampler = self._reconnect(self._sampler)


class StoredJob:
    """A job answered from the journal: its result is there already."""

    def __init__(self, result: Any, job_id: str) -> None:
        self._result = result
        self._job_id = job_id

    def job_id(self) -> str:
        """The id of the job that produced the stored result."""
        return self._job_id

    def result(self) -> Any:
        """The stored result."""
        return self._result


class ManagedJob:
    """One ``ManagedSampler.run`` call: submitted at once, retried in :meth:`result`.

    A failure to submit or a failed job is retried with :attr:`ManagedSampler.retry` (bad input
    and programming errors are not); after the last attempt :meth:`result` raises
    :class:`~qfed_qiskit.exceptions.BackendUnavailableError` with the last failure.
    """

    def __init__(
        self,
        owner: ManagedSampler,
        prepared: Sequence[tuple[Any, ...]],
        shots: int | None,
        key: str | None,
        *,
        job: Any | None = None,
    ) -> None:
        self._owner = owner
        self._prepared = list(prepared)
        self._shots = shots
        self._key = key
        self._attempt = 1
        self._job: Any | None = job
        self._error: BaseException | None = None
        if job is None:
            self._job = self._try(self._submit)

    def _submit(self) -> Any:
        job = self._owner._submit(self._prepared, self._shots)
        if self._key is not None and self._owner.journal is not None:
            self._owner.journal.submitted(self._key, str(job.job_id()))
        return job

    def _try(self, step: Callable[[], Any]) -> Any:
        try:
            return step()
        except PERMANENT_ERRORS:
            raise
        except Exception as exc:
            self._error = exc
            return None

    def job_id(self) -> str:
        """The id of the current attempt's job ("" when none could be submitted yet)."""
        return "" if self._job is None else str(self._job.job_id())

    def result(self) -> Any:
        """Wait for the result, retrying failures; store it in the journal."""
        policy = self._owner.retry
        while True:
            job = self._job
            if job is not None:
                result = self._try(job.result)
                if result is not None:
                    if self._key is not None and self._owner.journal is not None:
                        self._owner.journal.put(self._key, result, self.job_id())
                    return result
            error = self._error
            assert error is not None
            if self._attempt > policy.retries:
                raise BackendUnavailableError(
                    f"sampler job failed {self._attempt} time(s), last: {type(error).__name__}: "
                    f"{str(error).splitlines()[0] if str(error) else ''}"
                ) from error
            self._attempt += 1
            delay = policy.delay(self._attempt)
            logger.warning(
                "sampler job failed (%s); attempt %d of %d in %.0f s",
                type(error).__name__,
                self._attempt,
                policy.retries + 1,
                delay,
            )
            time.sleep(delay)
            self._owner._recover(error)
            self._job = self._try(self._submit)


def sampler_description(sampler: Any) -> str:
    """Short name of a sampler (class name, wrapped class for :class:`ManagedSampler`)."""
    if isinstance(sampler, ManagedSampler):
        return sampler_description(sampler.sampler)
    return type(sampler).__name__
