"""One compiled copy of the statevector kernels for every process.

The fastmath kernels in :mod:`qfed_qiskit.engines._kernels` do not give the same float bits when a
process compiles them itself as when it loads them from numba's on-disk cache: a process that
compiled them calls each callee's own compiled copy, one that loaded them runs the copies linked
(and optimised) into their callers. Measured here: float32 vector-Jacobian products differing by
up to 6e-6, so a run resumed in a later process, or a worker next to one that compiled, was not
bit-identical to the uninterrupted run. Processes that all load the cache agree bit for bit, and so
do processes that all compile.

So the first process that needs the kernels compiles them in a child process, which writes the
cache, and then loads them from there like every later process. A marker file next to numba's
cache, keyed on what numba keys its cache on (the kernel source's modification time and size, the
numba and Python versions), says the cache is complete; a file lock keeps concurrent first users
(a pool of workers) from compiling twice. Where no cache can be written, every process compiles
for itself, which is consistent too.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import subprocess
import sys
from pathlib import Path

import numba

log = logging.getLogger(__name__)

_IN_CHILD_ENV = "QFED_KERNEL_CACHE_CHILD"
_CHILD_CODE = "from qfed_qiskit.engines.statevector import compile_kernels; compile_kernels()"
"""What the child runs (the engine knows which signatures it calls; this module does not import
it, which would be a circle)."""


def _cache_dir() -> Path | None:
    """Where numba caches the kernels (``None`` when it cannot cache them)."""
    from qfed_qiskit.engines import _kernels

    cache = getattr(_kernels.simulate_fused, "_cache", None)
    path = getattr(cache, "_cache_path", None)
    return Path(path) if path else None


def _marker_name() -> str:
    from qfed_qiskit.engines import _kernels

    stat = os.stat(_kernels.__file__)
    version = f"py{sys.version_info.major}{sys.version_info.minor}"
    return f"qfed-kernels-{numba.__version__}-{version}-{stat.st_mtime_ns}-{stat.st_size}.ok"


def _compile_in_child() -> None:
    env = {**os.environ, _IN_CHILD_ENV: "1"}
    cmd = [sys.executable, "-c", _CHILD_CODE]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@functools.cache
def ensure_compiled() -> None:
    """Make sure numba's cache holds every kernel before this process first calls one."""
    if os.environ.get(_IN_CHILD_ENV):
        return
    directory = _cache_dir()
    if directory is None:
        return
    marker = directory / _marker_name()
    if marker.exists():
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / "qfed-kernels.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if marker.exists():  # another process compiled while we waited
                return
            log.info("compiling the statevector kernels once into %s (about a minute)", directory)
            _compile_in_child()
            marker.touch()
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        last = detail.decode(errors="replace").strip().splitlines()[-1:] or [str(exc)]
        log.warning("kernels compile in this process (cache not prepared: %s)", last[0])
