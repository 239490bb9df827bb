"""Progress hooks: the training code reports, the CLI decides how to show it."""

from __future__ import annotations

from typing import Any, Protocol


class TrainingCallback(Protocol):
    """Receives progress events; :class:`NullCallback` ignores them all."""

    def on_phase_start(self, name: str, total_steps: int) -> None:
        """A phase (an epoch, or a client's local training in a round) starts."""

    def on_step(self, loss: float) -> None:
        """One optimizer step finished."""

    def on_phase_end(self, name: str, metrics: dict[str, Any]) -> None:
        """The phase finished; ``metrics`` is what was recorded for it."""

    def on_message(self, text: str) -> None:
        """A line worth showing to the user."""


class NullCallback:
    """A callback that ignores everything."""

    def on_phase_start(self, name: str, total_steps: int) -> None:
        """Ignore."""

    def on_step(self, loss: float) -> None:
        """Ignore."""

    def on_phase_end(self, name: str, metrics: dict[str, Any]) -> None:
        """Ignore."""

    def on_message(self, text: str) -> None:
        """Ignore."""
