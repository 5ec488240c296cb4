"""Camera calibration end to end: boards rendered through a known camera (intrinsics and lens
distortion), calibrated by the ``facetrack`` command, checked against the truth."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from calibrate.boards import Board, BoardView, CharucoBoard, Checkerboard
from calibrate.camera import MIN_VIEWS, collect_views
from calibrate.coverage import CoverageDisplay
from calibrate.intrinsics import Intrinsics, load_camera
from calibrate.views import ViewSelector
from streams.errors import FacetrackError
from streams.frame import Frame
from streams.recording import read_records
from tracker.pipeline import FaceTracker

from cli_helpers import FACETRACK, assert_one_line_error, facetrack
from stream_helpers import mpegts, paced_tcp_stream, write_video

SIZE = (640, 480)
TRUTH = Intrinsics(600.0, 606.0, 326.0, 236.0, *SIZE,
                   distortion=(-0.12, 0.06, 0.0008, -0.0006, 0.0))
CHECKERBOARD = Checkerboard((9, 6), 25.0)
CHARUCO = CharucoBoard((7, 5), 30.0, 22.0, "DICT_5X5_100")
PIXELS_PER_SQUARE = 60
BOARD_VIDEO = {"crf": "12"}  # libx264 close to lossless: corners as sharp as rendered






class Renderer:
    """Pictures of a board as the TRUTH camera takes them: each output pixel looks up where the
    distortion-free pinhole would have seen it, then the board point there."""

    def __init__(self, board: Board) -> None:
        self.board = board
        # Blurred against aliasing: views show a square at 15-45 pixels, the image has 60.
        self.image = cv2.GaussianBlur(board.image(PIXELS_PER_SQUARE, margin=PIXELS_PER_SQUARE),
                                      (0, 0), 1.0)
        scale = PIXELS_PER_SQUARE / board.square
        offset = PIXELS_PER_SQUARE - 0.5
        self._to_board_pixels = np.array([[scale, 0, offset], [0, scale, offset], [0, 0, 1]])
        grid = np.indices(SIZE[::-1], np.float64)[::-1].reshape(2, -1).T
        ideal = cv2.undistortPoints(grid[:, None], TRUTH.matrix, np.array(TRUTH.distortion),
                                    P=TRUTH.matrix)[:, 0]
        self._ideal = np.hstack([ideal, np.ones((len(ideal), 1))]).T

    def render(self, rvec: np.ndarray, tvec: np.ndarray, blur: float, rng) -> np.ndarray:
        rotation = cv2.Rodrigues(rvec)[0]
        plane = TRUTH.matrix @ np.column_stack([rotation[:, 0], rotation[:, 1], tvec])
        maps = self._to_board_pixels @ np.linalg.inv(plane) @ self._ideal
        maps = (maps[:2] / maps[2]).astype(np.float32).reshape(2, SIZE[1], SIZE[0])
        gray = cv2.remap(self.image, maps[0], maps[1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=110)
        gray = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), blur)
        gray += rng.normal(0, 2.0, gray.shape)
        return cv2.cvtColor(np.clip(gray, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2RGB)

    def visible(self, rvec: np.ndarray, tvec: np.ndarray, whole: bool) -> bool:
        """Whether the board shows: all of it (with a margin), or at least its centre."""
        points = self.board.outline if whole else self.board.outline.mean(axis=0, keepdims=True)
        pixels = cv2.projectPoints(points, rvec, tvec, TRUTH.matrix,
                                   np.array(TRUTH.distortion))[0][:, 0]
        return bool((pixels > 15).all() and (pixels < np.array(SIZE) - 15).all())


def random_poses(renderer: Renderer, count: int, rng, *, whole: bool) -> list[tuple]:
    """Board poses spread over the picture, distances and tilts (up to 40°)."""
    width, height = renderer.board.outline[2, :2]
    poses = []
    while len(poses) < count:
        tilt = np.radians([rng.uniform(-40, 40), rng.uniform(-40, 40), rng.uniform(-20, 20)])
        rotation = (cv2.Rodrigues(np.array([tilt[0], 0, 0]))[0]
                    @ cv2.Rodrigues(np.array([0, tilt[1], 0]))[0]
                    @ cv2.Rodrigues(np.array([0, 0, tilt[2]]))[0])
        centre = rng.uniform([0.15, 0.15], [0.85, 0.85]) * SIZE
        ray = np.linalg.solve(TRUTH.matrix, [*centre, 1.0])
        tvec = ray * rng.uniform(380, 800) - rotation @ [width / 2, height / 2, 0]
        rvec = cv2.Rodrigues(rotation)[0].ravel()
        if renderer.visible(rvec, tvec, whole):
            poses.append((rvec, tvec))
    return poses


def calibration_frames(board: Board, *, sharp: int, blurred: int, repeats: int,
                       whole: bool, seed: int) -> tuple[list[np.ndarray], list[int]]:
    """``sharp`` distinct views, each of the first ``repeats`` followed by 3 near-identical
    frames (a video's neighbours), then ``blurred`` distinct blurred views, then an empty frame.
    Returns the frames and the indices of the blurred ones."""
    rng = np.random.default_rng(seed)
    renderer = Renderer(board)
    frames, blurred_frames = [], []
    poses = random_poses(renderer, sharp + blurred, rng, whole=whole)
    for index, (rvec, tvec) in enumerate(poses):
        is_blurred = index >= sharp
        copies = 4 if index < repeats else 1
        for _ in range(copies):
            jitter = rng.normal(0, [0.002] * 3), rng.normal(0, [0.5] * 3)
            if is_blurred:
                blurred_frames.append(len(frames))
            frames.append(renderer.render(rvec + jitter[0], tvec + jitter[1],
                                          3.0 if is_blurred else 0.7, rng))
    frames.append(np.full((*SIZE[::-1], 3), 110, np.uint8))
    return frames, blurred_frames


def write_images(folder: Path, frames: list[np.ndarray]) -> Path:
    folder.mkdir()
    for index, image in enumerate(frames):
        cv2.imwrite(str(folder / f"view_{index}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


def assert_close_to_truth(camera: Intrinsics, tolerance: float = 0.01) -> dict[str, float]:
    errors = {name: abs(getattr(camera, name) / getattr(TRUTH, name) - 1)
              for name in ("fx", "fy", "cx", "cy")}
    assert max(errors.values()) < tolerance, (camera, errors)
    return errors


@pytest.fixture(scope="module")
def checkerboard_result(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, list]:
    folder = tmp_path_factory.mktemp("checkerboard")
    frames, blurred = calibration_frames(CHECKERBOARD, sharp=30, blurred=5, repeats=6,
                                         whole=True, seed=1)
    write_video(folder / "board.mp4", frames, options=BOARD_VIDEO)
    out = folder / "cam.json"
    result = facetrack("calibrate", "camera", "--source", str(folder / "board.mp4"),
                       "--board", "9x6", "--square", "25", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out, json.loads(out.read_text()), blurred


def test_checkerboard_video(checkerboard_result: tuple[Path, dict, list]) -> None:
    out, content, blurred = checkerboard_result
    camera = load_camera(out)
    assert camera.assumed is False and (camera.width, camera.height) == SIZE
    assert_close_to_truth(camera)
    assert abs(camera.distortion[0] - TRUTH.distortion[0]) < 0.02
    views = content["views"]
    assert views["found"] == 30 + 6 * 3 + 5
    assert views["used"] == 30 and views["duplicates"] == 18 and views["blurred"] == 5
    assert not set(views["used_frames"]) & set(blurred)
    assert content["rms_px"] < 0.5
    assert content["board"] == {"type": "checkerboard", "inner_corners": [9, 6],
                                "square_mm": 25.0}


def test_charuco_folder_partly_hidden_views(tmp_path: Path) -> None:
    frames, _ = calibration_frames(CHARUCO, sharp=30, blurred=0, repeats=0, whole=False, seed=2)
    folder = write_images(tmp_path / "views", frames)
    out = tmp_path / "cam.json"
    result = facetrack("calibrate", "camera", "--source", str(folder), "--charuco",
                       "--board", "7x5", "--square", "30", "--marker", "22", "--out", str(out),
                       "--max-views", "20")
    assert result.returncode == 0, result.stderr
    assert_close_to_truth(load_camera(out))
    content = json.loads(out.read_text())
    assert content["views"]["used"] == 20 and content["views"]["found"] >= 28
    assert content["board"]["type"] == "charuco" and content["board"]["squares"] == [7, 5]


def test_too_few_views_is_one_line(tmp_path: Path) -> None:
    frames, _ = calibration_frames(CHECKERBOARD, sharp=2, blurred=0, repeats=0, whole=True,
                                   seed=3)
    folder = write_images(tmp_path / "two", frames)
    result = facetrack("calibrate", "camera", "--source", str(folder), "--board", "9x6",
                       "--square", "25", "--out", str(tmp_path / "cam.json"))
    line = assert_one_line_error(result, "found 2 usable board views", "need at least 8")
    assert "tilted" in line
    assert not (tmp_path / "cam.json").exists()


@pytest.mark.parametrize("where", ["a folder", "under a file"])
def test_an_unwritable_camera_file_is_refused_before_capture(tmp_path: Path, where: str) -> None:
    (tmp_path / "file").write_text("")
    out = tmp_path if where == "a folder" else tmp_path / "file" / "cam.json"
    result = facetrack("calibrate", "camera", "--source", str(tmp_path / "missing.mp4"),
                       "--board", "9x6", "--square", "25", "--out", str(out))
    assert_one_line_error(result, f"cannot write {out}")  # not the missing source: it is later


def test_sigterm_solves_a_live_calibration_as_ctrl_c_does(tmp_path: Path) -> None:
    """A live calibration runs until it is stopped. Stopped by SIGTERM (`timeout`, a service
    manager) it solves with the views kept so far, as after Ctrl-C, rather than die with
    nothing written."""
    frames, _ = calibration_frames(CHECKERBOARD, sharp=30, blurred=0, repeats=0, whole=True,
                                   seed=2)
    out = tmp_path / "cam.json"
    with paced_tcp_stream(mpegts(frames, BOARD_VIDEO), seconds=20) as url:
        process = subprocess.Popen([FACETRACK, "calibrate", "camera", "--source", url, "--board",
                                    "9x6", "--square", "25", "--out", str(out)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(14)  # about 20 of the 30 views sent; the stream's end would end it too
        assert process.poll() is None, process.communicate()
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert_close_to_truth(load_camera(out), tolerance=0.03)
    views = int(re.search(r"over (\d+) views", stdout).group(1))
    assert MIN_VIEWS <= views < 30, stdout


def test_wrong_board_size_says_none_found(tmp_path: Path) -> None:
    frames, _ = calibration_frames(CHECKERBOARD, sharp=1, blurred=0, repeats=0, whole=True,
                                   seed=3)
    folder = write_images(tmp_path / "one", frames)
    result = facetrack("calibrate", "camera", "--source", str(folder), "--board", "10x7",
                       "--square", "25", "--out", str(tmp_path / "cam.json"))
    assert_one_line_error(result, "found 0 usable board views", "inner corners")


def test_board_images_are_found_again(tmp_path: Path) -> None:
    """``calibrate board`` draws boards the detectors find, with every corner."""
    for args, board in ((["--board", "9x6", "--square", "25"], CHECKERBOARD),
                        (["--charuco", "--board", "7x5", "--square", "30", "--marker", "22"],
                         CHARUCO)):
        out = tmp_path / "board.png"
        result = facetrack("calibrate", "board", *args, "--dpi", "100", "--out", str(out))
        assert result.returncode == 0, result.stderr
        view = board.detect(cv2.imread(str(out), cv2.IMREAD_GRAYSCALE))
        assert view is not None and len(view.image_points) == (board.squares[0] - 1) * (
            board.squares[1] - 1)


@pytest.mark.parametrize("content, words", [
    ('{"hello": 1}', ["not a camera file", "facetrack calibrate camera"]),
    ("not json", ["not a camera file", "not JSON"]),
    ('{"format": "facetrack-camera", "version": 9}', ["version 9"]),
    ('{"format": "facetrack-camera", "version": 1, "fx": 500}', ["no fy, cx, cy"]),
    ('{"format": "facetrack-camera", "version": 1, "fx": -5, "fy": 500, "cx": 1, "cy": 1, '
     '"distortion": [0, 0, 0, 0, 0], "image_size": [640, 480]}', ["positive"]),
])
def test_load_camera_refuses_other_files(tmp_path: Path, content: str, words: list[str]) -> None:
    path = tmp_path / "cam.json"
    path.write_text(content)
    with pytest.raises(FacetrackError) as error:
        load_camera(path)
    assert "\n" not in str(error.value)
    for word in words:
        assert word in str(error.value)


def test_run_refuses_a_foreign_camera_file(tmp_path: Path) -> None:
    path = tmp_path / "package.json"
    path.write_text('{"name": "left-pad"}')
    result = facetrack("run", "--source", str(tmp_path), "--camera", str(path))
    assert_one_line_error(result, "package.json", "not a camera file")


def test_run_records_the_calibrated_intrinsics(checkerboard_result: tuple[Path, dict, list],
                                               tmp_path: Path) -> None:
    out, _, _ = checkerboard_result
    image = tmp_path / "half.png"  # half the calibrated resolution: the intrinsics scale
    cv2.imwrite(str(image), np.full((SIZE[1] // 2, SIZE[0] // 2, 3), 128, np.uint8))
    record = tmp_path / "r.jsonl"
    result = facetrack("run", "--source", str(image), "--camera", str(out), "--record",
                       str(record), "--quiet")
    assert result.returncode == 0, result.stderr
    header, _ = read_records(record)
    camera = load_camera(out)
    intrinsics = header["intrinsics"]
    assert intrinsics["assumed"] is False and header["landmarks_undistorted"] is True
    assert header["image_size"] == [SIZE[0] // 2, SIZE[1] // 2]
    assert intrinsics["fx"] == pytest.approx(camera.fx / 2)
    assert intrinsics["cx"] == pytest.approx((camera.cx + 0.5) / 2 - 0.5)
    assert intrinsics["distortion"] == pytest.approx(camera.distortion)


def test_scaling_refuses_another_shape() -> None:
    with pytest.raises(FacetrackError, match="calibrate at 640x360"):
        TRUTH.scaled(640, 360)


def test_undistort_inverts_the_lens() -> None:
    rng = np.random.default_rng(0)
    ideal = rng.uniform([0, 0], SIZE, (200, 2))
    rays = np.hstack([(ideal - [TRUTH.cx, TRUTH.cy]) / [TRUTH.fx, TRUTH.fy], np.ones((200, 1))])
    seen = cv2.projectPoints(rays, np.zeros(3), np.zeros(3), TRUTH.matrix,
                             np.array(TRUTH.distortion))[0][:, 0]
    points = np.hstack([seen, rng.normal(size=(200, 1))]).astype(np.float32)
    undistorted = TRUTH.undistort(points)
    assert np.abs(undistorted[:, :2] - ideal).max() < 0.01
    assert (undistorted[:, 2] == points[:, 2]).all()
    assert np.abs(seen - ideal).max() > 10  # the lens does move them


def test_tracker_undistorts_landmarks(footage_dir: Path) -> None:
    image = cv2.cvtColor(cv2.imread(str(footage_dir / "single_face.jpg")), cv2.COLOR_BGR2RGB)
    frame = Frame("face", 0, 0.0, image)
    width, height = frame.size
    camera = Intrinsics(width, width, width / 2, height / 2, width, height,
                        distortion=TRUTH.distortion)
    with FaceTracker() as plain, FaceTracker(camera=camera) as corrected:
        seen = plain.process(frame)[0].observation
        undistorted = corrected.process(frame)[0].observation
    assert np.allclose(undistorted.landmarks, camera.undistort(seen.landmarks), atol=0.01)
    assert np.abs(undistorted.landmarks - seen.landmarks).max() > 0.3  # a centred face
    assert undistorted.bbox[0] == undistorted.landmarks[:, 0].min()


def test_coverage_display_shades_the_kept_views() -> None:
    class Window:
        def show(self, image: np.ndarray) -> bool:
            self.image = image
            return True

    frames, _ = calibration_frames(CHECKERBOARD, sharp=2, blurred=0, repeats=0, whole=True,
                                   seed=3)
    window = Window()
    display = CoverageDisplay(window, min_views=8)
    shown = []

    def on_frame(frame: Frame, view: BoardView | None, selector: ViewSelector) -> bool:
        shown.append(display.show(frame, view, selector))
        return True

    selector, _ = collect_views([Frame("v", i, i, f) for i, f in enumerate(frames)],
                                CHECKERBOARD, on_frame=on_frame)
    assert shown == [True] * 3 and len(selector.candidates) == 2
    changed = (window.image != frames[-1]).any(axis=2)
    shaded = np.zeros(changed.shape, np.uint8)
    for candidate in selector.candidates:
        cv2.fillConvexPoly(shaded, candidate.outline.astype(np.int32), 1)
    assert changed[shaded > 0].mean() > 0.95 and 0.05 < shaded.mean() < 0.9
