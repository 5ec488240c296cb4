"""Pinhole camera intrinsics, with the assumed default used until a camera is calibrated, and
the camera file ``facetrack calibrate camera`` writes (see docs/camera-calibration.md)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from calibrate.files import load_versioned
from streams.errors import FacetrackError

DEFAULT_FOV_DEGREES = 60.0
CAMERA_FORMAT = "facetrack-camera"
CAMERA_VERSION = 1
# OpenCV's distortion models: k1 k2 p1 p2 [k3 [k4 k5 k6 [s1 s2 s3 s4 [tx ty]]]].
DISTORTION_LENGTHS = (4, 5, 8, 12, 14)


@dataclass(frozen=True)
class Intrinsics:
    """``fx, fy, cx, cy`` in pixels; ``assumed`` is True when they were not measured, so
    consumers of published metric poses know the scale is a guess."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    assumed: bool = False
    distortion: tuple[float, ...] = ()  # OpenCV's coefficients; () is a distortion-free lens

    @classmethod
    def from_fov(cls, width: int, height: int,
                 fov_degrees: float = DEFAULT_FOV_DEGREES) -> Intrinsics:
        """Square pixels, principal point at the image centre, horizontal field of view."""
        focal = width / 2 / math.tan(math.radians(fov_degrees) / 2)
        return cls(focal, focal, width / 2, height / 2, width, height, assumed=True)

    @property
    def matrix(self) -> np.ndarray:
        """The 3×3 camera matrix K."""
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]])

    def scaled(self, width: int, height: int) -> Intrinsics:
        """The same camera delivering ``width``×``height`` frames: a camera mode or a resize that
        scales the whole picture (not one that crops it) keeps the field of view."""
        if (width, height) == (self.width, self.height):
            return self
        sx, sy = width / self.width, height / self.height
        if abs(sx / sy - 1) > 0.01:
            raise FacetrackError(
                f"the camera was calibrated at {self.width}x{self.height}, the frames are "
                f"{width}x{height} (another shape, so another crop): calibrate at {width}x{height}")
        # Pixel centres sit at integer coordinates, so the image edge is at -0.5.
        return replace(self, fx=self.fx * sx, fy=self.fy * sy, cx=(self.cx + 0.5) * sx - 0.5,
                       cy=(self.cy + 0.5) * sy - 0.5, width=width, height=height)

    @property
    def distorted(self) -> bool:
        """Whether the lens bends the picture (any non-zero distortion coefficient)."""
        return any(self.distortion)

    def undistort(self, points: np.ndarray) -> np.ndarray:
        """(N, 2+) pixel points where a distortion-free pinhole camera would see them: the model
        fit assumes a pinhole. x, y change; further columns (MediaPipe's z) are kept."""
        if not self.distorted:
            return points
        matrix = self.matrix
        xy = cv2.undistortPoints(points[:, None, :2].astype(np.float64), matrix,
                                 np.array(self.distortion), P=matrix)
        result = points.copy()
        result[:, :2] = xy[:, 0]
        return result

    def to_dict(self) -> dict:
        return asdict(self)


def load_camera(path: str | Path) -> Intrinsics:
    """The calibrated intrinsics of a camera file, checked: anything else is a one-line error."""
    data = load_versioned(path, "camera file", CAMERA_FORMAT, CAMERA_VERSION,
                          "make one with facetrack calibrate camera")
    missing = [k for k in ("fx", "fy", "cx", "cy", "distortion", "image_size") if k not in data]
    if missing:
        raise FacetrackError(f"{path} is not a complete camera file: no {', '.join(missing)}")
    try:
        return _checked(data)
    except (TypeError, ValueError) as error:
        raise FacetrackError(f"{path} is not a valid camera file: {error}") from None


def _checked(data: dict) -> Intrinsics:
    """Intrinsics from a camera file's fields; TypeError or ValueError says what is wrong."""
    fx, fy, cx, cy = (float(data[k]) for k in ("fx", "fy", "cx", "cy"))
    width, height = (int(v) for v in data["image_size"])
    distortion = tuple(float(v) for v in data["distortion"])
    if not (fx > 0 and fy > 0 and width > 0 and height > 0):
        raise ValueError("fx, fy and the image size must be positive")
    if not all(map(math.isfinite, (cx, cy, *distortion))):
        raise ValueError("cx, cy and the distortion coefficients must be finite")
    if len(distortion) not in DISTORTION_LENGTHS:
        raise ValueError(f"{len(distortion)} distortion coefficients, not one of "
                         f"{', '.join(map(str, DISTORTION_LENGTHS))}")
    return Intrinsics(fx, fy, cx, cy, width, height, distortion=distortion)
