"""argparse types for numbers within bounds, shared by every facetrack command: a bad value is
argparse's one-line usage error, never a traceback. And the check of an output file's path that
commands make before their work, not after it."""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

from streams.errors import SinkError

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


def check_writable(path: str | Path) -> None:
    """A one-line error unless a file can be made at PATH, tried for real in its folder: file
    permissions do not bind root, and a special folder such as /proc refuses new files."""
    target = Path(path)
    if target.is_dir():
        raise SinkError(f"cannot write {path}: it is a folder")
    try:
        with tempfile.TemporaryFile(dir=target.resolve().parent):
            pass
    except OSError:
        raise SinkError(f"cannot write {path}: {target.resolve().parent} is not a writable "
                        "folder") from None
