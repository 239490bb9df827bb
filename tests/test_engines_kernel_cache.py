"""Every process runs the same compiled kernels: the first one on an empty numba cache included."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

REPO = Path(__file__).resolve().parents[1]

# Forward and backward of a float32 and a float64 engine, on one thread and on the threaded
# kernels (11 qubits is the smallest state that takes them), saved for comparison.
_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np, torch
    from qfed_qiskit.circuits import qt_ansatz
    from qfed_qiskit.engines.statevector import StatevectorEngine
    out = []
    for dtype in (torch.float32, torch.float64):
        for threads in (1, 2):
            engine = StatevectorEngine(circuit=qt_ansatz(11, 2), dtype=dtype, threads=threads)
            g = torch.Generator().manual_seed(0)
            theta = torch.randn(engine.num_parameters, generator=g, dtype=dtype)
            theta.requires_grad_(True)
            probs = engine(theta)
            upstream = torch.randn(probs.shape, generator=g, dtype=dtype)
            (grad,) = torch.autograd.grad(probs, theta, upstream)
            out += [probs.detach().double().numpy(), grad.double().numpy()]
    np.save(sys.argv[1], np.concatenate(out))
    """
)


def _run(cache: Path, out: Path) -> NDArray[np.float64]:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    cmd = [sys.executable, "-c", _SCRIPT, str(out)]
    subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True)
    result: NDArray[np.float64] = np.load(out)
    return result


def test_first_process_on_an_empty_cache_matches_later_ones(tmp_path: Path) -> None:
    """A process that found no compiled kernels and one that loaded them agree bit for bit."""
    cache = tmp_path / "numba-cache"
    first = _run(cache, tmp_path / "first.npy")
    assert any(cache.rglob("qfed-kernels-*.ok"))
    second = _run(cache, tmp_path / "second.npy")
    assert np.array_equal(first, second)
