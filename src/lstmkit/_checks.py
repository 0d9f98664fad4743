"""Argument checks shared by every public entry point: errors name the argument, what was
expected and what came."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def unknown_name(argument: str, got: object, valid: Iterable[str]) -> ValueError:
    """A ValueError for a name that is not one of ``valid``, with the closest match."""
    valid = sorted(valid)
    close = difflib.get_close_matches(str(got), valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ValueError(f"{argument} must be one of {valid}, got {got!r}{hint}")


def check_probability(argument: str, value: object, *, allow_one: bool = False) -> float:
    """A float in [0, 1) (or [0, 1] with ``allow_one``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{argument} must be a float, got {type(value).__name__}")
    upper_ok = value <= 1 if allow_one else value < 1
    if not (value >= 0 and upper_ok):
        interval = "[0, 1]" if allow_one else "[0, 1)"
        raise ValueError(f"{argument} must be a number in {interval}, got {value}")
    return float(value)


def check_positive_int(argument: str, value: object, *, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{argument} must be an int, got {type(value).__name__}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else ">= 1"
        raise ValueError(f"{argument} must be {bound}, got {value}")
    return value
