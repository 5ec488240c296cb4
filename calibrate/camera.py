"""Camera calibration from pictures of a printed board: find the board in each frame, keep
well-spread sharp views, solve the camera's intrinsics and lens distortion, write the camera
file that ``facetrack run --camera`` reads (format in docs/camera-calibration.md)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import cv2

from calibrate.boards import Board, BoardView
from calibrate.intrinsics import CAMERA_FORMAT, CAMERA_VERSION, Intrinsics
from calibrate.views import Selection, ViewSelector
from streams.errors import FacetrackError, SinkError
from streams.frame import Frame

MIN_VIEWS = 8
MAX_VIEWS = 40
# Fixing k3 keeps the radial model to k1, k2: with a few dozen hand-held views k3 mostly fits
# noise and swings wildly at the image corners (ROS's calibrator fixes it by default too).
SOLVE_FLAGS = cv2.CALIB_FIX_K3

# Called per frame with the board view found (or None) and the selector; False stops.
FrameHook = Callable[[Frame, BoardView | None, ViewSelector], bool]


@dataclass(frozen=True)
class Calibration:
    """The solved camera and how well it explains the views."""

    intrinsics: Intrinsics
    rms: float  # reprojection error over all corners of the views used, pixels
    selection: Selection
    frames: int


def collect_views(frames: Iterable[Frame], board: Board, max_views: int = MAX_VIEWS,
                  on_frame: FrameHook | None = None) -> tuple[ViewSelector, int]:
    """Find the board in every frame and keep the views worth solving with; Ctrl-C ends the
    collection early (for a camera, that is how it ends). Returns the selector and the frames
    seen."""
    selector: ViewSelector | None = None
    count = 0
    try:
        for frame in frames:
            if selector is None:
                selector = ViewSelector(board, frame.size, max_views)
            elif frame.size != selector.size:
                raise FacetrackError(
                    f"frame {frame.index} is {frame.size[0]}x{frame.size[1]}, the frames before "
                    f"it {selector.size[0]}x{selector.size[1]}: calibrate one resolution at a time")
            count += 1
            gray = cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY)
            view = board.detect(gray)
            if view is not None:
                selector.add(view, gray, frame.index)
            if on_frame and not on_frame(frame, view, selector):
                break
    except KeyboardInterrupt:
        pass
    if selector is None:
        raise FacetrackError("no frames to calibrate with")
    return selector, count


def solve(selector: ViewSelector, frames: int) -> Calibration:
    """Intrinsics and distortion from the selected views, or a one-line error that says what
    the user should film when there are too few."""
    selection = selector.select()
    if len(selection.views) < MIN_VIEWS:
        raise FacetrackError(_too_few(selection, frames))
    width, height = selector.size
    rms, matrix, distortion, _, _ = cv2.calibrateCamera(
        [c.view.object_points for c in selection.views],
        [c.view.image_points for c in selection.views],
        (width, height), None, None, flags=SOLVE_FLAGS)
    intrinsics = Intrinsics(float(matrix[0, 0]), float(matrix[1, 1]), float(matrix[0, 2]),
                            float(matrix[1, 2]), width, height,
                            distortion=tuple(float(d) for d in distortion.ravel()))
    return Calibration(intrinsics, float(rms), selection, frames)


def camera_file(calibration: Calibration, board: Board, source: str) -> dict:
    """The camera file's content: the fields ``load_camera`` reads, then provenance."""
    camera, selection = calibration.intrinsics, calibration.selection
    return {
        "format": CAMERA_FORMAT,
        "version": CAMERA_VERSION,
        "image_size": [camera.width, camera.height],
        "fx": camera.fx,
        "fy": camera.fy,
        "cx": camera.cx,
        "cy": camera.cy,
        "distortion": list(camera.distortion),
        "distortion_model": "opencv k1 k2 p1 p2 k3",
        "rms_px": calibration.rms,
        "views": {"frames": calibration.frames, "found": selection.found,
                  "duplicates": selection.duplicates, "blurred": selection.blurred,
                  "used": len(selection.views),
                  "used_frames": [c.frame for c in selection.views]},
        "board": board.describe(),
        "source": source,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "facetrack": version("facetrack"),
    }


def write_camera_file(path: str | Path, content: dict) -> None:
    try:
        Path(path).write_text(json.dumps(content, indent=2) + "\n")
    except OSError as error:
        raise SinkError(f"cannot write camera file {path}: {error.strerror}") from None


def _too_few(selection: Selection, frames: int) -> str:
    text = (f"found {len(selection.views)} usable board views in {frames} frames, need at "
            f"least {MIN_VIEWS}: show the whole board, tilted, in more places of the image")
    if selection.found == 0:
        return text + (" (no board found at all: check --board against the printed board; a "
                       "checkerboard is named by its inner corners, 10x7 squares is 9x6)")
    return text + (f" ({selection.found} detections: {selection.duplicates} near-duplicates, "
                   f"{selection.blurred} blurred)")
