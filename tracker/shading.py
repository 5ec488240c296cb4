"""The image's shading at each landmark: what the landmarks' positions cannot tell the regressor.

MediaPipe places its landmarks a little differently with the light and the look of a face, and
positions alone do not show how the surface slants between them. The brightness of the image
around each landmark shows both (`docs/regressor.md`, "Reading the shading"). It is read from
the face's crop scaled to one size (`FACE_SIZE`), whatever the camera's resolution, and blurred
there by a fortieth of the face's size, so that skin texture, sensor noise and a pixel of
landmark jitter drop out; then standardised per face (minus its mean, over its spread), so that
a brighter light or a camera's gain changes nothing. Scaled so, every face costs about what a
small one does.
"""

from __future__ import annotations

import math
from dataclasses import replace

import cv2
import numpy as np
from mediapipe.python.solutions import face_mesh

from tracker.landmarks import FaceObservation

# Landmarks whose shading the regressor does not read: the eyelids and irises. Real eyes are
# lashes, make-up and catchlights that no render matches (a closed, made-up eye reads as dark
# as an open one), and MediaPipe's dense eyelid landmarks show a blink plainly by themselves.
EYES = np.array(sorted({i for edge in (face_mesh.FACEMESH_LEFT_EYE | face_mesh.FACEMESH_RIGHT_EYE
                                       | face_mesh.FACEMESH_LEFT_IRIS
                                       | face_mesh.FACEMESH_RIGHT_IRIS) for i in edge}
                       | {468, 473}))  # and the irises' centres

FACE_SIZE = 40.0  # pixels: the landmarks' RMS distance from their centre, once scaled
BLUR = FACE_SIZE / 40  # Gaussian sigma at that size, in pixels: a fortieth of the face
REACH = math.ceil(4 * BLUR) + 2  # pixels at that size around the landmarks that the blur reads


def shading(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(L,) float32: IMAGE's (H, W, 3 RGB) blurred brightness at LANDMARKS (L, >=2 pixels, as
    MediaPipe found them in this image, not undistorted), standardised."""
    points = np.ascontiguousarray(np.asarray(landmarks, np.float32)[:, :2])
    # OpenCV's reductions, not numpy's: a tenth of the cost on arrays this small
    _, spread = cv2.meanStdDev(points.reshape(-1, 1, 2))
    scale = FACE_SIZE / max(math.sqrt(float((spread ** 2).sum())), 1e-3)
    margin = math.ceil(REACH / scale)
    height, width = image.shape[:2]
    left, top, box_width, box_height = cv2.boundingRect(points)  # whole pixels around them
    x0, y0 = max(left - margin, 0), max(top - margin, 0)
    x1 = min(left + box_width + margin + 1, width)
    y1 = min(top + box_height + margin + 1, height)
    if x1 <= x0 or y1 <= y0:  # every landmark off the image: nothing to read
        return np.zeros(len(points), np.float32)
    gray = cv2.cvtColor(np.ascontiguousarray(image[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
    # Halve (a Gaussian pyramid: cheap, and free of aliasing) while the face is over twice the
    # size, then scale the rest of the way linearly.
    halvings = 0
    while scale * 2 ** halvings < 0.5 and min(gray.shape) > 1:
        gray = cv2.pyrDown(gray)
        halvings += 1
    size = (max(round((x1 - x0) * scale), 1), max(round((y1 - y0) * scale), 1))
    blurred = cv2.GaussianBlur(cv2.resize(gray, size, interpolation=cv2.INTER_LINEAR).astype(
        np.float32), (0, 0), BLUR)
    # Where the landmarks fall: pyramid pixel i sits at pixel 2i of the level below, and the
    # resize maps pixel centres onto pixel centres. One (1, L, 2) map of (x, y) is one remap.
    ratio = np.float32([size[0] / gray.shape[1], size[1] / gray.shape[0]])
    where = (points - np.float32([x0, y0])) * (ratio / 2 ** halvings) + (ratio - 1) / 2
    values = cv2.remap(blurred, where[None], None, cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)[0]
    mean, spread = cv2.meanStdDev(values)
    return ((values - mean[0, 0]) / max(spread[0, 0], 1e-3)).astype(np.float32)


def with_shading(image: np.ndarray, faces: list[FaceObservation]) -> list[FaceObservation]:
    """FACES, found in IMAGE, with its `shading` at their landmarks (before they are
    undistorted: where MediaPipe found them in this image)."""
    return [replace(face, shading=shading(image, face.landmarks)) for face in faces]
