"""The ``facetrack`` command: parses arguments, runs one subcommand, turns known errors into
one line on stderr and a non-zero exit (a traceback only with ``--debug``)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from calibrate.cli import add_calibrate_command
from streams.errors import FacetrackError
from tracker.model_cli import add_model_command
from tracker.native_log import filter_native_stderr
from tracker.synth import add_synth_command

RUN_EXAMPLES = """\
examples:
  facetrack run --source video.mp4 --record faces.jsonl
  facetrack run --source video.mp4 --output annotated.mp4 --max-faces 2
  facetrack run --source 0 --show                       # first camera, live window
  facetrack run --source /dev/video2 --record live.jsonl --record-landmarks
  facetrack run --source 'photos/*.jpg' --record photos.jsonl
  facetrack run --source rtsp://127.0.0.1:8554/cam --show
  facetrack run --source clip.mp4 --realtime --show     # paced at the clip's own frame rate
"""


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="track faces in a video, camera, image(s) or network stream",
        description="Track faces frame by frame and record, display or encode the result.",
        epilog=RUN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--source", required=True,
                   help="video file, image, folder or glob of images, camera index or device "
                        "(0, /dev/video2), or URL (rtsp://, http(s)://, udp://, tcp://)")
    p.add_argument("--record", metavar="FILE.jsonl", help="write one JSON line per frame")
    p.add_argument("--record-landmarks", action="store_true",
                   help="include the 478 landmarks of each face in the record")
    p.add_argument("--output", metavar="FILE.mp4", help="write an annotated H.264 video")
    p.add_argument("--show", action="store_true", help="open a window with the annotated frames")
    p.add_argument("--max-faces", type=_positive_int, default=1, metavar="N",
                   help="track up to N faces (default 1)")
    p.add_argument("--realtime", action="store_true",
                   help="pace a file at its own frame rate instead of as fast as possible")
    p.add_argument("--quiet", action="store_true", help="no progress bar or status line")
    p.add_argument("--camera", metavar="FILE.json",
                   help="calibrated intrinsics and lens distortion from 'facetrack calibrate "
                        "camera' (default: assume a 60° horizontal field of view, no distortion)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from tracker.run import run

    return run(args)


def _add_sources(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sources", help="list the cameras that can be opened",
                       description="Probe camera devices and list those that deliver frames.")
    p.add_argument("--max-index", type=_positive_int, default=10,
                   help="probe camera indices 0..N-1 (default 10)")
    p.set_defaults(func=_sources)


def _sources(args: argparse.Namespace) -> int:
    from streams.sources import list_cameras

    cameras = list_cameras(args.max_index)
    if not cameras:
        print("no camera found")
        return 1
    for cam in cameras:
        print(cam)
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_run, _add_sources, add_model_command, add_calibrate_command, add_synth_command,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facetrack",
        description="Streaming real-time 3D face tracking on the ICT face model.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks and debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted anywhere on the line, not only before the subcommand.
    debug = "--debug" in argv
    args = build_parser().parse_args([a for a in argv if a != "--debug"])
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


if __name__ == "__main__":
    sys.exit(main())
