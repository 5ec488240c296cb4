"""The image's shading at each landmark: what the landmarks' positions cannot tell the regressor.

MediaPipe places its landmarks a little differently with the light and the look of a face, and
positions alone do not show how the surface slants between them. The brightness of the image
around each landmark shows both (`docs/regressor.md`, "What limits accuracy"). It is blurred to
a fortieth of the face's size, so that skin texture, sensor noise and a pixel of landmark jitter
drop out, and standardised per face (minus its mean, over its spread), so that a brighter light
or a camera's gain changes nothing.
"""

from __future__ import annotations

import cv2
import numpy as np
from mediapipe.python.solutions import face_mesh

# Landmarks whose shading the regressor does not read: the eyelids and irises. Real eyes are
# lashes, make-up and catchlights that no render matches (a closed, made-up eye reads as dark
# as an open one), and MediaPipe's dense eyelid landmarks show a blink plainly by themselves.
EYES = np.array(sorted({i for edge in (face_mesh.FACEMESH_LEFT_EYE | face_mesh.FACEMESH_RIGHT_EYE
                                       | face_mesh.FACEMESH_LEFT_IRIS
                                       | face_mesh.FACEMESH_RIGHT_IRIS) for i in edge}
                       | {468, 473}))  # and the irises' centres

BLUR = 1 / 40  # Gaussian sigma, in face sizes (the landmarks' RMS distance from their centre)
MIN_BLUR = 0.8  # pixels: a tiny face still gets its sensor noise blurred
# Faces this many pixels in size or more are read from their crop shrunk by a whole factor
# (size // SHRINK_SIZE, pixel areas averaged) before the blur, so a face of any resolution
# costs about what a 100-pixel one does; the training renders' faces are all smaller than twice
# this and are read at full resolution.
SHRINK_SIZE = 60.0


def shading(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(L,) float32: IMAGE's (H, W, 3 RGB) blurred brightness at LANDMARKS (L, >=2 pixels, as
    MediaPipe found them in this image, not undistorted), standardised. Only the face's
    surroundings are blurred: a few tenths of a millisecond for a face of any size."""
    points = np.asarray(landmarks, np.float32)[:, :2]
    size = float(np.sqrt(np.square(points - points.mean(axis=0)).sum(axis=1).mean()))
    shrink = max(1, int(size // SHRINK_SIZE))
    sigma = max(size * BLUR, MIN_BLUR) / shrink  # in the shrunk crop's pixels
    margin = shrink * (int(np.ceil(4 * sigma)) + 2)
    height, width = image.shape[:2]
    x0, y0 = np.maximum(np.floor(points.min(axis=0)).astype(int) - margin, 0)
    x1, y1 = np.minimum(np.ceil(points.max(axis=0)).astype(int) + margin + 1, [width, height])
    if x1 - x0 < shrink or y1 - y0 < shrink:  # every landmark off the image: nothing to read
        return np.zeros(len(points), np.float32)
    crop = np.ascontiguousarray(image[y0:y1, x0:x1])
    if shrink > 1:
        crop = cv2.resize(crop, ((x1 - x0) // shrink, (y1 - y0) // shrink),
                          interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    blurred = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), sigma)
    # pixel centres: pixel i of the shrunk crop covers pixels shrink*i .. shrink*(i+1)-1
    x = (points[:, 0] - x0 + 0.5) / shrink - 0.5
    y = (points[:, 1] - y0 + 0.5) / shrink - 0.5
    values = cv2.remap(blurred, x[None], y[None], cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)[0]
    spread = float(values.std())
    return ((values - values.mean()) / max(spread, 1e-3)).astype(np.float32)
