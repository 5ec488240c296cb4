"""The ``facetrack`` command: parses arguments, runs one subcommand, turns known errors into
one line on stderr and a non-zero exit (a traceback only with ``--debug``).

Only the module of the command given is imported: MediaPipe, OpenCV, scipy and ONNX Runtime
take over a second to load, which ``facetrack --help``, ``listen`` or ``model info`` need not
wait for."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import platform
import signal
import sys
from collections.abc import Iterator, Sequence
from importlib.metadata import version
from typing import NamedTuple

from streams.errors import FacetrackError
from streams.recording import ReaderGone
from tracker.native_log import filter_native_stderr


class Command(NamedTuple):
    help: str  # the line `facetrack --help` shows
    adder: str  # "module:function": the function adds the command's parser to the subparsers


COMMANDS: dict[str, Command] = {
    "run": Command("track faces in a video, camera, image(s) or network stream",
                   "tracker.run:add_run_command"),
    "sources": Command("list the cameras that can be opened",
                       "streams.sources:add_sources_command"),
    "model": Command("install or inspect the ICT face model",
                     "tracker.model_cli:add_model_command"),
    "calibrate": Command("calibrate a camera with a printed board, or make a face profile",
                         "calibrate.cli:add_calibrate_command"),
    "synth": Command("render synthetic clips of random faces with ground truth",
                     "tracker.synth:add_synth_command"),
    "train": Command("train the landmark-to-coefficients regressor and export it as ONNX",
                     "engines.train_cli:add_train_command"),
    "listen": Command("print or save the faces a publisher sends",
                      "streams.cli:add_listen_command"),
    "replay": Command("publish a recording at its original timing",
                      "streams.cli:add_replay_command"),
    "keys": Command("make CURVE keys for an encrypted stream", "streams.cli:add_keys_command"),
    "export": Command("write a recording as Live Link Face CSV or glTF",
                      "streams.exports:add_export_command"),
}


# What a bug report needs to know besides facetrack's own version (`facetrack --version`).
RUNS_ON = ("mediapipe", "onnxruntime", "numpy", "opencv-contrib-python", "av", "pyzmq")


def versions() -> str:
    """facetrack's version, the committed regressor's, and those of the libraries it runs on."""
    from tracker.regressor import DEFAULT_MODEL, Manifest

    try:
        regressor = Manifest.load(DEFAULT_MODEL).model_version
    except FacetrackError as error:  # a broken install: say so, still give the rest
        regressor = f"unreadable ({error})"
    libraries = ", ".join(f"{name} {version(name)}" for name in RUNS_ON)
    return (f"facetrack {version('facetrack')}, regressor {regressor}; {libraries}; "
            f"Python {platform.python_version()}")


class _Versions(argparse.Action):
    """--version: `versions`, worked out only when asked for, so that no command pays for
    reading the regressor's manifest."""

    def __init__(self, option_strings: list[str], dest: str, **_: object) -> None:
        super().__init__(option_strings, dest, nargs=0,
                         help="print the versions of facetrack, its regressor and the libraries "
                              "it runs on, and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(versions())
        parser.exit()


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with COMMAND's arguments in full, from its module, and every other command
    by name and help line only."""
    parser = argparse.ArgumentParser(
        prog="facetrack",
        description="Streaming real-time 3D face tracking on the ICT face model.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks and debug logging")
    parser.add_argument("--version", action=_Versions)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, entry in COMMANDS.items():
        if name == command:
            module, function = entry.adder.split(":")
            getattr(importlib.import_module(module), function)(sub)
        else:
            sub.add_parser(name, help=entry.help)
    return parser


# Signals that stop a command as Ctrl-C does: a service manager's or `timeout`'s stop, and a
# terminal that closed.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def stop_signals_as_interrupt() -> Iterator[None]:
    """Within it, SIGTERM (a service manager's or `timeout`'s stop) and SIGHUP (the terminal
    closed, an SSH session dropped) raise KeyboardInterrupt as Ctrl-C does, so a command ends
    the same clean way for all rather than die mid-write (an MP4 cut off so has no index and
    does not play)."""
    previous = [signal.signal(stop, signal.default_int_handler) for stop in STOP_SIGNALS]
    try:
        yield
    finally:
        for stop, handler in zip(STOP_SIGNALS, previous, strict=True):
            signal.signal(stop, handler)


def warn(warnings: list[str]) -> int:
    """Print each warning as one line; returns the exit status of a command that finished with
    them: 1 when there were any (its output is partial), else 0."""
    for warning in warnings:
        print(f"facetrack: warning: {warning}", file=sys.stderr)
    return 1 if warnings else 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted anywhere on the line, not only before the subcommand.
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    # The top level's options take no values, so the first word that is not one is the command.
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    args.debug = debug
    if not debug:
        filter_native_stderr()
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="facetrack: %(levelname)s: %(message)s")
    try:
        return args.func(args)
    except FacetrackError as error:
        if debug:
            raise
        print(f"facetrack: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except ReaderGone:  # every output was closed whole on the way out
        return 0


if __name__ == "__main__":
    sys.exit(main())
