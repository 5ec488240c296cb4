"""argparse types for numbers within bounds, shared by every facetrack command: a bad value is
argparse's one-line usage error, never a traceback."""

from __future__ import annotations

import argparse
from collections.abc import Callable

Number = int | float


def positive(kind: type[int] | type[float]) -> Callable[[str], Number]:
    """A number of ``kind`` above zero."""
    return _checked(kind, lambda value: value > 0, "must be positive")


def in_range(kind: type[int] | type[float], low: Number, high: Number) -> Callable[[str], Number]:
    """A number of ``kind`` from LOW to HIGH, both included."""
    return _checked(kind, lambda value: low <= value <= high, f"must be {low} to {high}")


def _checked(kind: type[int] | type[float], test: Callable[[Number], bool],
             rule: str) -> Callable[[str], Number]:
    def parse(text: str) -> Number:
        value = kind(text)
        if not test(value):
            raise argparse.ArgumentTypeError(f"{rule}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its "invalid int value" error
    return parse
