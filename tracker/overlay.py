"""Annotates a frame in place: landmarks, face contours, track ids, the fitted head's axes (and
with a renderer its shaded mesh) and a status line.

MediaPipe's drawing utilities draw each point and edge with its own OpenCV call (about 4 ms a
face); here the points are one numpy scatter and all contours one ``cv2.polylines`` call.
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np
from mediapipe.python.solutions import face_mesh

from calibrate.intrinsics import Intrinsics
from tracker.face_model import posed
from tracker.regressor import FaceFit
from tracker.render import Renderer, draw_axes
from tracker.smoothing import FaceState
from tracker.tracks import TRACKING, TrackedFace

POINT_COLOR = (80, 255, 120)  # RGB, like the frames
CONTOUR_COLOR = (255, 255, 255)
IRIS_COLOR = (80, 200, 255)
TEXT_COLOR = (255, 255, 255)
SHADOW_COLOR = (0, 0, 0)


def _edges(connections: frozenset[tuple[int, int]]) -> np.ndarray:
    return np.array(sorted(connections), np.intp)


# What an overlay draws, each of which `Overlay` can leave out (`facetrack run --hide`).
LAYERS = ("landmarks", "axes", "ids", "status")


def layers(names: Iterable[str]) -> frozenset[str]:
    """NAMES as a set of `LAYERS`; a ValueError names any other."""
    chosen = frozenset(names)
    unknown = sorted(chosen - set(LAYERS))
    if unknown:
        raise ValueError(f"no overlay layer {', '.join(unknown)}: the layers are "
                         f"{', '.join(LAYERS)}")
    return chosen


class Overlay:
    """Draws what the tracker saw onto RGB frames: each face's landmarks and contours, its
    fitted head's axes (and with a renderer its shaded mesh) and track id, and a status line;
    HIDE names the `LAYERS` left out (a clean demo video: the mesh alone)."""

    def __init__(self, point_size: int = 2, mesh: Renderer | None = None,
                 hide: Iterable[str] = ()) -> None:
        self.point_size = point_size
        self.mesh = mesh  # draws each fitted face's shaded mesh when given
        self.hide = layers(hide)
        self._contours = _edges(face_mesh.FACEMESH_CONTOURS)
        self._irises = _edges(face_mesh.FACEMESH_IRISES)
        self._dot = np.stack(np.meshgrid(np.arange(point_size), np.arange(point_size)),
                             axis=-1).reshape(-1, 2)

    def draw(self, image: np.ndarray, faces: list[TrackedFace], status: str = "",
             camera: Intrinsics | None = None) -> np.ndarray:
        """Draw ``faces`` and ``status`` onto ``image`` (modified and returned); fitted heads
        too when the ``camera`` they were fitted with is given."""
        for face in faces:
            if face.status != TRACKING:
                continue
            if face.fit is not None and camera is not None:
                self._draw_fit(image, face.state or face.fit, camera)
            if "landmarks" not in self.hide:
                self._draw_landmarks(image, face.observation.landmarks[:, :2])
            if "ids" not in self.hide:
                x0, y0 = face.observation.bbox[:2]
                _text(image, f"#{face.track}", (int(x0), max(int(y0) - 6, 14)))
        if status and "status" not in self.hide:
            _text(image, status, (8, 20))
        return image

    def _draw_landmarks(self, image: np.ndarray, points: np.ndarray) -> None:
        self._draw_points(image, points)
        pixels = np.round(points).astype(np.int32)
        cv2.polylines(image, pixels[self._contours], False, CONTOUR_COLOR, 1, cv2.LINE_AA)
        cv2.polylines(image, pixels[self._irises], False, IRIS_COLOR, 1, cv2.LINE_AA)

    def _draw_fit(self, image: np.ndarray, fit: FaceFit | FaceState, camera: Intrinsics) -> None:
        """The head as published: smoothed when a smoother runs, else the regressor's fit."""
        if self.mesh is not None:
            vertices = posed(self.mesh.vertices(fit.identity, fit.expression), fit.rotation,
                             fit.translation)
            if (vertices[:, 2] > 1.0).all():  # never a head through the camera
                self.mesh.draw_mesh(image, vertices, camera)
        if "axes" not in self.hide:
            draw_axes(image, fit.rotation, fit.translation, camera)

    def _draw_points(self, image: np.ndarray, points: np.ndarray) -> None:
        """Square dots, all in one scatter."""
        height, width = image.shape[:2]
        xy = np.floor(points).astype(np.intp)[:, None, :] + self._dot
        x, y = xy[..., 0].ravel(), xy[..., 1].ravel()
        inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
        image[y[inside], x[inside]] = POINT_COLOR


def _text(image: np.ndarray, text: str, origin: tuple[int, int]) -> None:
    """Text on a dark box so it reads on any background (an outlined font costs 5× more)."""
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.5
    (width, height), baseline = cv2.getTextSize(text, font, scale, 1)
    x, y = origin
    cv2.rectangle(image, (x - 2, y - height - 3), (x + width + 2, y + baseline), SHADOW_COLOR,
                  cv2.FILLED)
    cv2.putText(image, text, origin, font, scale, TEXT_COLOR, 1, cv2.LINE_AA)
