"""The job journal: sampler results kept on disk by content, so that a resumed run never pays twice.

Every PUB batch a :class:`~qfed_qiskit.quantum.managed.ManagedSampler` submits gets a key, the
SHA-256 of what decides its result: the circuits' structure (gate names, angles as expressions,
qubits; not Qiskit's random parameter ids), the parameter values and the shots. Before submitting,
the sampler looks the key up: a stored result is returned without a job; a job that was submitted
but whose result never arrived (the process died) is reattached where the backend can fetch jobs by
id (IBM Runtime). A resumed run repeats its steps with the same parameter values, so each finished
PUB of the interrupted work is found here instead of being paid again.

Results are stored as ``.npz`` files (no pickle): bit arrays, or exact probabilities, per register.
The federated server clears the journal whenever it writes a checkpoint, so it only ever holds the
work of the round in progress.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from qiskit.circuit import QuantumCircuit
from qiskit.primitives import PrimitiveResult, SamplerPubResult
from qiskit.primitives.containers import BitArray, DataBin

from qfed_qiskit.files import atomic_write_bytes
from qfed_qiskit.quantum.results import ExactSamplerPubResult, ProbabilityArray

logger = logging.getLogger(__name__)

_FINGERPRINTS: dict[int, tuple[QuantumCircuit, bytes]] = {}
_FINGERPRINT_CACHE = 128


def circuit_fingerprint(circuit: QuantumCircuit) -> bytes:
    """A digest of the circuit's structure, equal for equal circuits built in any process.

    Qiskit gives every ``Parameter`` a random id, so serialisers that keep it (QPY) differ between
    processes; this digest uses gate names, qubit and clbit indices and each angle as a string
    (parameter names and expressions), which is what decides the circuit's results.
    """
    cached = _FINGERPRINTS.get(id(circuit))
    if cached is not None and cached[0] is circuit:
        return cached[1]
    digest = hashlib.sha256()
    digest.update(f"{circuit.num_qubits}/{circuit.num_clbits}/{circuit.global_phase}".encode())
    for inst in circuit.data:
        qubits = [circuit.find_bit(q).index for q in inst.qubits]
        clbits = [circuit.find_bit(c).index for c in inst.clbits]
        params = [str(p) for p in getattr(inst.operation, "params", [])]
        label = getattr(inst.operation, "label", None)
        digest.update(repr((inst.operation.name, label, qubits, clbits, params)).encode())
    value = digest.digest()
    _FINGERPRINTS[id(circuit)] = (circuit, value)
    while len(_FINGERPRINTS) > _FINGERPRINT_CACHE:
        _FINGERPRINTS.pop(next(iter(_FINGERPRINTS)))
    return value


def pub_key(pubs: Sequence[tuple[Any, ...]], shots: int | None) -> str:
    """The journal key of one ``run`` call: circuits, parameter values and shots of every PUB.

    Args:
        pubs: ``(circuit, values or None, pub shots or None)`` tuples, as submitted.
        shots: The call's shots (None: the sampler's default).
    """
    digest = hashlib.sha256(f"shots={shots}".encode())
    for pub in pubs:
        circuit, values = pub[0], pub[1] if len(pub) > 1 else None
        pub_shots = pub[2] if len(pub) > 2 else None
        digest.update(circuit_fingerprint(circuit))
        if values is not None:
            array = np.ascontiguousarray(np.asarray(values, dtype=np.float64))
            digest.update(repr(array.shape).encode())
            digest.update(array.tobytes())
        digest.update(f"|{pub_shots}|".encode())
    return digest.hexdigest()


def key_seed(key: str) -> list[int]:
    """Integers derived from a key, to seed shot sampling by content (see ExactAerSampler)."""
    return [int(key[i : i + 8], 16) for i in range(0, 32, 8)]


# --------------------------------------------------------------------------------------------
# Result codec: PrimitiveResult <-> arrays + JSON, no pickle
# --------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return None
    return value


def encode_result(result: Any) -> bytes:
    """``.npz`` bytes holding every PUB result's registers and JSON-able metadata."""
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    meta: list[dict[str, Any]] = []
    for i, pub in enumerate(result):
        fields: dict[str, Any] = {}
        for name in pub.data:
            value = pub.data[name]
            if isinstance(value, ProbabilityArray):
                arrays[f"{i}.{name}"] = value.probabilities
                fields[name] = {"kind": "probabilities", "num_bits": value.num_bits}
            elif isinstance(value, BitArray):
                arrays[f"{i}.{name}"] = np.asarray(value.array)
                fields[name] = {"kind": "bits", "num_bits": value.num_bits}
            else:
                raise TypeError(f"cannot store sampler data of type {type(value).__name__}")
        metadata = {k: _jsonable(v) for k, v in dict(pub.metadata).items()}
        meta.append({"fields": fields, "shape": list(pub.data.shape), "metadata": metadata})
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def decode_result(data: bytes) -> PrimitiveResult[SamplerPubResult]:
    """Inverse of :func:`encode_result`."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        meta = json.loads(npz["meta"].tobytes().decode())
        pubs: list[SamplerPubResult] = []
        for i, entry in enumerate(meta):
            shape = tuple(entry["shape"])
            values: dict[str, Any] = {}
            exact = False
            for name, spec in entry["fields"].items():
                array = npz[f"{i}.{name}"]
                if spec["kind"] == "probabilities":
                    values[name] = ProbabilityArray(array, int(spec["num_bits"]))
                    exact = True
                else:
                    values[name] = BitArray(array, int(spec["num_bits"]))
            cls = ExactSamplerPubResult if exact else SamplerPubResult
            pubs.append(cls(DataBin(**values, shape=shape), metadata=entry["metadata"]))
    return PrimitiveResult(pubs, metadata={"version": 2, "journal": True})


class JobJournal:
    """Sampler results of one run, by :func:`pub_key`, in ``folder``.

    Args:
        folder: Where the entries live (created on first write), e.g. ``<run>/jobs``.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def _path(self, key: str, suffix: str) -> Path:
        return self.folder / f"{key}{suffix}"

    def get(self, key: str) -> tuple[PrimitiveResult[SamplerPubResult], str] | None:
        """The stored result of ``key`` and the id of the job that produced it, if any."""
        path = self._path(key, ".npz")
        if not path.is_file():
            return None
        try:
            result = decode_result(path.read_bytes())
        except Exception as exc:  # a torn or foreign file: the work is simply done again
            logger.warning("job journal entry %s unreadable (%s)", path.name, type(exc).__name__)
            return None
        job_file = self._path(key, ".job")
        job_id = job_file.read_text(encoding="utf-8").strip() if job_file.is_file() else ""
        return result, job_id

    def pending(self, key: str) -> str | None:
        """The id of a job submitted for ``key`` whose result was never stored."""
        job_file = self._path(key, ".job")
        if self._path(key, ".npz").is_file() or not job_file.is_file():
            return None
        return job_file.read_text(encoding="utf-8").strip() or None

    def submitted(self, key: str, job_id: str) -> None:
        """Record that ``job_id`` computes ``key`` (before waiting for it)."""
        atomic_write_bytes(self._path(key, ".job"), job_id.encode())

    def put(self, key: str, result: Any, job_id: str) -> None:
        """Store the result of ``key``."""
        self.submitted(key, job_id)
        atomic_write_bytes(self._path(key, ".npz"), encode_result(result))

    def __len__(self) -> int:
        return len(list(self.folder.glob("*.npz"))) if self.folder.is_dir() else 0

    def clear(self) -> None:
        """Forget every entry (their work is in a checkpoint now)."""
        if self.folder.is_dir():
            shutil.rmtree(self.folder, ignore_errors=True)

    def __repr__(self) -> str:
        return f"JobJournal({os.fspath(self.folder)!r})"
