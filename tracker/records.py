"""Per-frame records as DESIGN.md specifies them: the recorder writes them as JSON lines and
publishers send the same fields, so everything downstream reads one schema."""

from __future__ import annotations

from importlib.metadata import version

import numpy as np

from calibrate.intrinsics import Intrinsics
from streams.frame import Frame
from tracker.tracks import TRACKING, TrackedFace

SCHEMA_VERSION = 1


def header(source: str, intrinsics: Intrinsics | None, *, fps: float | None,
           frame_count: int | None, landmarks: bool, landmarks_undistorted: bool = False) -> dict:
    """The first line of a recording: what produced it and how to read the rest.
    ``landmarks_undistorted``: the landmarks were moved to where a pinhole camera with these
    intrinsics (no lens distortion) would see them, so they sit off the lens-distorted image."""
    return {
        "type": "header",
        "schema": SCHEMA_VERSION,
        "facetrack": version("facetrack"),
        "source": source,
        "image_size": [intrinsics.width, intrinsics.height] if intrinsics else None,
        "intrinsics": intrinsics.to_dict() if intrinsics else None,
        "fps": fps,
        "frame_count": frame_count,
        "landmarks": landmarks,
        "landmarks_undistorted": landmarks_undistorted,
        "model": None,
        "regressor": None,
        "expression_names": [],
    }


def frame_record(frame: Frame, faces: list[TrackedFace], *, landmarks: bool) -> dict:
    """One frame: every face tracked, coasting or lost in it."""
    return {"frame": frame.index, "time": round(frame.time, 6),
            "faces": [face_record(face, landmarks=landmarks) for face in faces]}


def face_record(face: TrackedFace, *, landmarks: bool) -> dict:
    record: dict = {"track": face.track, "status": face.status}
    if face.status == TRACKING:
        observation = face.observation
        record["bbox"] = [round(v, 2) for v in observation.bbox]
        record["score"] = None if observation.score is None else round(observation.score, 4)
        if landmarks:
            record["landmarks"] = np.round(observation.landmarks, 2)
    return record
