"""Stable track ids for the faces of consecutive frames.

MediaPipe returns faces in no stable order and forgets a face the moment it loses it, so ids
come from here: each face is matched to the track whose predicted box it overlaps most, and a
track that misses frames coasts (keeps its id) for ``coast_seconds`` before it is lost.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import linear_sum_assignment

from tracker.landmarks import FaceObservation, box_iou
from tracker.regressor import FaceFit

if TYPE_CHECKING:  # tracker.smoothing imports this module's statuses
    from tracker.smoothing import FaceState

TRACKING, COASTING, LOST = "tracking", "coasting", "lost"


@dataclass
class Track:
    """What we remember of one face between frames."""

    id: int
    box: np.ndarray  # (x0, y0, x1, y1) at last_time
    velocity: np.ndarray  # box change per second
    last_time: float
    score: float | None
    status: str = TRACKING

    def predicted(self, time: float) -> np.ndarray:
        return self.box + self.velocity * (time - self.last_time)


@dataclass(frozen=True)
class TrackedFace:
    """A track's status in one frame; ``observation`` and ``fit`` are None unless it is
    ``tracking`` (``fit`` also when no regressor runs); ``state`` is the smoother's, for
    tracking, coasting and lost faces alike (None without smoothing or before a first fit)."""

    track: int
    status: str
    observation: FaceObservation | None
    fit: FaceFit | None = None
    state: FaceState | None = None


class TrackIds:
    """Assigns track ids frame by frame (gated Hungarian matching on predicted boxes)."""

    def __init__(self, coast_seconds: float = 0.5, min_overlap: float = 0.1) -> None:
        self.coast_seconds = coast_seconds
        self.min_overlap = min_overlap
        self.tracks: list[Track] = []
        self._next_id = 0

    def update(self, faces: list[FaceObservation], time: float) -> list[TrackedFace]:
        """Faces with their track ids, then coasting tracks, then tracks lost in this frame.

        A track unseen for over ``coast_seconds`` is lost before the matching: a face found
        where it was after a longer gap (a stream that came back, the next of a folder's
        photos) is a new track, whose smoother and identity start afresh."""
        lost = [t for t in self.tracks if time - t.last_time > self.coast_seconds]
        self.tracks = [t for t in self.tracks if time - t.last_time <= self.coast_seconds]
        boxes = np.array([f.bbox for f in faces], np.float64).reshape(-1, 4)
        predicted = np.array([t.predicted(time) for t in self.tracks]).reshape(-1, 4)
        cost = 1.0 - box_iou(predicted, boxes)
        rows, cols = linear_sum_assignment(cost)
        pairs = {c: r for r, c in zip(rows, cols, strict=True)
                 if cost[r, c] < 1.0 - self.min_overlap}

        result: list[TrackedFace] = []
        matched: set[int] = set()
        for index, face in enumerate(faces):
            track = self.tracks[pairs[index]] if index in pairs else self._new_track(face, time)
            self._observe(track, face, time)
            matched.add(track.id)
            score = face.score if face.score is not None else track.score
            result.append(TrackedFace(track.id, TRACKING,
                                      replace(face, track=track.id, score=score)))

        for track in self.tracks:
            if track.id not in matched:
                track.status = COASTING
                result.append(TrackedFace(track.id, COASTING, None))
        return result + [TrackedFace(track.id, LOST, None) for track in lost]

    def _new_track(self, face: FaceObservation, time: float) -> Track:
        track = Track(self._next_id, np.array(face.bbox), np.zeros(4), time, face.score)
        self._next_id += 1
        self.tracks.append(track)
        return track

    @staticmethod
    def _observe(track: Track, face: FaceObservation, time: float) -> None:
        box = np.array(face.bbox)
        dt = time - track.last_time
        if dt > 0:
            # Smoothed so one jittery box does not throw the next prediction off.
            track.velocity = 0.5 * track.velocity + 0.5 * (box - track.box) / dt
        track.box, track.last_time, track.status = box, time, TRACKING
        if face.score is not None:
            track.score = face.score
