"""Face calibration: track a person, find the stillest frontal stretch of the footage, and make
their `FaceProfile` from it (identity averaged over it, the resting expression as its mean),
with each expression's personal range from a routine of faces when asked for.

The regressor's per-frame identity wavers with pose, expression and landmark noise; averaged over
a still, frontal, relaxed stretch those errors shrink, and the same stretch shows the person's
resting face (which the average face's neutral need not match).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import version

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from calibrate.profile import FaceProfile
from streams.errors import FacetrackError
from streams.frame import Frame
from tracker.expressions import ICT_EXPRESSION_NAMES
from tracker.model_store import IDENTITY_COUNT
from tracker.pipeline import FaceTracker, frames_ahead
from tracker.pose import angles
from tracker.scoring import rotation_error_deg
from tracker.tracks import TRACKING, TrackedFace

MAX_ANGLE = 15.0  # degrees of yaw or pitch from frontal
# Most a still face changes from one frame to the next: more is a movement (a turn, a blink).
MAX_TURN = 3.0  # degrees
MAX_CHANGE = 0.15  # in any expression coefficient
RANGE_PERCENTILE = 95
STILL_PROMPT = "look straight at the camera, face relaxed, and hold still"
SETTLE_SECONDS = 2.0  # live: time to settle into the still pose before it counts
ROUTINE: tuple[tuple[str, float], ...] = (
    ("smile as wide as you can", 3.0), ("open your mouth wide", 3.0),
    ("raise your eyebrows", 3.0), ("blink a few times", 3.0),
    ("look around: left, right, up, down", 5.0),
)

# Called per frame with the faces tracked and the current prompt; False stops.
FrameHook = Callable[[Frame, list[TrackedFace], str], bool]


@dataclass(frozen=True)
class Samples:
    """The fits of the face in every frame it was tracked in, in source order."""

    frames: np.ndarray  # (N,) frame indices
    times: np.ndarray  # (N,) seconds
    identity: np.ndarray  # (N, 100)
    expression: np.ndarray  # (N, 53)
    rotation: np.ndarray  # (N, 3, 3)
    read: int  # frames read, with a face or not

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def fps(self) -> float:
        """The source's frames a second, from the first and last tracked frames (30 when
        that says nothing)."""
        if len(self) < 2 or self.times[-1] <= self.times[0]:
            return 30.0
        return float((self.frames[-1] - self.frames[0]) / (self.times[-1] - self.times[0]))


class Script:
    """The prompts of a live calibration: hold still, then the routine's faces in turn."""

    def __init__(self, seconds: float, routine: bool) -> None:
        steps = [(STILL_PROMPT, seconds + SETTLE_SECONDS), *(ROUTINE if routine else ())]
        self.ends = np.cumsum([duration for _, duration in steps])
        self.prompts = [prompt for prompt, _ in steps]

    def prompt(self, elapsed: float) -> str | None:
        """What to do ELAPSED seconds in; None once the script is over."""
        step = int(np.searchsorted(self.ends, elapsed, side="right"))
        return self.prompts[step] if step < len(self.prompts) else None


def collect(frames: Iterable[Frame], tracker: FaceTracker, script: Script | None,
            on_frame: FrameHook | None = None) -> Samples:
    """Track every frame and keep the first tracked face's fit; a SCRIPT (live sources) ends the
    collection when it is over, Ctrl-C or ON_FRAME returning False earlier. Tracked as
    `facetrack run` tracks (`FaceTracker.stream`)."""
    rows: list[tuple] = []
    read = 0
    start: float | None = None
    try:
        with contextlib.closing(tracker.stream(frames, frames_ahead(script is not None))) as stream:
            for frame, faces, _ in stream:
                read += 1
                start = frame.time if start is None else start
                prompt = script.prompt(frame.time - start) if script else ""
                if prompt is None:
                    break
                fit = next((f.fit for f in faces if f.status == TRACKING and f.fit), None)
                if fit is not None:
                    rows.append((frame.index, frame.time, fit.identity, fit.expression,
                                 fit.rotation))
                if on_frame and not on_frame(frame, faces, prompt):
                    break
    except KeyboardInterrupt:
        pass
    if not rows:
        return Samples(np.zeros(0, int), np.zeros(0), np.zeros((0, IDENTITY_COUNT)),
                       np.zeros((0, len(ICT_EXPRESSION_NAMES))), np.zeros((0, 3, 3)), read)
    columns = [np.array(column) for column in zip(*rows, strict=True)]
    return Samples(*columns, read=read)


def still_window(samples: Samples, count: int) -> tuple[slice | None, int]:
    """The stillest run of COUNT consecutive frontal frames (None when there is none), and the
    length in frames of the longest still frontal run, to say how far short the footage fell."""
    frontal = _frontal(samples)
    turn = rotation_error_deg(samples.rotation[1:], samples.rotation[:-1])
    change = np.abs(np.diff(samples.expression, axis=0)).max(axis=1, initial=0.0)
    steady = (np.diff(samples.frames) == 1) & (turn <= MAX_TURN) & (change <= MAX_CHANGE)
    longest = run = 0
    for i, ok in enumerate(frontal):
        run = run + 1 if ok and i > 0 and steady[i - 1] and run else int(ok)
        longest = max(longest, run)
    if len(samples) < count:
        return None, longest
    fine = (sliding_window_view(frontal, count).all(axis=1)
            & sliding_window_view(steady, count - 1).all(axis=1))
    if not fine.any():
        return None, longest
    cost = sliding_window_view(turn / MAX_TURN + change / MAX_CHANGE, count - 1).mean(axis=1)
    first = int(np.argmin(np.where(fine, cost, np.inf)))
    return slice(first, first + count), longest


def _frontal(samples: Samples) -> np.ndarray:
    """(N,) bool: the face within MAX_ANGLE of frontal in yaw and pitch."""
    yaw_pitch = np.abs(angles(samples.rotation)[:, :2]) if len(samples) else np.zeros((0, 2))
    return (yaw_pitch <= MAX_ANGLE).all(axis=1)


def make_profile(samples: Samples, seconds: float, routine: bool, source: str,
                 regressor: str, stills: bool = False) -> FaceProfile:
    """The profile of the stillest SECONDS of SAMPLES, or a one-line error saying how much still
    frontal face there was and what to film instead. STILLS: the samples are photos, each a
    still of its own with no clock: every frontal one is used."""
    if stills:
        window = np.flatnonzero(_frontal(samples))
        if not len(window):
            raise FacetrackError(
                f"no frontal face in {source} (a face in {len(samples)} of {samples.read} "
                f"photos): give a photo looking straight at the camera (within {MAX_ANGLE:.0f}°), "
                "face relaxed")
    else:
        fps = samples.fps
        count = max(2, round(seconds * fps))
        window, longest = still_window(samples, count)
        if window is None:
            raise FacetrackError(
                f"found {longest / fps:.1f} s of still, frontal face in {source} (a face in "
                f"{len(samples)} of {samples.read} frames), need {seconds:g} s: look straight "
                f"at the camera (within {MAX_ANGLE:.0f}°), face relaxed, and hold still for "
                f"{seconds:g} s, or lower --seconds")
    maxima = (np.percentile(samples.expression, RANGE_PERCENTILE, axis=0).astype(np.float32)
              if routine else None)
    frames = samples.frames[window]
    info = {
        "source": source,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "regressor": regressor,
        "frames": {"read": samples.read, "with_face": len(samples), "used": len(frames),
                   "first": int(frames[0]), "last": int(frames[-1]),
                   "routine": len(samples) if routine else None},
        "facetrack": version("facetrack"),
    }
    return FaceProfile(samples.identity[window].mean(axis=0).astype(np.float32),
                       samples.expression[window].mean(axis=0).astype(np.float32),
                       maxima, info)
