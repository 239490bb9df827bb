"""The exact engine leaves torch's thread count alone (numba's OpenMP layer shares it)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_SCRIPT = textwrap.dedent(
    """
    import torch
    torch.set_num_threads(1)
    torch.ones(512, 512).exp().sum()  # torch's OpenMP pool is up before numba's
    from qfed_qiskit.circuits import qt_ansatz
    from qfed_qiskit.engines.statevector import StatevectorEngine
    engine = StatevectorEngine(circuit=qt_ansatz(11, 1))
    theta = torch.zeros(engine.num_parameters, requires_grad=True)
    engine(theta).sum().backward()
    print(torch.get_num_threads())
    """
)


def test_qnn_call_keeps_torch_thread_count() -> None:
    """A forward + backward in a fresh process keeps torch.set_num_threads(1) in force."""
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "1"
