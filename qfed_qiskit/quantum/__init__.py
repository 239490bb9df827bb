"""Quantum backends: Aer and fake-device samplers, ISA transpilation, IBM Runtime access.

One module per job: :mod:`.results` (result containers and shot statistics),
:mod:`.aer_circuits` and :mod:`.aer_noise` (what Aer needs done to circuits and noise models),
:mod:`.exact_aer` (the exact Aer sampler), :mod:`.devices` (samplers and fake devices by name),
:mod:`.managed` (the sampler every engine submits through: transpile once, job ids, retries,
the job journal), :mod:`.journal`, :mod:`.transpile` and :mod:`.layout` (ISA circuits and
qubit placement) and :mod:`.ibm` (credentials and Runtime samplers). Names are imported on first
use: Qiskit is heavy, and reading a profile needs none of it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qfed_qiskit.quantum.devices import (
        aer_sampler,
        fake_backend,
        fake_backend_names,
        fake_device_sampler,
        noise_model_from_backend,
    )
    from qfed_qiskit.quantum.exact_aer import ExactAerSampler
    from qfed_qiskit.quantum.ibm import (
        RuntimeSampler,
        connect_service,
        credentials_source,
        redact,
        runtime_sampler,
    )
    from qfed_qiskit.quantum.managed import ManagedSampler
    from qfed_qiskit.quantum.results import ProbabilityArray, pub_probabilities
    from qfed_qiskit.quantum.transpile import (
        IsaStats,
        IsaTranspiler,
        isa_circuit,
        isa_stats,
        logical_clbit_order,
        measure_logical,
        preset_pass_manager,
        rewrite_u_gates,
        to_logical_order,
    )

_LAZY = {
    "aer_sampler": "devices",
    "fake_backend": "devices",
    "fake_backend_names": "devices",
    "fake_device_sampler": "devices",
    "noise_model_from_backend": "devices",
    "ExactAerSampler": "exact_aer",
    "RuntimeSampler": "ibm",
    "connect_service": "ibm",
    "credentials_source": "ibm",
    "redact": "ibm",
    "runtime_sampler": "ibm",
    "ManagedSampler": "managed",
    "ProbabilityArray": "results",
    "pub_probabilities": "results",
    "IsaStats": "transpile",
    "IsaTranspiler": "transpile",
    "isa_circuit": "transpile",
    "isa_stats": "transpile",
    "logical_clbit_order": "transpile",
    "measure_logical": "transpile",
    "preset_pass_manager": "transpile",
    "rewrite_u_gates": "transpile",
    "to_logical_order": "transpile",
}

__all__ = [
    "ExactAerSampler",
    "IsaStats",
    "IsaTranspiler",
    "ManagedSampler",
    "ProbabilityArray",
    "RuntimeSampler",
    "aer_sampler",
    "connect_service",
    "credentials_source",
    "fake_backend",
    "fake_backend_names",
    "fake_device_sampler",
    "isa_circuit",
    "isa_stats",
    "logical_clbit_order",
    "measure_logical",
    "noise_model_from_backend",
    "preset_pass_manager",
    "pub_probabilities",
    "redact",
    "rewrite_u_gates",
    "runtime_sampler",
    "to_logical_order",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
