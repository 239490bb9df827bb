"""Declarative value rules shared by every settings table (run config, backend and noise profiles).

A :class:`Rule` says what a value must be (its type and an allowed-values predicate) and how to
say so in a message; :func:`problem` applies it and returns ``key=value (expected ...)`` or None.
The run configuration (:mod:`qfed_qiskit.config`) and the profile schema
(:mod:`qfed_qiskit.profiles.schema`) both declare their keys with these rules, so the same value
gets the same message wherever it is written.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Check = Callable[[Any], bool]

KINDS = ("int", "float", "bool", "str")


def is_int(value: Any) -> bool:
    """An integer that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float that is not a bool."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(
        value
    )


_TYPE_OK: dict[str, Check] = {
    "int": is_int,
    "float": is_number,
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
}


@dataclass(frozen=True)
class Rule:
    """What one setting's value must be.

    Attributes:
        kind: ``"int"``, ``"float"``, ``"bool"`` or ``"str"`` (an int is accepted as a float).
        expected: How the allowed values read in a message (``"an integer >= 1"``).
        allowed: Further predicate on a value of the right type (None: any such value).
    """

    kind: str
    expected: str
    allowed: Check | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"rule kind must be one of {KINDS}, got {self.kind!r}")

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` has the right type and passes :attr:`allowed`."""
        if not _TYPE_OK[self.kind](value):
            return False
        return self.allowed is None or bool(self.allowed(value))


def problem(key: str, value: Any, rule: Rule) -> str | None:
    """``key=value (expected ...)`` if ``rule`` rejects ``value``, else None."""
    return None if rule.accepts(value) else describe(key, value, rule.expected)


def describe(key: str, value: Any, expected: str) -> str:
    """The one message format of a rejected value: ``key=value (expected ...)``."""
    return f"{key}={value!r} (expected {expected})"


def integer(*, minimum: int | None = None, maximum: int | None = None) -> Rule:
    """An integer in ``[minimum, maximum]`` (either bound may be open)."""
    if minimum is not None and maximum is not None:
        return Rule("int", f"an integer in {minimum}..{maximum}", lambda v: minimum <= v <= maximum)
    if minimum is not None:
        return Rule("int", f"an integer >= {minimum}", lambda v: v >= minimum)
    if maximum is not None:
        return Rule("int", f"an integer <= {maximum}", lambda v: v <= maximum)
    return Rule("int", "an integer")


def number(
    *,
    above: float | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    below: float | None = None,
) -> Rule:
    """A finite number ``> above`` or ``>= minimum``, and ``<= maximum`` or ``< below`` (bounds
    optional)."""
    low: Check = lambda v: True  # noqa: E731
    low_text = ""
    if above is not None:
        low, low_text = (lambda v: v > above), f"> {above:g}"
    elif minimum is not None:
        low, low_text = (lambda v: v >= minimum), f">= {minimum:g}"
    if maximum is None and below is None:
        return Rule("float", f"a number {low_text}".rstrip(), low)
    if maximum is not None:
        high: Check = lambda v: v <= maximum  # noqa: E731
        closing, bound, high_text = "]", maximum, f"<= {maximum:g}"
    else:
        assert below is not None
        high, closing, bound, high_text = (lambda v: v < below), ")", below, f"< {below:g}"
    if above is not None or minimum is not None:
        opening, start = ("(", above) if above is not None else ("[", minimum)
        text = f"a number in {opening}{start:g}, {bound:g}{closing}"
    else:
        text = f"a number {high_text}"
    return Rule("float", text, lambda v: low(v) and high(v))


def one_of(choices: tuple[str, ...]) -> Rule:
    """One of the strings ``choices``."""
    return Rule("str", "one of " + ", ".join(choices), lambda v: v in choices)


def boolean() -> Rule:
    """``true`` or ``false``."""
    return Rule("bool", "true or false")


def one_line(value: Any) -> bool:
    """A string without line breaks."""
    return "\n" not in value and "\r" not in value


def nonempty(value: Any) -> bool:
    """A one-line string with something other than spaces."""
    return bool(value.strip()) and one_line(value)


def text(expected: str = "a string", allowed: Check | None = None) -> Rule:
    """A string, optionally checked by ``allowed``."""
    return Rule("str", expected, allowed)


PROBABILITY = number(minimum=0.0, maximum=1.0)
"""A number in [0, 1]."""
