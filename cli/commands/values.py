"""Argument value types: every range is checked while parsing, before any work.

Each factory returns an argparse `type=` callable whose error argparse reports as
`argument --threads: must be an integer >= 1, got '0'` (one line, exit 2), so every
command words the same limit the same way.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from onnxslim_kd.defaults import MAX_DROP_RANGE, max_drop_error


def integer(minimum: int) -> Callable[[str], int]:
    """An integer >= `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}")
        return value

    return parse


def number(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> Callable[[str], float]:
    """A finite float within [low, high]; either end open or absent."""
    bounds = _bounds_text(low, high, low_open, high_open)

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if not math.isfinite(value) or too_low or too_high:
            raise argparse.ArgumentTypeError(f"must be a number {bounds}, got {text!r}")
        return value

    return parse


def max_drop(text: str) -> float:
    """The accuracy budget, one range for every command (see report.gate.MAX_DROP_RANGE)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a fraction {MAX_DROP_RANGE}, got {text!r}"
        ) from None
    message = max_drop_error(value)
    if message:
        raise argparse.ArgumentTypeError(message)
    return value


def _bounds_text(low, high, low_open, high_open) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    return f"{'<' if high_open else '<='} {high:g}"


#: Shared instances for the limits most commands take.
POSITIVE = integer(1)
NON_NEGATIVE = integer(0)
POSITIVE_NUMBER = number(0, low_open=True)
RATIO = number(0, 1, high_open=True)  # [0, 1): a fraction removed
FRACTION_OPEN = number(0, 1, low_open=True, high_open=True)  # (0, 1): --ratio-like
FRACTION_KEEP = number(0, 1, low_open=True)  # (0, 1]: a fraction kept
