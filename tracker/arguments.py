"""argparse types for numbers within bounds, shared by every facetrack command: a bad value is
argparse's one-line usage error, never a traceback. And the checks of output files' paths that
commands make before their work, not after it."""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from streams.errors import FacetrackError, SinkError

Number = int | float


def positive(kind: type[int] | type[float]) -> Callable[[str], Number]:
    """A finite number of ``kind`` above zero (float("inf") parses, and is no focal length)."""
    return _checked(kind, lambda value: 0 < value < math.inf, "must be positive")


def in_range(kind: type[int] | type[float], low: Number, high: Number) -> Callable[[str], Number]:
    """A number of ``kind`` from LOW to HIGH, both included."""
    return _checked(kind, lambda value: low <= value <= high, f"must be {low} to {high}")


def seconds(text: str) -> float:
    """A time into a video: seconds (75.5) or [HH:]MM:SS[.fff] (1:15.5), 0 or more."""
    parts = text.split(":")
    try:
        values = [float(part) for part in parts]
    except ValueError:
        values = []
    if (not values or len(values) > 3 or not all(0 <= v < math.inf for v in values)
            or any(v >= 60 for v in values[1:])):
        raise argparse.ArgumentTypeError(f"{text!r} is not a time: use seconds (75.5) or "
                                         "[HH:]MM:SS (1:15.5)")
    return sum(value * 60 ** power for power, value in enumerate(reversed(values)))


def _checked(kind: type[int] | type[float], test: Callable[[Number], bool],
             rule: str) -> Callable[[str], Number]:
    def parse(text: str) -> Number:
        value = kind(text)
        if not test(value):
            raise argparse.ArgumentTypeError(f"{rule}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its "invalid int value" error
    return parse


def names_folder(name: str | Path) -> bool:
    """Whether NAME is a folder, or names one by ending in a slash ("records/")."""
    return str(name).endswith(("/", os.sep)) or Path(name).is_dir()


def make_folder(name: str | Path) -> Path:
    """The folder NAME, made with its parents if missing; a one-line error when it cannot be."""
    folder = Path(name)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SinkError(f"cannot make folder {name}: {error.strerror}") from None
    return folder


def check_writable(path: str | Path) -> None:
    """A one-line error unless a file can be made at PATH, tried for real in its folder: file
    permissions do not bind root, and a special folder such as /proc refuses new files. An
    existing file is left as it is: a run that then fails to start must not have emptied it."""
    target = Path(path)
    if names_folder(path):
        raise SinkError(f"cannot write {path}: it is a folder")
    if target.exists() and not os.access(target, os.W_OK):
        raise SinkError(f"cannot write {path}: it is read-only")
    folder = target.resolve().parent
    if not folder.is_dir():
        raise SinkError(f"cannot write {path}: there is no folder {folder}")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError:
        raise SinkError(f"cannot write {path}: {folder} is not a writable folder") from None


def check_distinct(files: dict[str, str | Path | None]) -> None:
    """A one-line error when two of the options (name -> file, None for unset) name one file:
    an output is emptied by its first write, so `--output` over `--source` would wipe the video
    being read, and two outputs would write over each other."""
    seen: dict[Path, str] = {}
    for option, name in files.items():
        if name is None:
            continue
        path = Path(name).resolve()
        if path in seen:
            raise FacetrackError(f"{seen[path]} and {option} both name {name}: give them "
                                 "different files")
        seen[path] = option
