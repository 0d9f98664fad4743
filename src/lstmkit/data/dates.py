"""Dates written in many human formats, to translate into ISO form: an offline seq2seq task.

``date_pairs(n_train, n_test, seed)`` draws distinct calendar dates from 1969-01-01 to
2068-12-31 with Python's ``datetime``, splits them so that no test date occurs in training,
and writes each one in a format drawn at random ("3rd of March 1987", "March 3, 1987",
"03/03/87", "Tue 3 Mar 1987", ...). The target is always ISO 8601, "1987-03-03". Two-digit
years read 69..99 as 19xx and 00..68 as 20xx (POSIX ``%y``), which the range makes unambiguous;
numeric formats are month-first with "/" and day-first with "." (both stated in the format).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date, timedelta

MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
FIRST, LAST = date(1969, 1, 1), date(2068, 12, 31)


def ordinal(day: int) -> str:
    """1 -> "1st", 2 -> "2nd", 11 -> "11th", 23 -> "23rd"."""
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _month(d: date) -> str:
    return MONTHS[d.month - 1]


def _weekday(d: date) -> str:
    return WEEKDAYS[d.weekday()]


FORMATS: dict[str, Callable[[date], str]] = {
    "ordinal of month": lambda d: f"{ordinal(d.day)} of {_month(d)} {d.year}",
    "the ordinal of month,": lambda d: f"the {ordinal(d.day)} of {_month(d).lower()}, {d.year}",
    "month day, year": lambda d: f"{_month(d)} {d.day}, {d.year}",
    "MONTH DAY YEAR": lambda d: f"{_month(d).upper()} {d.day} {d.year}",
    "mm/dd/yy": lambda d: f"{d.month:02d}/{d.day:02d}/{d.year % 100:02d}",
    "m/d/yyyy": lambda d: f"{d.month}/{d.day}/{d.year}",
    "dd.mm.yyyy": lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",
    "Wkd d Mon yyyy": lambda d: f"{_weekday(d)[:3]} {d.day} {_month(d)[:3]} {d.year}",
    "Weekday, Month d, yyyy": lambda d: f"{_weekday(d)}, {_month(d)} {d.day}, {d.year}",
    "d month yyyy": lambda d: f"{d.day} {_month(d)} {d.year}",
    "d mon yy": lambda d: f"{d.day} {_month(d)[:3].lower()} {d.year % 100:02d}",
    "mon ordinal yyyy": lambda d: f"{_month(d)[:3]} {ordinal(d.day)} {d.year}",
}


def write_date(day: date, style: str) -> str:
    """``day`` written in the format named ``style`` (a key of FORMATS)."""
    if style not in FORMATS:
        raise ValueError(f"style must be one of {sorted(FORMATS)}, got {style!r}")
    return FORMATS[style](day)


def date_pairs(
    n_train: int, n_test: int, seed: int = 0
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train, test) lists of (human-written date, ISO date); their dates are disjoint."""
    for name, value in (("n_train", n_train), ("n_test", n_test)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    span = (LAST - FIRST).days + 1
    if n_train + n_test > span:
        raise ValueError(f"n_train + n_test must be at most {span} distinct dates")
    generator = random.Random(seed)
    offsets = generator.sample(range(span), n_train + n_test)  # distinct dates, then split
    styles = sorted(FORMATS)
    pairs = []
    for offset in offsets:
        day = FIRST + timedelta(days=offset)
        pairs.append((write_date(day, generator.choice(styles)), day.isoformat()))
    return pairs[:n_train], pairs[n_train:]
