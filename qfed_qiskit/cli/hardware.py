"""The cost guard of every command that may submit to IBM hardware."""

from __future__ import annotations

from typing import Any

from rich.console import Console


def confirm_cost(cost: dict[str, Any] | None, *, yes: bool) -> None:
    """On IBM Runtime, print what will be submitted (stderr) and require --yes beyond the budget.

    Raises:
        QFedInputError: If the profile's budget is exceeded and ``yes`` is not given.
    """
    from qfed_qiskit.profiles import guard_cost

    if cost is not None:  # stderr keeps --json stdout clean
        guard_cost(cost, yes=yes, show=Console(stderr=True).print)
