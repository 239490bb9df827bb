"""ManagedSampler: the one sampler every Qiskit engine submits through (transpile once, job ids)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from qiskit.circuit import QuantumCircuit
from qiskit.primitives import BaseSamplerV2
from qiskit.primitives.containers.sampler_pub import SamplerPub

from qfed_qiskit.exceptions import BackendError, QFedInputError
from qfed_qiskit.quantum.aer_circuits import aer_safe_circuit
from qfed_qiskit.quantum.results import check_shots
from qfed_qiskit.quantum.transpile import IsaTranspiler

logger = logging.getLogger(__name__)

JobRecorder = Callable[[str], object] | list[str]
"""Where job ids go: a list to append to, or a callable taking each id."""


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
    """

    def __init__(
        self,
        sampler: BaseSamplerV2,
        *,
        shots: int | None = None,
        transpiler: IsaTranspiler | None = None,
        record_jobs: JobRecorder | None = None,
    ) -> None:
        self._sampler = sampler
        self._shots = check_shots(shots)
        self._transpiler = transpiler
        self._record = record_jobs
        self._aer = any(c.__module__.startswith("qiskit_aer") for c in type(sampler).__mro__)
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
        """Run PUBs on the wrapped sampler (transpiled once, job id recorded).

        Args:
            pubs: Sampler PUBs (circuit, optional parameter values, optional shots).
            shots: Overrides :attr:`shots` for this call.

        Returns:
            The wrapped sampler's job.
        """
        prepared = [self._prepare(SamplerPub.coerce(pub)) for pub in pubs]
        chosen = shots if shots is not None else self._shots
        try:
            if chosen is None:
                job = self._sampler.run(prepared)
            else:
                job = self._sampler.run(prepared, shots=chosen)
        except QFedInputError:
            raise
        except Exception as exc:
            raise BackendError(f"sampler run failed: {type(exc).__name__}: {exc}") from exc
        job_id = str(job.job_id())
        self.job_ids.append(job_id)
        if isinstance(self._record, list):
            self._record.append(job_id)
        elif self._record is not None:
            self._record(job_id)
        logger.debug("submitted sampler job %s (%d PUBs)", job_id, len(prepared))
        return job


def sampler_description(sampler: Any) -> str:
    """Short name of a sampler (class name, wrapped class for :class:`ManagedSampler`)."""
    if isinstance(sampler, ManagedSampler):
        return sampler_description(sampler.sampler)
    return type(sampler).__name__
