"""`facetrack calibrate camera` and `facetrack calibrate board`."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import TYPE_CHECKING

import cv2
from tqdm import tqdm

from calibrate.boards import Board, BoardView, CharucoBoard, Checkerboard
from calibrate.camera import (
    MAX_VIEWS,
    MIN_VIEWS,
    camera_file,
    collect_views,
    solve,
    write_camera_file,
)
from calibrate.coverage import CoverageDisplay
from calibrate.intrinsics import load_camera
from calibrate.views import ViewSelector
from streams.errors import FacetrackError, SinkError
from streams.frame import Frame
from streams.sources import add_capture_argument, open_source
from streams.window import Window, display_available
from tracker.arguments import check_writable, positive
from tracker.cli import stop_signals_as_interrupt
from tracker.expressions import ICT_EXPRESSION_NAMES

if TYPE_CHECKING:
    from tracker.tracks import TrackedFace

CAMERA_EXAMPLES = """\
examples:
  facetrack calibrate camera --source board.mp4 --board 9x6 --square 25 --out cam.json
  facetrack calibrate camera --source 0 --board 9x6 --square 25 --out cam.json --show
  facetrack calibrate camera --source shots/ --charuco --board 7x5 --square 30 --marker 22 \\
      --out cam.json
then: facetrack run --source 0 --camera cam.json --show
"""

FACE_EXAMPLES = """\
examples:
  facetrack calibrate face --source 0 --out me.json --show          # camera: follow the prompts
  facetrack calibrate face --source 0 --routine --out me.json --camera cam.json
  facetrack calibrate face --source me_still.mp4 --seconds 2 --out me.json
then: facetrack run --source 0 --profile me.json --show
"""

BOARD_EXAMPLES = """\
examples:
  facetrack calibrate board --board 9x6 --square 25 --out board.png
  facetrack calibrate board --charuco --board 7x5 --square 30 --marker 22 --out charuco.png
"""


def add_calibrate_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate",
                       description="Measure a camera's intrinsics and lens distortion.")
    actions = p.add_subparsers(dest="calibrate_command", required=True, metavar="ACTION")

    camera = actions.add_parser(
        "camera", help="solve a camera's intrinsics from views of a board",
        description="Find the board in a video, image folder or camera, keep sharp views spread "
                    "over the picture, solve the intrinsics and distortion, and write a camera "
                    f"file for 'facetrack run --camera'. Needs at least {MIN_VIEWS} views; a "
                    "camera runs until q in the window or Ctrl-C.",
        epilog=CAMERA_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    camera.add_argument("--source", required=True,
                        help="video file, image folder or glob, or camera (0, /dev/video2)")
    add_capture_argument(camera)
    _add_board_arguments(camera)
    camera.add_argument("--out", required=True, metavar="FILE.json", help="camera file to write")
    camera.add_argument("--max-views", type=positive(int), default=MAX_VIEWS, metavar="N",
                        help=f"solve with at most N views (default {MAX_VIEWS})")
    camera.add_argument("--show", action="store_true",
                        help="show the frames and the picture area covered so far")
    camera.set_defaults(func=_camera)

    face = actions.add_parser(
        "face", help="make a face profile: identity, resting face, expression ranges",
        description="Track a face, find its stillest frontal stretch of --seconds, and write a "
                    "face profile for 'facetrack run --profile': the identity averaged over that "
                    "stretch and its resting expression, with --routine also how far each "
                    "expression goes. A camera prompts what to do (on stderr, and in the window "
                    "with --show) and stops when done; a file is read to its end.",
        epilog=FACE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    face.add_argument("--source", required=True,
                      help="video file, camera (0, /dev/video2), or photos (an image, folder or "
                           "glob: every frontal one is used)")
    add_capture_argument(face)
    face.add_argument("--seconds", type=positive(float), default=3.0,
                      help="length of the still stretch of a video or camera to average "
                           "(default 3)")
    face.add_argument("--routine", action="store_true",
                      help="also record each expression's range from a routine of faces (smile, "
                           "open mouth, raise brows, blink, look around)")
    face.add_argument("--out", required=True, metavar="FILE.json", help="profile to write")
    face.add_argument("--camera", metavar="FILE.json",
                      help="camera file from 'facetrack calibrate camera' (default: assume a "
                           "60° horizontal field of view)")
    face.add_argument("--focal", type=positive(float), metavar="PIXELS",
                      help="the camera's focal length in pixels, when known but not calibrated")
    face.add_argument("--show", action="store_true", help="show the tracked face and prompts")
    face.set_defaults(func=_face)

    board = actions.add_parser(
        "board", help="draw a board to print",
        description="Write a board image; printed at 100%% (no fit to page) at --dpi its "
                    "squares are --square millimetres. Measure a printed square anyway and "
                    "calibrate with what you measured.",
        epilog=BOARD_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_board_arguments(board)
    board.add_argument("--out", required=True, metavar="FILE.png", help="image to write")
    board.add_argument("--dpi", type=positive(int), default=300,
                       help="print resolution (default 300)")
    board.set_defaults(func=_board)


def _add_board_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", required=True, type=_grid, metavar="COLSxROWS",
                   help="checkerboard: inner corners (10x7 squares is 9x6); "
                        "ChArUco: squares (as OpenCV and calib.io name it)")
    p.add_argument("--square", required=True, type=positive(float), metavar="MM",
                   help="side of one square in millimetres")
    p.add_argument("--charuco", action="store_true", help="a ChArUco board (default checkerboard)")
    p.add_argument("--marker", type=positive(float), metavar="MM",
                   help="ChArUco: side of one marker in millimetres")
    p.add_argument("--dictionary", default="DICT_5X5_100",
                   help="ChArUco: OpenCV's ArUco dictionary (default DICT_5X5_100)")


def _board_of(args: argparse.Namespace) -> Board:
    if not args.charuco:
        return Checkerboard(args.board, args.square)
    if args.marker is None:
        raise FacetrackError("--charuco needs --marker MM, the side of one marker")
    return CharucoBoard(args.board, args.square, args.marker, args.dictionary)


def _camera(args: argparse.Namespace) -> int:
    board = _board_of(args)
    check_writable(args.out)
    source = open_source(args.source, capture=args.capture)
    with contextlib.ExitStack() as stack:
        stack.callback(source.close)
        display = _display(stack) if args.show else None
        progress = stack.enter_context(tqdm(source, total=source.length, unit="frame",
                                            file=sys.stderr, dynamic_ncols=True, disable=None))

        def on_frame(frame: Frame, view: BoardView | None, selector: ViewSelector) -> bool:
            progress.set_postfix_str(f"views {len(selector.candidates)}", refresh=False)
            return display.show(frame, view, selector) if display else True

        with stop_signals_as_interrupt():  # a service's stop, like Ctrl-C: solve with what is in
            selector, count = collect_views(progress, board, args.max_views, on_frame)
    calibration = solve(selector, count)
    write_camera_file(args.out, camera_file(calibration, board, args.source))
    camera, selection = calibration.intrinsics, calibration.selection
    print(f"fx {camera.fx:.1f}  fy {camera.fy:.1f}  cx {camera.cx:.1f}  cy {camera.cy:.1f}  "
          f"distortion {' '.join(f'{d:.4f}' for d in camera.distortion)}")
    print(f"RMS reprojection error {calibration.rms:.3f} px over {len(selection.views)} views "
          f"({selection.found} found in {count} frames: {selection.duplicates} near-duplicates, "
          f"{selection.blurred} blurred) -> {args.out}")
    return 0


def _face(args: argparse.Namespace) -> int:
    # MediaPipe and ONNX Runtime load in seconds: only for the command that tracks.
    from calibrate.face import Script, collect, make_profile
    from tracker.overlay import Overlay
    from tracker.pipeline import FaceTracker
    from tracker.refine import Refiner
    from tracker.regressor import Regressor

    camera = load_camera(args.camera) if args.camera else None
    check_writable(args.out)
    source = open_source(args.source, capture=args.capture)
    if source.stills and args.routine:
        source.close()
        raise FacetrackError(f"--routine needs a video or a camera: {args.source} is photos, "
                             "whose faces would all be averaged into the resting face; make "
                             "the profile from relaxed photos without --routine")
    script = Script(args.seconds, args.routine) if source.live else None
    with contextlib.ExitStack() as stack:
        stack.callback(source.close)
        window = _window(stack) if args.show else None
        overlay = Overlay() if window else None
        # The same fits as `facetrack run` makes by default, so the resting face matches.
        # each frame's own identity: the profile averages it over the still stretch it picks
        regressor = stack.enter_context(contextlib.closing(Regressor()))
        tracker = stack.enter_context(FaceTracker(camera=camera, regressor=regressor,
                                                  focal=args.focal, refiner=Refiner.load(),
                                                  pool_identity=False,
                                                  stills=source.stills))
        progress = stack.enter_context(tqdm(source, total=source.length, unit="frame",
                                            file=sys.stderr, dynamic_ncols=True, disable=None))
        shown: list[str] = []

        def on_frame(frame: Frame, faces: list[TrackedFace], prompt: str) -> bool:
            if prompt and shown[-1:] != [prompt]:
                shown.append(prompt)
                progress.write(f"facetrack: {prompt}", file=sys.stderr)
            if overlay is None:
                return True
            image = frame.image.copy()
            return window.show(overlay.draw(image, faces, prompt))

        with stop_signals_as_interrupt():
            samples = collect(progress, tracker, script, on_frame)
        version = tracker.regressor.manifest.model_version
    profile = make_profile(samples, args.seconds, args.routine, args.source, version,
                           stills=source.stills)
    profile.write(args.out)
    frames = profile.info["frames"]
    rest = sorted(zip(profile.rest, ICT_EXPRESSION_NAMES, strict=True), reverse=True)[:3]
    used = (f"{frames['used']} photo{'s' if frames['used'] > 1 else ''}" if source.stills
            else f"{frames['used']} frames ({frames['first']}-{frames['last']})")
    print(f"identity and rest from {used}; "
          f"largest rest: {', '.join(f'{name} {value:.2f}' for value, name in rest)}"
          f"{'; ranges from ' + str(frames['routine']) + ' frames' if args.routine else ''}"
          f" -> {args.out}")
    return 0


def _display(stack: contextlib.ExitStack) -> CoverageDisplay | None:
    window = _window(stack)
    return CoverageDisplay(window, MIN_VIEWS) if window else None


def _window(stack: contextlib.ExitStack) -> Window | None:
    if not display_available():
        print("facetrack: warning: no display found, --show ignored", file=sys.stderr)
        return None
    window = Window("facetrack calibrate")
    stack.callback(window.close)
    return window


def _board(args: argparse.Namespace) -> int:
    board = _board_of(args)
    pixels = round(args.square / 25.4 * args.dpi)
    image = board.image(pixels, margin=pixels // 2)  # the white border the detectors need
    try:
        written = cv2.imwrite(args.out, image)
    except cv2.error:  # an extension OpenCV has no encoder for
        written = False
    if not written:
        raise SinkError(f"cannot write {args.out}: not a writable path ending in .png, .jpg, ...")
    height, width = (side / args.dpi * 2.54 for side in image.shape)
    print(f"wrote {args.out}: {width:.1f} x {height:.1f} cm at {args.dpi} dpi; print at 100%, "
          "measure a square and pass that to --square")
    return 0


def _grid(text: str) -> tuple[int, int]:
    cols, _, rows = text.lower().partition("x")
    if not (cols.isdigit() and rows.isdigit()):
        raise argparse.ArgumentTypeError(f"expected COLSxROWS such as 9x6, got {text!r}")
    return int(cols), int(rows)
