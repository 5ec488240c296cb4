"""The per-frame pipeline, as one object: frames in, tracked faces out.

Modelled on MediaPipe's ``solutions``: a simple ``process`` over a graph of stages
(landmarks, then track ids; the regressor and smoother plug in here as they land).
"""

from __future__ import annotations

from streams.frame import Frame
from tracker.landmarks import FaceMesh
from tracker.tracks import TrackedFace, TrackIds


class FaceTracker:
    """Tracks up to ``max_faces`` faces through consecutive frames of one source."""

    def __init__(self, max_faces: int = 1, *, coast_seconds: float = 0.5) -> None:
        self.mesh = FaceMesh(max_faces)
        self.ids = TrackIds(coast_seconds)

    def process(self, frame: Frame) -> list[TrackedFace]:
        """Faces in ``frame``: those seen (``tracking``), then those coasting or just lost."""
        return self.ids.update(self.mesh.process(frame.image), frame.time)

    def close(self) -> None:
        self.mesh.close()

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
