"""Sampler results: exact-probability containers, shot samples, and their statistics."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import NDArray
from qiskit.primitives import SamplerPubResult
from qiskit.primitives.containers import BitArray

from qfed_qiskit.exceptions import BackendError, QFedInputError

_MAX_DENSE_BITS = 24


def check_shots(shots: int | None) -> int | None:
    """``shots`` as an int, or None for exact probabilities (``None`` or ``0``).

    Raises:
        QFedInputError: If ``shots`` is not None or an integer >= 0.
    """
    if shots is None:
        return None
    if isinstance(shots, bool) or not isinstance(shots, (int, np.integer)) or shots < 0:
        raise QFedInputError(f"shots must be None or an integer >= 0, got {shots!r}")
    return int(shots) or None


class ProbabilityArray:
    """Exact outcome distributions of one classical register, a drop-in for :class:`BitArray`.

    Qiskit's V2 samplers return shot samples (:class:`~qiskit.primitives.containers.BitArray`);
    an exact simulation has none. This container offers the parts of the ``BitArray`` interface
    that qiskit-machine-learning reads (``get_counts``, ``get_int_counts``, ``num_bits``,
    ``shape``), returning probabilities where a ``BitArray`` returns counts, so that
    ``SamplerQNN`` (which normalises counts by their sum) sees exact distributions.

    Args:
        probabilities: Array of shape ``(*shape, 2**num_bits)``; entry ``k`` is the probability of
            the outcome whose bitstring, read as a binary number, is ``k`` (Qiskit order).
        num_bits: Number of bits of the register.
    """

    num_shots = None

    def __init__(self, probabilities: NDArray[np.float64], num_bits: int) -> None:
        probs = np.asarray(probabilities, dtype=np.float64)
        if probs.shape[-1:] != (1 << num_bits,):
            raise QFedInputError(
                f"probabilities must end with an axis of 2**{num_bits}, got shape {probs.shape}"
            )
        self._probs = probs
        self._num_bits = num_bits

    @property
    def probabilities(self) -> NDArray[np.float64]:
        """The dense probabilities, shape ``(*shape, 2**num_bits)``."""
        return self._probs

    @property
    def num_bits(self) -> int:
        """Number of bits of the register."""
        return self._num_bits

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the parameter sweep (the PUB shape)."""
        return tuple(self._probs.shape[:-1])

    @property
    def ndim(self) -> int:
        """Number of dimensions of :attr:`shape`."""
        return len(self.shape)

    def _vector(self, loc: int | tuple[int, ...] | None) -> NDArray[np.float64]:
        if loc is None:
            flat = self._probs.reshape(-1, self._probs.shape[-1])
            out: NDArray[np.float64] = flat.sum(axis=0)
            return out
        vector: NDArray[np.float64] = self._probs[loc]
        if vector.ndim != 1:
            raise QFedInputError(f"loc {loc!r} does not select a single distribution")
        return vector

    def get_int_counts(self, loc: int | tuple[int, ...] | None = None) -> dict[int, float]:
        """Probabilities by integer outcome (summed over the sweep when ``loc`` is None)."""
        vector = self._vector(loc)
        nonzero = np.flatnonzero(vector)
        return {int(k): float(vector[k]) for k in nonzero}

    def get_counts(self, loc: int | tuple[int, ...] | None = None) -> dict[str, float]:
        """Probabilities by bitstring (summed over the sweep when ``loc`` is None)."""
        width = self._num_bits
        return {format(k, f"0{width}b"): v for k, v in self.get_int_counts(loc).items()}

    def __repr__(self) -> str:
        return f"ProbabilityArray(shape={self.shape}, num_bits={self._num_bits})"


class ExactSamplerPubResult(SamplerPubResult):  # type: ignore[misc]
    """A :class:`SamplerPubResult` whose data are :class:`ProbabilityArray` values."""

    def join_data(self, names: Iterable[str] | None = None) -> Any:
        """The single register's :class:`ProbabilityArray` (joining several is not supported)."""
        keys = list(self.data) if names is None else list(names)
        if len(keys) != 1:
            raise QFedInputError(f"exact results hold one classical register, asked for {keys}")
        return self.data[keys[0]]


class SampledBitArray(BitArray):  # type: ignore[misc]
    """A :class:`BitArray` that also keeps the outcome counts it was drawn from.

    Behaves exactly like a ``BitArray`` (``SamplerQNN`` and the stock gradients read it as
    such); :func:`pub_probabilities` uses :attr:`frequencies` and skips re-counting the shots.
    """

    def __init__(self, array: NDArray[np.uint8], num_bits: int, counts: NDArray[np.int64]) -> None:
        super().__init__(array, num_bits)
        self._frequencies = counts.reshape(-1, counts.shape[-1]) / float(array.shape[-2])

    @property
    def frequencies(self) -> NDArray[np.float64]:
        """Outcome frequencies, shape ``(N, 2**num_bits)`` over the flattened PUB shape."""
        out: NDArray[np.float64] = self._frequencies
        return out


def pub_probabilities(result: Any) -> NDArray[np.float64]:
    """Dense outcome probabilities of one sampler PUB result, one row per parameter set.

    Works for exact results (:class:`ProbabilityArray`) and for shot results
    (:class:`~qiskit.primitives.containers.BitArray`, counted without Python loops). Registers
    are joined as :meth:`SamplerPubResult.join_data` joins them.

    Args:
        result: A ``SamplerPubResult``.

    Returns:
        Array of shape ``(N, 2**num_bits)``, ``N`` the number of parameter sets in the PUB.
    """
    fields = list(result.data)
    bits = result.data[fields[0]] if len(fields) == 1 else result.join_data()
    if isinstance(bits, ProbabilityArray):
        return bits.probabilities.reshape(-1, bits.probabilities.shape[-1])
    if isinstance(bits, SampledBitArray):
        return bits.frequencies
    if not isinstance(bits, BitArray):
        raise BackendError(f"sampler returned {type(bits).__name__} data, expected a BitArray")
    return bitarray_probabilities(bits)


def bitarray_probabilities(bits: BitArray) -> NDArray[np.float64]:
    """Empirical outcome frequencies of a :class:`BitArray`, shape ``(N, 2**num_bits)``."""
    if bits.num_bits > _MAX_DENSE_BITS:
        raise QFedInputError(
            f"dense probabilities need at most {_MAX_DENSE_BITS} bits, got {bits.num_bits}"
        )
    raw = np.asarray(bits.array)
    shots = raw.shape[-2]
    raw = raw.reshape(-1, shots, raw.shape[-1])
    values = np.zeros(raw.shape[:2], dtype=np.int64)
    for byte in range(raw.shape[-1]):  # big-endian bytes: the last holds the lowest bits
        values = (values << 8) | raw[..., byte].astype(np.int64)
    dim = 1 << bits.num_bits
    rows = raw.shape[0]
    flat = values + (np.arange(rows, dtype=np.int64) * dim)[:, None]
    counts = np.bincount(flat.ravel(), minlength=rows * dim).reshape(rows, dim)
    out: NDArray[np.float64] = counts / float(max(shots, 1))
    return out


def as_distribution(probs: NDArray[np.float64]) -> NDArray[np.float64]:
    """``probs`` (last axis) with rounding's small negatives clipped and the sum made 1, for
    drawing shots."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 0.0, None)
    out: NDArray[np.float64] = p / p.sum(axis=-1, keepdims=True)
    return out


def sample_bitarray(
    probs: NDArray[np.float64],
    shots: int,
    num_bits: int,
    rng: np.random.Generator,
    shape: tuple[int, ...] | None = None,
) -> BitArray:
    """Draw ``shots`` outcomes from each of the ``N`` distributions ``probs`` (``(N, 2**k)``).

    Returns a :class:`BitArray` of leading shape ``shape`` (default ``(N,)``).

    For circuits whose measurements are all at the end, this is distributed exactly as running
    the circuit ``shots`` times (Aer does the same "measurement sampling" from its final state).
    """
    p = as_distribution(probs)
    counts = rng.multinomial(shots, p)
    dim = p.shape[1]
    outcomes = np.stack([np.repeat(np.arange(dim), row) for row in counts])
    outcomes = rng.permuted(outcomes, axis=1)
    nbytes = max(1, (num_bits + 7) // 8)
    packed = np.empty((*outcomes.shape, nbytes), dtype=np.uint8)
    for byte in range(nbytes):
        packed[..., byte] = (outcomes >> (8 * (nbytes - 1 - byte))) & 0xFF
    lead = (p.shape[0],) if shape is None else tuple(shape)
    return SampledBitArray(packed.reshape((*lead, shots, nbytes)), num_bits, counts)


def expected_shot_error(probs: NDArray[np.float64], shots: int) -> NDArray[np.float64]:
    """Standard deviation of empirical frequencies ``sqrt(p (1 - p) / shots)``."""
    out: NDArray[np.float64] = np.sqrt(np.clip(probs * (1.0 - probs), 0.0, None) / shots)
    return out


def binomial_bound(probs: NDArray[np.float64], shots: int, *, sigmas: float = 5.0) -> float:
    """A bound on ``max |Δp|`` for frequencies from ``shots`` samples: ``sigmas·σ + 1e-3``."""
    return float(np.max(sigmas * expected_shot_error(probs, shots)) + 1e-3) if shots else 0.0
