"""Run directory outputs, written atomically so a crash never leaves a half-written file."""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def torch_bytes(obj: Any) -> bytes:
    """Serialise ``obj`` with :func:`torch.save` into bytes."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


class RunDirectory:
    """The output folder of one run: ``metrics.jsonl``, ``summary.json``, ``model.pt``, ``cnn.pt``.

    Args:
        path: Folder (created if missing).
        annotate: Called for every metrics line; its keys are added to the line. The runner uses
            it to record which hardware/runtime jobs each epoch or round submitted, so the
            training loops need not know about backends.
    """

    METRICS = "metrics.jsonl"
    SUMMARY = "summary.json"
    MODEL = "model.pt"
    CNN = "cnn.pt"

    def __init__(
        self, path: str | Path, *, annotate: Callable[[], dict[str, Any]] | None = None
    ) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.annotate = annotate

    def reset_metrics(self, keep: int = 0) -> None:
        """Keep only the first ``keep`` metric lines (used when a run restarts or resumes)."""
        lines = self.read_metrics()[:keep]
        payload = "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines)
        atomic_write_bytes(self.path / self.METRICS, payload.encode())

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Append one JSON object as a line of ``metrics.jsonl`` (flushed and fsynced)."""
        if self.annotate is not None:
            record = {**record, **self.annotate()}
        with (self.path / self.METRICS).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def read_metrics(self) -> list[dict[str, Any]]:
        """All complete lines of ``metrics.jsonl`` (a torn last line is ignored)."""
        path = self.path / self.METRICS
        if not path.exists():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break
        return out

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
