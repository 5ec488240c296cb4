"""Calibration boards: where their corners are (millimetres, on the board plane), how to find
them in a picture, and how to draw one for printing.

Both kinds put the origin at the board's outer top-left corner, x along the columns, y down the
rows, z = 0, so a board image at ``p`` pixels per square with a margin of ``m`` pixels shows
board point (x, y) at pixel (m + x / square * p - 0.5, m + y / square * p - 0.5).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import cv2
import numpy as np

from streams.errors import FacetrackError

# Checkerboards are found in a copy no larger than this (long side, pixels): the detector slows
# down with the pixel count, and the corners are refined in the full image afterwards.
DETECT_SIDE = 1000
SUBPIX_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 40, 0.01)


@dataclass(frozen=True)
class BoardView:
    """The corners of a board found in one picture: board points and their image pixels."""

    object_points: np.ndarray  # (N, 3) float32, millimetres
    image_points: np.ndarray  # (N, 2) float32, pixels


class Board(ABC):
    """A printed pattern of ``squares`` (columns, rows) squares of ``square`` millimetres."""

    def __init__(self, squares: tuple[int, int], square: float) -> None:
        if min(squares) < 3:
            raise FacetrackError(f"a board of {squares[0]}x{squares[1]} squares is too small: "
                                 "at least 3 in each direction")
        if square <= 0:
            raise FacetrackError(f"the square size must be positive, got {square:g} mm")
        self.squares = squares
        self.square = square

    @property
    def outline(self) -> np.ndarray:
        """(4, 3) float32: the board's outer corners, for its pose and extent in a view."""
        width, height = self.squares[0] * self.square, self.squares[1] * self.square
        return np.array([[0, 0, 0], [width, 0, 0], [width, height, 0], [0, height, 0]],
                        np.float32)

    @abstractmethod
    def detect(self, gray: np.ndarray) -> BoardView | None:
        """The board's corners in a grey image, refined to a fraction of a pixel; None when the
        board is not there or too little of it shows."""

    @abstractmethod
    def image(self, pixels_per_square: int, margin: int) -> np.ndarray:
        """The board as a grey uint8 image for printing, white ``margin`` pixels around it."""

    @abstractmethod
    def describe(self) -> dict:
        """What the camera file records about the board."""


class Checkerboard(Board):
    """A plain chessboard, named as OpenCV names it: by its inner corners (``corners``, columns
    by rows; a board of 10×7 squares has 9×6). All of it must show to be found."""

    def __init__(self, corners: tuple[int, int], square: float) -> None:
        super().__init__((corners[0] + 1, corners[1] + 1), square)
        self.corners = corners
        cols, rows = corners
        grid = np.mgrid[1:cols + 1, 1:rows + 1].T.reshape(-1, 2) * square
        self._object_points = np.hstack([grid, np.zeros((len(grid), 1))]).astype(np.float32)

    def detect(self, gray: np.ndarray) -> BoardView | None:
        scale = min(1.0, DETECT_SIDE / max(gray.shape))
        small = gray if scale == 1.0 else cv2.resize(gray, None, fx=scale, fy=scale,
                                                     interpolation=cv2.INTER_AREA)
        flags = (cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
                 | cv2.CALIB_CB_FAST_CHECK)
        found, points = cv2.findChessboardCorners(small, self.corners, flags=flags)
        if not found:
            return None
        # Back to full-size pixel coordinates (pixel centres at integers), then refine there.
        points = ((points + 0.5) / scale - 0.5).astype(np.float32)
        window = _subpix_window(points[:, 0])
        points = cv2.cornerSubPix(gray, points, (window, window), (-1, -1), SUBPIX_CRITERIA)
        return BoardView(self._object_points, points[:, 0])

    def image(self, pixels_per_square: int, margin: int) -> np.ndarray:
        cols, rows = self.squares
        cells = (np.indices((rows, cols)).sum(axis=0) % 2).astype(np.uint8) * 255
        board = np.kron(cells, np.ones((pixels_per_square, pixels_per_square), np.uint8))
        return cv2.copyMakeBorder(board, margin, margin, margin, margin, cv2.BORDER_CONSTANT,
                                  value=255)

    def describe(self) -> dict:
        return {"type": "checkerboard", "inner_corners": list(self.corners),
                "square_mm": self.square}


class CharucoBoard(Board):
    """A ChArUco board: a chessboard with ArUco markers in its white squares, named by its
    squares as OpenCV and calib.io name it. Each corner is identified, so a partly hidden or
    cut-off board still counts (from ``MIN_CORNERS`` corners)."""

    MIN_CORNERS = 8

    def __init__(self, squares: tuple[int, int], square: float, marker: float,
                 dictionary: str) -> None:
        super().__init__(squares, square)
        if not 0 < marker < square:
            raise FacetrackError(f"the marker size ({marker:g} mm) must be positive and smaller "
                                 f"than the square ({square:g} mm)")
        code = getattr(cv2.aruco, dictionary, None) if dictionary.startswith("DICT_") else None
        if code is None:
            raise FacetrackError(f"unknown ArUco dictionary {dictionary}: use one of OpenCV's "
                                 "names, e.g. DICT_5X5_100, DICT_4X4_50, DICT_6X6_250")
        self.marker = marker
        self.dictionary = dictionary
        self._board = cv2.aruco.CharucoBoard(squares, square, marker,
                                             cv2.aruco.getPredefinedDictionary(code))
        if self._board.getIds().max() >= self._board.getDictionary().bytesList.shape[0]:
            raise FacetrackError(f"{dictionary} has too few markers for {squares[0]}x{squares[1]}"
                                 " squares: pick a larger dictionary, e.g. DICT_5X5_250")
        self._detector = cv2.aruco.CharucoDetector(self._board)

    def detect(self, gray: np.ndarray) -> BoardView | None:
        # Full size: the detector refines each corner in a window kept clear of the markers
        # beside it, which a second refinement here would not know to do.
        corners, ids, _, _ = self._detector.detectBoard(gray)
        if ids is None or len(ids) < self.MIN_CORNERS:
            return None
        object_points, image_points = self._board.matchImagePoints(corners, ids)
        object_points = object_points.reshape(-1, 3)
        spread = object_points[:, :2] - object_points[:, :2].mean(axis=0)
        if np.linalg.matrix_rank(spread, tol=self.square / 2) < 2:
            return None  # corners along one line say nothing about the plane's tilt
        return BoardView(object_points, image_points.reshape(-1, 2))

    def image(self, pixels_per_square: int, margin: int) -> np.ndarray:
        cols, rows = self.squares
        size = (cols * pixels_per_square + 2 * margin, rows * pixels_per_square + 2 * margin)
        return self._board.generateImage(size, marginSize=margin)

    def describe(self) -> dict:
        return {"type": "charuco", "squares": list(self.squares), "square_mm": self.square,
                "marker_mm": self.marker, "dictionary": self.dictionary}


def _subpix_window(points: np.ndarray) -> int:
    """Half-size of the corner refinement window: a third of the closest corner spacing, so a
    window never reaches a neighbouring corner."""
    gaps = np.linalg.norm(points[:, None] - points[None], axis=2)
    np.fill_diagonal(gaps, np.inf)
    return int(np.clip(gaps.min() / 3, 2, 15))
