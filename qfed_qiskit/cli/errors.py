"""Turn library errors into one red line and a stable exit code."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from qfed_qiskit.exceptions import QFedError, QFedInputError, find_cause

EXIT_ERROR = 1
EXIT_INPUT = 2
EXIT_INTERRUPTED = 130

stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int) -> typer.Exit:
    """Print ``error: message`` in red on stderr and return the Exit to raise."""
    stderr.print(f"[bold red]error:[/] {message}", markup=True)
    return typer.Exit(code)


@contextmanager
def handle_errors() -> Iterator[None]:
    """Map QFedError (and Ctrl-C) to one line on stderr and an exit code, never a traceback."""
    try:
        yield
    except QFedInputError as exc:
        raise fail(str(exc).replace("\n", " "), EXIT_INPUT) from None
    except QFedError as exc:
        raise fail(str(exc).replace("\n", " "), EXIT_ERROR) from None
    except KeyboardInterrupt:
        raise fail("interrupted", EXIT_INTERRUPTED) from None
    except Exception as exc:  # one of ours, wrapped by a library (qiskit-machine-learning, torch)
        ours = find_cause(exc, QFedError)
        if ours is None:
            raise
        code = EXIT_INPUT if isinstance(ours, QFedInputError) else EXIT_ERROR
        raise fail(str(ours).replace("\n", " "), code) from None
