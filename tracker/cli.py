"""The ``facetrack`` command: parses arguments, runs one subcommand, turns known errors into
one line on stderr and a non-zero exit (a traceback only with ``--debug``)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from calibrate.cli import add_calibrate_command
from engines.train_cli import add_train_command
from streams.cli import add_stream_commands
from streams.errors import FacetrackError
from streams.sinks import add_sink_arguments
from tracker.arguments import in_range, positive
from tracker.model_cli import add_model_command
from tracker.native_log import filter_native_stderr
from tracker.refine import DEFAULT_STEPS
from tracker.regressor import DEFAULT_MODEL
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
  facetrack run --source 0 --publish                    # faces on tcp://127.0.0.1:5570
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
    p.add_argument("--max-faces", type=positive(int), default=1, metavar="N",
                   help="track up to N faces (default 1)")
    p.add_argument("--realtime", action="store_true",
                   help="pace a file at its own frame rate instead of as fast as possible")
    p.add_argument("--quiet", action="store_true", help="no progress bar or status line")
    p.add_argument("--focal", type=positive(float), metavar="PIXELS",
                   help="the camera's focal length in pixels, when known but not calibrated")
    p.add_argument("--engine", default="auto",
                   choices=("auto", "onnxruntime", "tensorrt", "cuda", "ort-tensorrt"),
                   help="where the regressor runs (default auto: TensorRT or CUDA when they "
                        "work here, else ONNX Runtime on one CPU thread)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8"),
                   help="TensorRT's precision (int8 calibrates on synthetic faces the first "
                        "time; the engine is cached); the other engines run fp32")
    p.add_argument("--regressor", default=str(DEFAULT_MODEL), metavar="FILE.onnx",
                   help="regressor model, with its manifest beside it (default: the built-in)")
    p.add_argument("--refine", type=in_range(int, 0, 10), default=DEFAULT_STEPS, metavar="STEPS",
                   help=f"Levenberg-Marquardt steps on pose and expression against the "
                        f"landmarks after the regressor (default {DEFAULT_STEPS}, about 0.9 ms a "
                        "face each; 0: the regressor alone, which needs no face model)")
    p.add_argument("--mesh", action="store_true",
                   help="draw each fitted face's shaded mesh in --output and --show "
                        "(needs the face model)")
    p.add_argument("--model", metavar="PATH",
                   help="face model file for --refine and --mesh (default: $FACETRACK_MODEL, "
                        "else the installed one)")
    p.add_argument("--camera", metavar="FILE.json",
                   help="calibrated intrinsics and lens distortion from 'facetrack calibrate "
                        "camera' (default: assume a 60° horizontal field of view, no distortion)")
    p.add_argument("--profile", metavar="FILE.json",
                   help="a face profile from 'facetrack calibrate face': hold the identity to "
                        "it and read expressions from its resting face to its ranges")
    p.add_argument("--no-smooth", action="store_true",
                   help="publish the regressor's raw per-frame output instead of the smoothed "
                        "face states (no velocities or variances)")
    # beyond a second, a constant-velocity guess means nothing
    p.add_argument("--predict-ms", type=in_range(float, 0, 1000), default=0.0, metavar="MS",
                   help="publish the smoothed state predicted MS milliseconds past each frame's "
                        "capture time, to hide latency (default 0)")
    add_sink_arguments(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from tracker.run import run

    return run(args)


def _add_sources(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sources", help="list the cameras that can be opened",
                       description="Probe camera devices and list those that deliver frames.")
    p.add_argument("--max-index", type=positive(int), default=10,
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




COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_run, _add_sources, add_model_command, add_calibrate_command, add_synth_command,
    add_train_command, add_stream_commands,
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
