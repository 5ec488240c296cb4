"""The per-frame pipeline, as one object: frames in, tracked faces out.

Modelled on MediaPipe's ``solutions``: a simple ``process`` over a graph of stages
(landmarks, then track ids; the regressor and smoother plug in here as they land).
"""

from __future__ import annotations

from dataclasses import replace

from calibrate.intrinsics import Intrinsics
from streams.frame import Frame
from tracker.landmarks import FaceMesh, FaceObservation
from tracker.tracks import TrackedFace, TrackIds


class FaceTracker:
    """Tracks up to ``max_faces`` faces through consecutive frames of one source."""

    def __init__(self, max_faces: int = 1, *, coast_seconds: float = 0.5,
                 camera: Intrinsics | None = None) -> None:
        self.mesh = FaceMesh(max_faces)
        self.ids = TrackIds(coast_seconds)
        self.camera = camera  # calibrated: landmarks are undistorted with it (scaled per frame)

    @property
    def undistorts(self) -> bool:
        """Whether landmarks come out undistorted (moved to where a pinhole would see them)."""
        return self.camera is not None and self.camera.distorted

    def process(self, frame: Frame) -> list[TrackedFace]:
        """Faces in ``frame``: those seen (``tracking``), then those coasting or just lost."""
        faces = self.mesh.process(frame.image)
        if self.undistorts:
            camera = self.camera.scaled(*frame.size)
            faces = [_undistorted(face, camera) for face in faces]
        return self.ids.update(faces, frame.time)

    def close(self) -> None:
        self.mesh.close()

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _undistorted(face: FaceObservation, camera: Intrinsics) -> FaceObservation:
    """The face with its landmarks (and so its box) where a distortion-free camera sees them."""
    points = camera.undistort(face.landmarks)
    (x0, y0), (x1, y1) = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
    return replace(face, landmarks=points, bbox=(float(x0), float(y0), float(x1), float(y1)))
