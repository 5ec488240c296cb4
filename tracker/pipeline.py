"""The per-frame pipeline, as one object: frames in, tracked faces out.

Modelled on MediaPipe's ``solutions``: a simple ``process`` over a graph of stages
(landmarks, track ids, then the regressor on all of a frame's faces at once, then the
smoother per track). ``stream`` runs the same stages over a sequence of frames in two threads,
so that MediaPipe finds the next frame's landmarks while this frame's faces are fitted.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import NamedTuple

import numpy as np

from calibrate.intrinsics import Intrinsics
from calibrate.profile import FaceProfile
from streams.frame import Frame
from tracker.landmarks import FaceMesh, FaceObservation
from tracker.refine import Refiner
from tracker.regressor import Regressor
from tracker.shading import with_shading
from tracker.smoothing import IdentityEstimate, Smoother
from tracker.tracks import LOST, TRACKING, TrackedFace, TrackIds


def frames_ahead(paced: bool) -> int:
    """How many frames `FaceTracker.stream` may take ahead of its caller: one for a source
    that hands frames at its own pace (a camera, a stream, ``--realtime``), so the frame taken
    is the newest; two for a file read as fast as it goes, so the threads wait less on each
    other."""
    return 1 if paced else 2


class FaceTracker:
    """Tracks up to ``max_faces`` faces through consecutive frames of one source."""

    def __init__(self, max_faces: int = 1, *, coast_seconds: float = 0.5,
                 camera: Intrinsics | None = None, regressor: Regressor | None = None,
                 focal: float | None = None, refiner: Refiner | None = None,
                 smoother: Smoother | None = None, profile: FaceProfile | None = None,
                 pool_identity: bool = True, stills: bool = False,
                 detector: str | None = None) -> None:
        """``stills``: the frames are unrelated photos, each searched afresh (MediaPipe's
        static mode) and read on its own: its faces numbered from 0, each face's state its
        own photo's fit, with no identity pooled and no face lost from the photo before.
        ``detector``: MediaPipe's face detector (`tracker.landmarks.DETECTORS`);
        by default full-range for stills, where a group photo's faces are small, else
        short-range, which costs less while fewer than MAX_FACES faces are in view."""
        self.mesh = FaceMesh(max_faces, static_image_mode=stills,
                             detector=detector or ("full-range" if stills else "short-range"))
        self.stills = stills
        self.ids = TrackIds(coast_seconds)
        self.camera = camera  # calibrated: landmarks are undistorted with it (scaled per frame)
        self.focal = focal  # pixels, when the user knows it but has not calibrated
        self.regressor = regressor
        self.refiner = refiner  # a few Levenberg-Marquardt steps after the regressor
        self.smoother = smoother  # fits to face states; needs the regressor's fits
        self.profile = profile  # one person's identity, resting face and expression ranges
        # False: each frame's own identity reading
        self.pool_identity = pool_identity and not stills
        self._intrinsics: Intrinsics | None = None  # of the last frame size asked for
        self._identities: dict[int, IdentityEstimate] = {}  # each track's identity so far
        self._last_time = -math.inf  # of the frame before

    def intrinsics(self, width: int, height: int) -> Intrinsics:
        """The camera for WIDTHxHEIGHT frames: calibrated, a given focal length, or assumed.
        Made once per frame size: undistortion, the fit and the overlay all ask every frame."""
        known = self._intrinsics
        if known is None or (known.width, known.height) != (width, height):
            if self.camera is not None:
                known = self.camera.scaled(width, height)
            elif self.focal is not None:
                known = Intrinsics(self.focal, self.focal, width / 2, height / 2, width, height)
            else:
                known = Intrinsics.from_fov(width, height)
            self._intrinsics = known
        return known

    @property
    def undistorts(self) -> bool:
        """Whether landmarks come out undistorted (moved to where a pinhole would see them)."""
        return self.camera is not None and self.camera.distorted

    def process(self, frame: Frame) -> list[TrackedFace]:
        """Faces in ``frame``: those seen (``tracking``, with their fits), then those coasting
        or just lost; with a smoother, each with its state."""
        return self.finish(frame, self.track(frame))

    def finish(self, frame: Frame, tracked: list[TrackedFace]) -> list[TrackedFace]:
        """The faces `track` found in FRAME, fitted and smoothed: the half of `process` that
        `stream` runs in the caller's thread."""
        return self.smooth(self.fit(tracked, *frame.size), frame.time)

    def stream(self, frames: Iterable[Frame], ahead: int = 1) -> Iterator[Processed]:
        """`process` over FRAMES, in order, with the same results, in less time a frame.

        MediaPipe, the shading and the track ids of the next frame run on a thread of their own
        while this frame is fitted and smoothed here, and the caller records and draws it:
        MediaPipe waits on its graph and numpy, OpenCV and ONNX Runtime on their arrays with
        Python's lock released, so the two halves share the two cores (`benchmarks/pipeline.py`).
        That thread takes a frame from FRAMES only while fewer than AHEAD frames it took wait
        for the caller. With 1, the frame it takes is the newest a live source has, as fresh as
        on one thread; with 2 the two threads wait less on each other's uneven frames, and a
        file goes through faster. An error there is raised here after the frames before it;
        leaving the loop early stops the thread."""
        handoff: queue.SimpleQueue[tuple[Frame, list[TrackedFace], float] | BaseException
                                   | None] = queue.SimpleQueue()
        room = threading.Semaphore(ahead)  # released as the caller takes a frame
        stop = threading.Event()

        def find() -> None:
            pending = iter(frames)
            try:
                while _acquire(room, stop):
                    frame = next(pending, None)
                    if frame is None or stop.is_set():
                        break
                    started = time.perf_counter()
                    handoff.put((frame, self.track(frame), started))
            except BaseException as error:  # raised again in the caller, in order
                handoff.put(error)
                return
            handoff.put(None)

        finder = threading.Thread(target=find, name="facetrack-landmarks", daemon=True)
        finder.start()
        try:
            while (item := handoff.get()) is not None:
                room.release()
                if isinstance(item, BaseException):
                    raise item
                frame, tracked, started = item
                yield Processed(frame, self.finish(frame, tracked), started)
        finally:
            stop.set()
            # The finder is done within a frame's MediaPipe call, unless it waits on a stalled
            # live source: then it stops without touching MediaPipe once the source closes.
            finder.join(timeout=1.0)

    def track(self, frame: Frame) -> list[TrackedFace]:
        """The landmarks and track ids of ``frame``'s faces (with the regressor, and the image's
        shading at the landmarks, read where MediaPipe found them). A time that is not a
        number, or one before the frame before's (but for stills), is refused before any state
        changes: the track ids and the smoother would take it in and fail on every frame after."""
        if not math.isfinite(frame.time):
            raise ValueError(f"a capture time is a finite number of seconds, not {frame.time}")
        if not self.stills and frame.time < self._last_time:
            raise ValueError(f"times must go forward: {frame.time:g} s after "
                             f"{self._last_time:g} s")
        self._last_time = frame.time
        faces = self.mesh.process(frame.image)
        if self.regressor is not None:
            faces = with_shading(frame.image, faces)
        if self.undistorts:
            camera = self.intrinsics(*frame.size)
            faces = [_undistorted(face, camera) for face in faces]
        if self.stills:  # numbered afresh, left to right
            self.ids = TrackIds(self.ids.coast_seconds)
            faces = sorted(faces, key=lambda face: face.bbox[0])
        return self.ids.update(faces, frame.time)

    def fit(self, tracked: list[TrackedFace], width: int, height: int) -> list[TrackedFace]:
        """TRACKED with the regressor's fit of every face seen, all in one engine call.

        A face's identity is the mean of the regressor's readings over its track so far (or
        the profile's): a person's shape does not change, and the refinement then fits pose and
        expression to one face rather than to each frame's guess, whose size the depth would
        follow."""
        for face in tracked:
            if face.status == LOST:
                self._identities.pop(face.track, None)
        seen = [i for i, face in enumerate(tracked) if face.status == TRACKING]
        if self.regressor is None or not seen:
            return tracked
        camera = self.intrinsics(width, height)
        landmarks = np.stack([tracked[i].observation.landmarks for i in seen])
        fits = self.regressor.fit(landmarks, np.stack([tracked[i].observation.shading
                                                       for i in seen]), camera)
        tracked = list(tracked)
        for row, i in enumerate(seen):
            fit = replace(fits.face(row), identity=self._identity(tracked[i].track,
                                                                  fits.identity[row]))
            if self.refiner is not None:
                fit = self.refiner.refine(fit, landmarks[row], camera)
            if self.profile is not None:
                fit = self.profile.apply(fit)
            tracked[i] = replace(tracked[i], fit=fit)
        return tracked

    def _identity(self, track: int, reading: np.ndarray) -> np.ndarray:
        """The profile's identity, or TRACK's mean identity with this frame's READING."""
        if self.profile is not None:
            return self.profile.identity
        if not self.pool_identity:
            return reading
        pooled = self._identities.get(track)
        if pooled is None:
            pooled = self._identities[track] = IdentityEstimate(reading, 1.0)
        else:
            pooled.update(reading, 1.0)
        return pooled.mean.astype(reading.dtype)

    def smooth(self, tracked: list[TrackedFace], time: float) -> list[TrackedFace]:
        """TRACKED with each track's smoothed state at TIME (fits as measurements, coasting
        tracks predicted, lost ones reported once and forgotten)."""
        if self.smoother is None or self.regressor is None:
            return tracked
        if self.stills:  # a state starts at its first fit: here, this photo's
            self.smoother.filters.clear()
        states = {state.track: state for state in self.smoother.update(
            time, ((face.track, face.status, face.fit) for face in tracked))}
        return [replace(face, state=states.get(face.track)) for face in tracked]

    def close(self) -> None:
        """Close MediaPipe's graph; the regressor is its maker's, who may hand it on to the
        next source's tracker."""
        self.mesh.close()

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _acquire(semaphore: threading.Semaphore, stop: threading.Event) -> bool:
    """Wait for SEMAPHORE unless STOP is set first; whether it was acquired."""
    while not stop.is_set():
        if semaphore.acquire(timeout=0.05):
            return True
    return False


class Processed(NamedTuple):
    """One frame out of `FaceTracker.stream`: its faces, and when the tracker took it
    (``time.perf_counter``), for the latency."""

    frame: Frame
    faces: list[TrackedFace]
    started: float


def _undistorted(face: FaceObservation, camera: Intrinsics) -> FaceObservation:
    """The face with its landmarks (and so its box) where a distortion-free camera sees them."""
    points = camera.undistort(face.landmarks)
    (x0, y0), (x1, y1) = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
    return replace(face, landmarks=points, bbox=(float(x0), float(y0), float(x1), float(y1)))
