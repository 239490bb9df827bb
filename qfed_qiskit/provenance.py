"""Which code produced a run: the git commit of the checkout (``summary.json``'s ``git_commit``)."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

import qfed_qiskit


@functools.cache
def git_commit() -> str:
    """The checkout's commit, ``+dirty`` when tracked files differ from it; for an installed
    package outside a git checkout, ``qfed-qiskit <version>``."""
    root = Path(qfed_qiskit.__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "qfed_qiskit")
    except (OSError, subprocess.SubprocessError):
        return f"qfed-qiskit {qfed_qiskit.__version__}"
    return commit + ("+dirty" if dirty else "")
