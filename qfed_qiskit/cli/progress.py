"""A rich progress bar as a :class:`~qfed_qiskit.training.callbacks.TrainingCallback`."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class RichProgress:
    """Shows a bar per phase (epoch or client round) with the running loss, and one line per phase.

    When the console is not a terminal (output piped to a file or a CI log) a bar cannot be drawn,
    so a plain progress line is printed instead: after the first step, then at most every
    ``line_interval_s`` seconds (across phases, so many short client phases are covered too).
    Slow backends (noisy Aer, fake devices, hardware) take minutes per epoch and must not look
    hung.

    Args:
        console: Where to draw (stdout by default).
        quiet: Print nothing (e.g. with ``--json``).
        line_interval_s: Seconds between progress lines without a terminal.
        clock: Seconds from an arbitrary origin (default :func:`time.monotonic`, which counts from
            boot: no line may depend on its absolute value).
    """

    def __init__(
        self,
        *,
        console: Console | None = None,
        quiet: bool = False,
        line_interval_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console or Console()
        self.quiet = quiet
        self.line_interval_s = line_interval_s
        self._clock = clock
        self._phase = ""
        self._done = 0
        self._total = 0
        self._started = 0.0
        self._last_line: float | None = None  # None: no line yet, so the first step prints one
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            disable=quiet,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> RichProgress:
        self._progress.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.__exit__(exc_type, exc, tb)

    def on_phase_start(self, name: str, total_steps: int) -> None:
        """Start a bar."""
        if self._task is not None:
            self._progress.remove_task(self._task)
        self._task = self._progress.add_task(name, total=total_steps, loss="-")
        self._phase, self._done, self._total = name, 0, total_steps
        self._started = self._clock()  # _last_line is kept: short phases still get lines

    def on_step(self, loss: float) -> None:
        """Advance the bar."""
        if self._task is not None:
            self._progress.update(self._task, advance=1, loss=f"{loss:.4f}")
        self._done += 1
        if self.quiet or self.console.is_terminal:
            return
        now = self._clock()
        if self._last_line is not None and now - self._last_line < self.line_interval_s:
            return
        self._last_line = now
        self.console.print(
            f"{self._phase}: step {self._done}/{self._total}  loss {loss:.4f}  "
            f"{now - self._started:.0f} s",
            highlight=False,
        )

    def on_phase_end(self, name: str, metrics: dict[str, Any]) -> None:
        """Print the phase's headline metrics."""
        if self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None
        if self.quiet or "test_accuracy" not in metrics:
            return
        parts = [f"[bold]{name}[/]"]
        for key in ("train_loss", "test_loss", "test_accuracy", "clients_ok", "clients_rejected"):
            if key in metrics and metrics[key] is not None:
                value = metrics[key]
                parts.append(f"{key} {value:.4f}" if isinstance(value, float) else f"{key} {value}")
        self.console.print("  ".join(parts))

    def on_message(self, text: str) -> None:
        """Print a line."""
        if not self.quiet:
            self.console.print(text, highlight=False)
