"""JSON Lines recording: one object per line, flushed per line, so an interrupted or crashed
run keeps every frame it processed. The file is emptied only by the first line: a run that
fails to start leaves an earlier recording of that name whole. A name ending in .gz is written
gzip-compressed (a quarter of the size), each line flushed to a point a reader can reach."""

from __future__ import annotations

import contextlib
import functools
import gzip
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, BinaryIO

import orjson

from streams.errors import SinkError
from tracker.arguments import check_writable

STDOUT = "-"  # the record's name for standard output, to pipe it into another program


class ReaderGone(Exception):
    """Standard output's reader went away (`facetrack run --record - | head`): the run ends
    there, quietly, as a program does in a pipeline whose reader has had enough."""


def to_devnull(file: IO) -> None:
    """FILE, a pipe whose reader went away, made to discard what is still written to it: no
    second error when it is flushed at exit."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), file.fileno())


@contextlib.contextmanager
def output_file(path: str | Path, binary: bool = False) -> Iterator[IO]:
    """PATH opened to be written whole (text with the newlines as written), or standard
    output for "-", to pipe into another program: its reader going away is `ReaderGone`."""
    try:
        if str(path) != STDOUT:
            with open(path, "wb" if binary else "w", newline=None if binary else "") as file:
                yield file
            return
        stream = sys.stdout.buffer if binary else sys.stdout
        yield stream
        stream.flush()
    except BrokenPipeError:
        if str(path) != STDOUT:
            raise
        raise _reader_gone() from None


def _reader_gone() -> ReaderGone:
    """What to raise once standard output's reader has gone; what is still written there
    (a flush at exit) is dropped."""
    to_devnull(sys.stdout)
    return ReaderGone()


class Recorder:
    """Appends JSON objects to a file, one per line; the path is checked when made and the
    file opened at the first line. "-" writes to standard output, flushed line by line."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lines = 0
        self._file: BinaryIO | None = None
        if str(path) == STDOUT:
            self._file = sys.stdout.buffer
        else:
            check_writable(path)  # as given: "records/" names a folder, Path("records/") not

    def write(self, record: dict) -> None:
        """Write one record; numpy arrays in it are written as nested lists."""
        line = orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE)
        try:
            if self._file is None:
                self._file = _opener(self.path)(self.path, "wb")
            self._file.write(line)
            self._file.flush()
        except OSError as error:
            if isinstance(error, BrokenPipeError) and self._file is sys.stdout.buffer:
                raise _reader_gone() from None
            raise SinkError(f"cannot write record {self.path}: {error.strerror}") from None
        self.lines += 1

    # The sink interface (streams/sinks.py): header and frames are lines alike, and a file
    # write waits rather than drops.
    send_header = write
    send_frame = write
    dropped = 0

    def close(self) -> None:
        if self._file is None or self._file is sys.stdout.buffer:
            return
        try:
            self._file.close()  # flushes: a full disk may only tell here
        except OSError as error:
            raise SinkError(f"cannot write record {self.path}: {error.strerror}") from None

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_records(path: str | Path,
                 warnings: list[str] | None = None) -> tuple[dict, list[dict]]:
    """(header, frame records) of a recording. A last line cut short (a disk that filled, a
    copy taken while the run still wrote) is an error, or, given WARNINGS, left out with a
    warning added to it: the frames before it are whole."""
    records = []
    try:
        with _opener(Path(path))(path, "rb") as file:
            for number, line in enumerate(file, 1):
                if not line.strip():
                    continue
                try:
                    records.append(orjson.loads(line))
                except orjson.JSONDecodeError as error:
                    # Only the file's last line can lack its newline.
                    if warnings is None or line.endswith(b"\n"):
                        raise SinkError(f"{path} is not a facetrack recording: line {number}: "
                                        f"{error.msg}") from None
                    warnings.append(f"{path}: its last line ({number}) is cut short and left "
                                    "out")
    except EOFError:  # a .gz a killed run left without its end: the lines before it are whole
        if warnings is None:
            raise SinkError(f"{path} is cut short: the run that wrote it did not finish") from None
        warnings.append(f"{path}: its end is cut short (the run that wrote it did not finish); "
                        f"read up to frame {len(records) - 1}")
    except gzip.BadGzipFile:
        raise SinkError(f"{path} is not a facetrack recording: not gzip data") from None
    except OSError as error:
        raise SinkError(f"cannot read recording {path}: {error.strerror}") from None
    if not records or records[0].get("type") != "header":
        raise SinkError(f"{path} is not a facetrack recording: no header line")
    return records[0], records[1:]


def _opener(path: Path) -> Callable[..., BinaryIO]:
    """How to open PATH: gzip for a name ending in .gz, at its fastest level: 0.07 ms a frame
    with its flush (level 9: 0.6 ms, in the tracking loop), 3.7 times smaller than plain."""
    return functools.partial(gzip.open, compresslevel=1) if path.suffix == ".gz" else open


def tracked_face(record: dict, track: int | None = None) -> dict | None:
    """The face a single-face consumer follows in a frame record (the VMC bridge, the exports):
    the first one tracked with a pose and an expression, or track TRACK's; None when none is.
    Coasting faces are left out: they are predictions, not what the camera saw."""
    for face in record["faces"]:
        if (face["status"] == "tracking" and "rotation" in face and "expression" in face
                and (track is None or face["track"] == track)):
            return face
    return None
