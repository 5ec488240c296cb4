"""Facetrack from Python, as MediaPipe's `solutions` are used: one object over the whole
pipeline (landmarks, regressor, refinement, smoothing), an RGB image in, each face out as
`facetrack run` records it (../shared/DESIGN.md; `README.md`, "From Python"):

    from tracker.solution import Facetrack

    with Facetrack(max_faces=2) as facetrack:
        for image, seconds in frames:               # RGB uint8, H x W x 3; capture times
            for face in facetrack.process(image, seconds):
                face["expression"]["jawOpen"], face["rotation"], face["translation"]

`Models` is what the pipeline reads from disk, loaded once: `facetrack run` loads it once for
a whole batch of videos.
"""

from __future__ import annotations

import sys
import time
from argparse import ArgumentTypeError
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calibrate.intrinsics import Intrinsics, load_camera
from calibrate.profile import FaceProfile
from streams.frame import Frame
from tracker.arguments import Number, in_range, positive
from tracker.face_model import FaceModel
from tracker.pipeline import FaceTracker
from tracker.records import frame_record
from tracker.refine import DEFAULT_STEPS, MAX_STEPS, Refiner
from tracker.regressor import DEFAULT_MODEL, Regressor
from tracker.render import Renderer
from tracker.smoothing import MAX_PREDICT_MS, Smoother


@dataclass(frozen=True)
class Models:
    """What tracking reads from disk once: the camera, the face profile, the regressor, and
    the face model's refiner and mesh renderer (the last three take half a second to load)."""

    camera: Intrinsics | None
    profile: FaceProfile | None
    regressor: Regressor
    refiner: Refiner | None
    mesh: Renderer | None

    @classmethod
    def load(cls, *, camera: str | Path | None = None, profile: str | Path | None = None,
             refine: int = DEFAULT_STEPS, mesh: bool = False, model: str | Path | None = None,
             regressor: str | Path = DEFAULT_MODEL, engine: str = "auto",
             precision: str = "fp32") -> Models:
        """CAMERA and PROFILE are the files `facetrack calibrate` writes; MODEL the face
        model (default: the installed one), needed for REFINE steps and the MESH."""
        intrinsics = load_camera(camera) if camera else None
        person = FaceProfile.load(profile) if profile else None
        face_model = FaceModel.load(model) if refine or mesh else None
        network = Regressor(regressor, engine, precision, model)
        if person and person.info.get("regressor") != network.manifest.model_version:
            print(f"facetrack: warning: {profile} was made with regressor "
                  f"{person.info.get('regressor')}, this is {network.manifest.model_version}: "
                  "its resting face may be off, calibrate again", file=sys.stderr)
        return cls(intrinsics, person, network,
                   Refiner.load(face_model, refine) if refine else None,
                   Renderer(face_model, "face") if mesh else None)

    def close(self) -> None:
        self.regressor.close()


class Facetrack:
    """Faces in images, each a dict as in `facetrack run`'s records: ``track``, ``status``
    (tracking, coasting, lost), ``bbox``, ``rotation``, ``translation`` (cm, OpenCV camera),
    ``identity``, ``expression`` (53 ICT names), velocities and variances; ``landmarks`` too
    with LANDMARKS.

    Consecutive images are one moving picture (a video, a camera), tracked and smoothed from
    one to the next; with STILLS each is a photo on its own. CAMERA and PROFILE name the files
    `facetrack calibrate` writes; FOCAL is the focal length in pixels, when known; without
    either a 60° field of view is assumed. REFINE, SMOOTH and PREDICT_MS are `facetrack run`'s
    ``--refine``, ``--no-smooth`` (False) and ``--predict-ms``.
    """

    def __init__(self, max_faces: int = 1, *, stills: bool = False,
                 camera: str | Path | None = None, focal: float | None = None,
                 profile: str | Path | None = None, refine: int = DEFAULT_STEPS,
                 smooth: bool = True, predict_ms: float = 0.0, landmarks: bool = False,
                 engine: str = "auto") -> None:
        for name, value, rule in (("max_faces", max_faces, positive(int)),
                                  ("focal", focal, positive(float)),
                                  ("refine", refine, in_range(int, 0, MAX_STEPS)),
                                  ("predict_ms", predict_ms, in_range(float, 0, MAX_PREDICT_MS))):
            if value is not None:
                _check(name, value, rule)
        self.models = Models.load(camera=camera, profile=profile, refine=refine, engine=engine)
        try:
            self.tracker = FaceTracker(
                max_faces, camera=self.models.camera, regressor=self.models.regressor,
                focal=focal, refiner=self.models.refiner, profile=self.models.profile,
                smoother=Smoother(predict_ms=predict_ms) if smooth else None, stills=stills)
        except BaseException:
            self.models.close()
            raise
        self.landmarks = landmarks
        self._index = 0
        self.closed = False

    def process(self, image: np.ndarray, seconds: float | None = None) -> list[dict]:
        """The faces of IMAGE (RGB uint8, height x width x 3) captured at SECONDS (a video's
        frame time; default: now, by the monotonic clock, as for a camera). Times must go
        forward: smoothing runs on the time between images. A bad image or time is refused
        before the tracker's state changes (the time by `FaceTracker.track`), and tracking
        goes on as if it had not been given."""
        if self.closed:
            raise ValueError("this Facetrack is closed")
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
                and image.shape[2] == 3 and image.size):  # an empty one breaks MediaPipe's graph
            described = (f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray)
                         else type(image).__name__)
            raise ValueError(f"an image is an RGB uint8 array of height x width x 3, not "
                             f"{described}")
        frame = Frame("python", self._index, time.monotonic() if seconds is None else seconds,
                      image)
        faces = self.tracker.process(frame)  # a bad time is refused there, as the image here
        self._index += 1
        return frame_record(frame, faces, landmarks=self.landmarks)["faces"]

    def close(self) -> None:
        """Free MediaPipe's graph and the regressor; again, it does nothing."""
        if not self.closed:
            self.closed = True
            self.tracker.close()
            self.models.close()

    def __enter__(self) -> Facetrack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check(name: str, value: Number, rule: Callable[..., Number]) -> None:
    """VALUE held to RULE, its `facetrack run` option's (`tracker.arguments`): a ValueError
    that names NAME, before MediaPipe or a filter takes a bad one in silence."""
    try:
        if rule(value) != value:  # int(2.5) is 2
            raise ArgumentTypeError(f"must be {rule.__name__}, got {value!r}")
    except (ArgumentTypeError, TypeError, ValueError) as error:
        raise ValueError(f"{name} {error}") from None
