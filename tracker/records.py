"""Per-frame records as DESIGN.md specifies them: the recorder writes them as JSON lines and
publishers send the same fields, so everything downstream reads one schema."""

from __future__ import annotations

from importlib.metadata import version

import numpy as np

from calibrate.intrinsics import Intrinsics
from streams.frame import Frame
from tracker.expressions import ICT_EXPRESSION_NAMES
from tracker.regressor import FaceFit
from tracker.smoothing import FaceState
from tracker.tracks import TRACKING, TrackedFace

SCHEMA_VERSION = 1


def header(source: str, intrinsics: Intrinsics | None, *, fps: float | None,
           frame_count: int | None, landmarks: bool, start: float = 0.0,
           landmarks_undistorted: bool = False,
           regressor: str | None = None, predict_ms: float | None = None,
           profile: dict | None = None) -> dict:
    """The first line of a recording: what produced it and how to read the rest.
    ``landmarks_undistorted``: the landmarks were moved to where a pinhole camera with these
    intrinsics (no lens distortion) would see them, so they sit off the lens-distorted image.
    ``regressor``: the regressor's model version, when faces carry coefficients.
    ``start``: where in the source time 0 is (seconds; `--start`), frames counting from it.
    ``predict_ms``: faces carry smoothed states, predicted this far past the frame's time
    (None: the regressor's raw output).
    ``profile``: the face profile the coefficients were corrected with (`FaceProfile.header`)."""
    return {
        "type": "header",
        "schema": SCHEMA_VERSION,
        "facetrack": version("facetrack"),
        "source": source,
        "image_size": [intrinsics.width, intrinsics.height] if intrinsics else None,
        "intrinsics": intrinsics.to_dict() if intrinsics else None,
        "fps": fps,
        "frame_count": frame_count,
        "start": start,
        "landmarks": landmarks,
        "landmarks_undistorted": landmarks_undistorted,
        "model": "ICT-FaceKit FaceXModel" if regressor else None,
        "regressor": regressor,
        "expression_names": list(ICT_EXPRESSION_NAMES) if regressor else [],
        "smoothed": predict_ms is not None,
        "predict_ms": predict_ms,
        "profile": profile,
    }


def frame_record(frame: Frame, faces: list[TrackedFace], *, landmarks: bool,
                 camera: Intrinsics | None = None, image: str | None = None) -> dict:
    """One frame: every face tracked, coasting or lost in it. CAMERA: the frame's own size and
    intrinsics, where they are not the header's (each of a run's photos, a stream whose size
    changed); IMAGE: the photo it is."""
    record: dict = {"frame": frame.index, "time": round(frame.time, 6)}
    if image is not None:
        record["image"] = image
    if camera is not None:
        record.update(image_size=[camera.width, camera.height], intrinsics=camera.to_dict())
    record["faces"] = [face_record(face, landmarks=landmarks) for face in faces]
    return record


def face_record(face: TrackedFace, *, landmarks: bool) -> dict:
    record: dict = {"track": face.track, "status": face.status}
    if face.status == TRACKING:
        observation = face.observation
        record["bbox"] = [round(v, 2) for v in observation.bbox]
        record["score"] = None if observation.score is None else round(observation.score, 4)
    values = face.state or face.fit  # smoothed when there is a state, else the raw fit
    if values is not None:
        record.update(_coefficients(values))
    if face.state is not None:
        record.update(_dynamics(face.state))
    if face.status == TRACKING and landmarks:
        record["landmarks"] = np.round(face.observation.landmarks, 2)
    return record


def _coefficients(values: FaceFit | FaceState) -> dict:
    """Head pose, identity and expression, as DESIGN.md's record has them."""
    return {"rotation": np.round(values.rotation, 6),
            "translation": np.round(values.translation, 3),
            # Rounded as float64: a rounded float32 is not the number JSON writes for it.
            "identity": np.round(values.identity.astype(float), 4),
            "expression": dict(zip(ICT_EXPRESSION_NAMES,
                                   np.round(values.expression.astype(float), 4).tolist(),
                                   strict=True))}


def _dynamics(state: FaceState) -> dict:
    """Velocities and variances of a smoothed state (docs/smoothing.md); per-expression lists
    are in the header's ``expression_names`` order. Variances go out as float32, which JSON
    writes with 7 significant digits however small they are."""
    return {"angular_velocity": np.round(state.angular_velocity, 5),
            "translation_velocity": np.round(state.translation_velocity, 3),
            "expression_velocity": np.round(state.expression_velocity, 4),
            **{name: getattr(state, name).astype(np.float32) for name in (
                "rotation_variance", "translation_variance", "identity_variance",
                "expression_variance")}}
