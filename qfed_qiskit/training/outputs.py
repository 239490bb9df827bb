"""Run directory outputs, written atomically so a crash never leaves a half-written file."""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from qfed_qiskit.exceptions import QFedInputError
from qfed_qiskit.files import atomic_write_bytes


def torch_bytes(obj: Any) -> bytes:
    """Serialise ``obj`` with :func:`torch.save` into bytes."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


class NewJobIds:
    """The ids of the quantum jobs submitted since the previous call, for one metrics line.

    Args:
        source: Returns the ids of every job submitted so far, in order (None: no jobs).
    """

    def __init__(self, source: Callable[[], Sequence[str]] | None) -> None:
        self._source = source
        self._seen = 0

    def __call__(self) -> list[str]:
        """Ids submitted since the last call (empty for engines that submit no jobs)."""
        if self._source is None:
            return []
        ids = list(self._source())
        new, self._seen = ids[self._seen :], len(ids)
        return new


def default_out_dir(model: str, backend: str) -> Path:
    """``runs/<model>-<backend>-<timestamp>`` here (for a backend given as a path: its stem)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = Path(backend).stem if backend.endswith(".toml") else backend
    return Path("runs") / f"{model}-{name}-{stamp}"


RUN_FILES = (
    "metrics.jsonl",
    "summary.json",
    "model.pt",
    "cnn.pt",
    "checkpoint.pt",
    "round-partial.pt",
)
"""Files that make a folder a run folder (``--overwrite`` removes them, and the ``jobs`` folder)."""
RUN_FOLDERS = ("jobs",)


def _run_contents(path: Path) -> str | None:
    """What run the folder holds, in words (None: none)."""
    if (path / "summary.json").is_file():
        return "a finished run (summary.json)"
    if (path / "checkpoint.pt").is_file():
        return "a checkpointed run (checkpoint.pt)"
    if any((path / name).exists() for name in (*RUN_FILES, *RUN_FOLDERS)):
        return "an unfinished run"
    return None


def check_run_folder(path: str | Path, *, resume: bool = False, overwrite: bool = False) -> Path:
    """Refuse an output folder that cannot be used, in one line, before any work is done.

    A folder that already holds a run is refused unless ``overwrite`` (replace it) or ``resume``
    (continue it) says what to do with it.

    Raises:
        QFedInputError: If ``path`` is a file, lies below a file, or holds a run.
    """
    out = Path(path)
    for parent in (out, *out.parents):
        if parent.exists() and not parent.is_dir():
            where = "is a file" if parent == out else f"lies below the file {parent}"
            raise QFedInputError(f"--out {out} {where}; expected a folder")
        if parent.exists():
            break
    if resume or overwrite or not out.is_dir():
        return out
    contents = _run_contents(out)
    if contents is not None:
        resumable = (out / "checkpoint.pt").is_file()
        hint = f", or --resume {out} to continue it" if resumable else ""
        raise QFedInputError(
            f"--out {out} already holds {contents}; pass --overwrite to replace it{hint}, "
            "or choose another --out"
        )
    return out


def _remove_run(path: Path) -> None:
    for name in RUN_FILES:
        (path / name).unlink(missing_ok=True)
    for name in RUN_FOLDERS:
        shutil.rmtree(path / name, ignore_errors=True)


def read_metrics(run: str | Path) -> list[dict[str, Any]]:
    """The complete lines of ``<run>/metrics.jsonl``; a torn last line (of a run still going, or
    killed mid-write) is ignored, and a missing file is no lines."""
    path = Path(run) / RunDirectory.METRICS
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return out


class RunDirectory:
    """The output folder of one run: ``metrics.jsonl``, ``summary.json``, ``model.pt``, ``cnn.pt``.

    Args:
        path: Folder (created if missing).

    Raises:
        QFedInputError: If the folder cannot be created (one line naming it and why).
    """

    METRICS = "metrics.jsonl"
    SUMMARY = "summary.json"
    MODEL = "model.pt"
    CNN = "cnn.pt"
    JOBS = "jobs"
    """Folder of the job journal: sampler results of the round in progress."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise QFedInputError(
                f"--out {self.path}: a file is in the way; expected a folder"
            ) from None
        except OSError as exc:
            raise QFedInputError(
                f"--out {self.path}: cannot create the folder ({exc.strerror or exc})"
            ) from None

    @classmethod
    def prepare(
        cls, path: str | Path, *, resume: bool = False, overwrite: bool = False
    ) -> RunDirectory:
        """The folder of a new run (``resume``: of the run being continued).

        Checks it with :func:`check_run_folder`; with ``overwrite`` (and not ``resume``) the
        previous run's files are removed first.
        """
        out = check_run_folder(path, resume=resume, overwrite=overwrite)
        if overwrite and not resume and out.is_dir():
            _remove_run(out)
        return cls(out)

    @property
    def jobs(self) -> Path:
        """The job journal's folder (see :mod:`qfed_qiskit.quantum.journal`)."""
        return self.path / self.JOBS

    def clear_jobs(self) -> None:
        """Empty the job journal (its work is in the checkpoint just written)."""
        shutil.rmtree(self.jobs, ignore_errors=True)

    def reset_metrics(self, keep: int = 0) -> None:
        """Keep only the first ``keep`` metric lines (used when a run restarts or resumes)."""
        self.write_metrics(self.read_metrics()[:keep])

    def write_metrics(self, lines: Sequence[dict[str, Any]]) -> None:
        """Replace ``metrics.jsonl`` by ``lines`` (atomically)."""
        payload = "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines)
        atomic_write_bytes(self.path / self.METRICS, payload.encode())

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Append one JSON object as a line of ``metrics.jsonl`` (flushed and fsynced)."""
        with (self.path / self.METRICS).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def read_metrics(self) -> list[dict[str, Any]]:
        """All complete lines of ``metrics.jsonl`` (a torn last line is ignored)."""
        return read_metrics(self.path)

    def write_summary(self, summary: dict[str, Any]) -> Path:
        """Write ``summary.json`` atomically."""
        path = self.path / self.SUMMARY
        atomic_write_bytes(path, (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode())
        return path

    def save_state(self, name: str, state: dict[str, torch.Tensor]) -> Path:
        """Save a state dict atomically as ``name``."""
        path = self.path / name
        atomic_write_bytes(path, torch_bytes(state))
        return path
