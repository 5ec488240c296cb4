"""Temporal smoothing of per-frame regressor measurements into face states (issue 5).

The regressor looks at each frame alone, so its output jitters; the smoother is what makes a
still face still and a moving one follow without lag. Per track it runs:

- expression (53), translation (3) and the rotation error (3) as independent scalar
  constant-velocity Kalman chains, batched in one :class:`ChainFilter`, whose process noise rises
  with the normalised innovation (fast motion is followed, stillness is smoothed hard);
- rotation on the manifold: an error-state filter on SO(3) whose innovation is the rotation vector
  ``log(R_measured R_estimate^T)`` (camera frame), never Euler angles;
- identity passed on as it comes: `FaceTracker.fit` has already pooled it over the track's life
  (`IdentityEstimate`), and its variance shrinks as 1/frames.

See docs/smoothing.md for the model, the adaptive rule and what the variances mean.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import NamedTuple

import cv2
import numpy as np
from numpy.typing import ArrayLike

from tracker.regressor import FaceFit
from tracker.tracks import COASTING, LOST, TRACKING

EXPRESSION_COUNT = 53


@dataclass(frozen=True)
class ChainNoise:
    """Noise of one group of chains, in the group's units (1 for expression, cm, rad).

    ``acceleration_std`` is the std of the white-noise acceleration (units/s²) that drives the
    velocity; ``velocity_time_s`` is how fast the velocity forgets itself (it decays by
    ``exp(-dt / velocity_time_s)``; infinity is the plain constant-velocity model);
    ``adapt_gain`` and ``adapt_gate`` set how much the process noise is raised when the
    normalised innovation squared (NIS) exceeds the gate (see :class:`ChainFilter`).
    """

    measurement_std: float | tuple[float, ...]
    acceleration_std: float
    initial_velocity_std: float
    adapt_gain: float
    adapt_gate: float
    velocity_time_s: float = math.inf


# Measured and tuned by benchmarks/tune_smoothing.py on every `facetrack synth` clip (seed 1,
# 150 frames) with regressor 2026.11.25-7d8d375a: each measurement_std is the raw regressor's
# frame-to-frame residual std for that chain (expression in ICT order; translation x, y, z in
# cm; rotation about the camera's x, y, z in rad); acceleration_std, adapt_gain and adapt_gate
# are the best of a grid within issue 5's targets; identity_std is the total identity residual.
_EXPRESSION_STD = (
    0.0056, 0.0056, 0.0085, 0.0085, 0.0093, 0.0093, 0.005, 0.005, 0.005, 0.005, 0.0175, 0.0173,
    0.005, 0.005, 0.005, 0.005, 0.005, 0.005, 0.005, 0.005, 0.0081, 0.0056, 0.005, 0.005, 0.005,
    0.0055, 0.0062, 0.0055, 0.005, 0.005, 0.005, 0.005, 0.0051, 0.0081, 0.0057, 0.005, 0.005,
    0.005, 0.005, 0.0113, 0.0088, 0.005, 0.005, 0.005, 0.005, 0.0103, 0.0102, 0.005, 0.005, 0.005,
    0.005, 0.005, 0.005,
)


@dataclass(frozen=True)
class SmoothingConfig:
    """Every noise parameter of the smoother, in one place to tune on ground-truth clips."""

    # Set by hand from benchmarks/smoothing.py's curves (the tuner's grid scores jawOpen lag
    # only, and picked an expression acceleration that flattened blinks). Pose velocities forget
    # themselves in 0.1 s, expression ones in 0.5 s, and the accelerations are low, so a still
    # face averages over many frames; expression's adaptive rule starts at 1 sigma and is steep
    # (gain 5), much as the One Euro filter's cutoff rises with speed. With regressor
    # 2026.12.06-feb20f8b and one refinement step: still-face jitter 0.0037 mm/frame (the same
    # chains without velocity decay: 0.0078; One Euro within a frame of lag: 0.0042), eyeBlink
    # r as raw (0.97). Rotation's gate is 5 sigma: on real, compressed video the regressor's
    # rotation wanders in ways a 3-sigma gate took for motion (median smoothed turn on
    # WolfgangLanger 0.31° a frame at 9, 0.20° at 25; the renders' rotation 1.43° and 1.44°).
    expression: ChainNoise = ChainNoise(
        measurement_std=_EXPRESSION_STD, acceleration_std=0.1,
        initial_velocity_std=1, adapt_gain=5, adapt_gate=1, velocity_time_s=0.5)
    translation: ChainNoise = ChainNoise(
        measurement_std=(0.0573, 0.0611, 0.3145), acceleration_std=0.0433,
        initial_velocity_std=10, adapt_gain=1, adapt_gate=9, velocity_time_s=0.1)
    rotation: ChainNoise = ChainNoise(
        measurement_std=(0.0057, 0.0045, 0.0025), acceleration_std=0.0038,
        initial_velocity_std=1, adapt_gain=1, adapt_gate=25, velocity_time_s=0.1)
    identity_std: float = 0.765


class ChainEstimate(NamedTuple):
    """Value, velocity and value variance of every chain at one time."""

    value: np.ndarray
    velocity: np.ndarray
    variance: np.ndarray


class ChainFilter:
    """K independent scalar Kalman chains of value and velocity, run batched.

    Chain i has state ``[value, velocity]`` and covariance ``[[p00, p01], [p01, p11]]``; the 2x2
    algebra is written out on arrays of shape (K,), so a step is a few dozen numpy operations
    instead of dense (2K x 2K) products. Each chain is exactly filterpy's ``KalmanFilter`` with
    ``F = [[1, dt], [0, d]]``, ``H = [1, 0]`` and ``Q = Q_discrete_white_noise(2, dt,
    process_noise)`` when ``adapt_gain == 0``, where ``d = exp(-dt / velocity_time)``: with an
    infinite ``velocity_time`` (the default) the constant-velocity model.

    Why the velocity decays: a constant-velocity chain on a still input keeps estimating a
    velocity from noise, and that drift is most of its still-face jitter; a velocity that
    forgets itself in a tenth of a second makes the chain average like a constant-position
    filter while still, and the adaptive rule below lets it follow real motion at once.

    Adaptive rule: at an update each chain's predicted covariance is scaled by
    ``1 + adapt_gain * max(0, NIS - adapt_gate)``, the NIS ``y² / (p00 + r)`` taken from the
    nominal prediction; that is, the process noise of the step is raised from ``Q`` to
    ``Q + (scale - 1) P_predicted`` (a fading-memory step). An innovation within the gate leaves
    the filter smoothing hard; one far outside it (a blink, a head turn) makes it trust the
    measurement, in value and velocity, at once.
    """

    def __init__(self, value: ArrayLike, value_variance: ArrayLike, velocity_variance: ArrayLike,
                 process_noise: ArrayLike, adapt_gain: ArrayLike = 0.0,
                 adapt_gate: ArrayLike = 1.0, velocity_time: ArrayLike = math.inf) -> None:
        self.value = np.array(value, np.float64)
        shape = self.value.shape
        self.velocity = np.zeros(shape)
        self.p00 = np.array(np.broadcast_to(value_variance, shape), np.float64)
        self.p01 = np.zeros(shape)
        self.p11 = np.array(np.broadcast_to(velocity_variance, shape), np.float64)
        self.process_noise = np.broadcast_to(np.asarray(process_noise, np.float64), shape)
        self.adapt_gain = np.broadcast_to(np.asarray(adapt_gain, np.float64), shape)
        self.adapt_gate = np.broadcast_to(np.asarray(adapt_gate, np.float64), shape)
        self.velocity_time = np.broadcast_to(np.asarray(velocity_time, np.float64), shape)

    def predict(self, dt: float) -> None:
        """Advance every chain by DT seconds with no measurement; variances grow."""
        self.value, self.velocity, self.p00, self.p01, self.p11 = self._propagated(dt)

    def ahead(self, dt: float) -> ChainEstimate:
        """The estimate DT seconds ahead, leaving the filter as it is (for --predict-ms)."""
        value, velocity, p00, _, _ = self._propagated(dt)
        return ChainEstimate(value, velocity, p00)

    def update(self, z: ArrayLike, r: ArrayLike) -> np.ndarray:
        """Fuse measurements Z with variances R (both (K,)); returns each chain's NIS."""
        y = z - self.value
        nis = y * y / (self.p00 + r)
        scale = 1.0 + self.adapt_gain * np.maximum(nis - self.adapt_gate, 0.0)
        p00, p01, p11 = self.p00 * scale, self.p01 * scale, self.p11 * scale
        s = p00 + r
        k0, k1 = p00 / s, p01 / s
        self.value = self.value + k0 * y
        self.velocity = self.velocity + k1 * y
        self.p11 = p11 - k1 * p01
        shrink = r / s
        self.p00, self.p01 = p00 * shrink, p01 * shrink
        return nis

    def _propagated(self, dt: float) -> tuple[np.ndarray, ...]:
        """``F x`` and ``F P F^T + Q(dt)`` for the ``F`` and white-noise acceleration ``Q`` of
        the class docstring, written out per chain."""
        dt2 = dt * dt
        q = self.process_noise
        decay = np.exp(-dt / self.velocity_time)
        return (self.value + self.velocity * dt, self.velocity * decay,
                self.p00 + dt * (2.0 * self.p01 + dt * self.p11) + q * (0.25 * dt2 * dt2),
                decay * (self.p01 + dt * self.p11) + q * (0.5 * dt2 * dt),
                decay * decay * self.p11 + q * dt2)


# exp and log on SO(3) are OpenCV's Rodrigues: the same values as scipy's Rotation to 1e-15,
# at a quarter of the cost, which was a third of the smoother's time a frame.
def _exp(rotation_vector: np.ndarray) -> np.ndarray:
    return cv2.Rodrigues(np.asarray(rotation_vector, np.float64))[0]


def _log(rotation_matrix: np.ndarray) -> np.ndarray:
    """The rotation vector of a matrix known to be a rotation."""
    return cv2.Rodrigues(np.asarray(rotation_matrix, np.float64))[0][:, 0]


def nearest_rotation(matrix: np.ndarray) -> np.ndarray:
    """The rotation nearest a nearly orthonormal matrix (the SVD polar factor)."""
    u, _, vt = np.linalg.svd(matrix)
    return u @ vt


class IdentityEstimate:
    """Information-weighted running mean: identity is constant over a track, so every frame
    counts and the variance shrinks as 1/n; a new track starts a new estimate."""

    def __init__(self, measurement: ArrayLike, variance: ArrayLike) -> None:
        self.mean = np.array(measurement, np.float64)
        self.information = 1.0 / np.broadcast_to(np.asarray(variance, np.float64),
                                                 self.mean.shape)

    def update(self, measurement: ArrayLike, variance: ArrayLike) -> None:
        weight = 1.0 / np.asarray(variance, np.float64)
        self.information = self.information + weight
        self.mean = self.mean + weight / self.information * (measurement - self.mean)

    @property
    def variance(self) -> np.ndarray:
        return 1.0 / self.information


@dataclass(frozen=True)
class FaceState:
    """DESIGN.md's face state. Rotation is camera-from-model; ``angular_velocity`` (rad/s) is in
    the camera frame (``dR/dt = [w]x R``) and ``rotation_variance`` (rad²) is the variance of the
    rotation error vector about each camera axis. Expression is clipped to [0, 1], its velocity
    and variance are the filter's own. ``time`` is the time the state describes (the frame time
    plus any ``predict_ms``)."""

    track: int
    status: str
    time: float
    identity: np.ndarray
    expression: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    expression_velocity: np.ndarray
    angular_velocity: np.ndarray
    translation_velocity: np.ndarray
    identity_variance: np.ndarray
    expression_variance: np.ndarray
    rotation_variance: np.ndarray
    translation_variance: np.ndarray


# Where each group sits in a FaceFilter's chains.
_EXPRESSION = slice(0, EXPRESSION_COUNT)
_TRANSLATION = slice(EXPRESSION_COUNT, EXPRESSION_COUNT + 3)
_ROTATION = slice(EXPRESSION_COUNT + 3, EXPRESSION_COUNT + 6)


@dataclass(frozen=True)
class _ChainParameters:
    """Per-chain arrays of a FaceFilter's chains, in the order of the slices above."""

    measurement_variance: np.ndarray
    velocity_variance: np.ndarray
    process_noise: np.ndarray
    adapt_gain: np.ndarray
    adapt_gate: np.ndarray
    velocity_time: np.ndarray

    @classmethod
    def of(cls, config: SmoothingConfig) -> _ChainParameters:
        groups = ((config.expression, EXPRESSION_COUNT), (config.translation, 3),
                  (config.rotation, 3))

        def per_chain(value_of) -> np.ndarray:
            return np.concatenate([np.broadcast_to(np.asarray(value_of(noise), np.float64), n)
                                   for noise, n in groups])

        return cls(per_chain(lambda g: np.square(g.measurement_std)),
                   per_chain(lambda g: g.initial_velocity_std ** 2),
                   per_chain(lambda g: g.acceleration_std ** 2),
                   per_chain(lambda g: g.adapt_gain), per_chain(lambda g: g.adapt_gate),
                   per_chain(lambda g: g.velocity_time_s))


class FaceFilter:
    """The smoother of one track: call :meth:`update` on frames where it is measured and
    :meth:`predict` where it coasts. The first update starts the filter at the measurement.
    Identity is passed on as measured: it comes pooled over the track (`IdentityEstimate`, in
    `tracker.pipeline.FaceTracker.fit`, where the refinement needs it).

    With ``predict_ms`` > 0 the returned states are extrapolated that far past the frame time
    (to hide the pipeline's latency); the filter itself stays at the frame time.
    """

    def __init__(self, track: int, config: SmoothingConfig | None = None,
                 predict_ms: float = 0.0) -> None:
        self.track = track
        self.config = config or SmoothingConfig()
        self.predict_ms = predict_ms
        self.time: float | None = None  # of the last update or predict; None before the first
        self._parameters = _ChainParameters.of(self.config)
        self._chains: ChainFilter
        self._rotation: np.ndarray  # the rotation estimate, where the rotation chains are zero
        self._identity: np.ndarray  # the track's pooled identity, as measured last
        self._measured = 0  # frames: the pooled identity's variance is identity_std² / frames

    def update(self, time: float, identity: ArrayLike, expression: ArrayLike,
               rotation: ArrayLike, translation: ArrayLike) -> FaceState:
        """Fuse one frame's measurement (rotation 3x3 camera-from-model, translation in cm)."""
        rotation = nearest_rotation(np.asarray(rotation, np.float64))
        self._identity = np.array(identity, np.float64)
        self._measured += 1
        if self.time is None:
            self._start(expression, rotation, translation)
        else:
            self._advance(time)
            z = np.empty_like(self._chains.value)
            z[_EXPRESSION] = expression
            z[_TRANSLATION] = translation
            # The chains hold the rotation error in the tangent space at self._rotation, which
            # _advance has just reset to the prediction: the innovation is log(R_meas R_pred^T).
            z[_ROTATION] = _log(rotation @ self._rotation.T)
            self._chains.update(z, self._parameters.measurement_variance)
            self._fold_rotation()
            self._rotation = nearest_rotation(self._rotation)
        self.time = time
        return self._state(TRACKING)

    def predict(self, time: float) -> FaceState:
        """Coast to TIME with no measurement: the state moves on at its velocities and the
        variances grow."""
        if self.time is None:
            raise RuntimeError(f"track {self.track} has no measurement to predict from")
        self._advance(time)
        self.time = time
        return self._state(COASTING)

    def _start(self, expression: ArrayLike, rotation: np.ndarray,
               translation: ArrayLike) -> None:
        p = self._parameters
        value = np.concatenate([np.asarray(expression, np.float64),
                                np.asarray(translation, np.float64), np.zeros(3)])
        self._chains = ChainFilter(value, p.measurement_variance, p.velocity_variance,
                                   p.process_noise, p.adapt_gain, p.adapt_gate,
                                   p.velocity_time)
        self._rotation = rotation

    def _advance(self, time: float) -> None:
        dt = time - self.time
        if dt < 0:
            raise ValueError(f"track {self.track}: time went back from {self.time} to {time}")
        self._chains.predict(dt)
        self._fold_rotation()

    def _fold_rotation(self) -> None:
        """Move the rotation error the chains hold into the estimate and zero it (the reset of
        an error-state filter). A product of two rotations, so a rotation to round-off; the
        update re-orthonormalises so that round-off never accumulates."""
        error = self._chains.value[_ROTATION]
        self._rotation = _exp(error) @ self._rotation
        error[:] = 0.0

    def _state(self, status: str) -> FaceState:
        lead = self.predict_ms / 1000.0
        chains = self._chains.ahead(lead)
        # The rotation chains are zero at the filter's time, so with no lead this is the estimate.
        rotation = _exp(chains.value[_ROTATION]) @ self._rotation if lead else self._rotation
        return FaceState(
            track=self.track, status=status, time=self.time + lead,
            identity=self._identity,
            expression=np.clip(chains.value[_EXPRESSION], 0.0, 1.0),
            rotation=rotation,
            translation=chains.value[_TRANSLATION],
            expression_velocity=chains.velocity[_EXPRESSION],
            angular_velocity=chains.velocity[_ROTATION],
            translation_velocity=chains.velocity[_TRANSLATION],
            identity_variance=np.full(len(self._identity),
                                      self.config.identity_std ** 2 / self._measured),
            expression_variance=chains.variance[_EXPRESSION],
            rotation_variance=chains.variance[_ROTATION],
            translation_variance=chains.variance[_TRANSLATION])


MAX_PREDICT_MS = 1000  # beyond a second, a constant-velocity guess means nothing


class Smoother:
    """A :class:`FaceFilter` per track id, kept from a track's first measurement to its loss; a
    re-acquired face gets a new track id from TrackIds, hence a fresh filter."""

    def __init__(self, config: SmoothingConfig | None = None, predict_ms: float = 0.0) -> None:
        self.config = config or SmoothingConfig()
        self.predict_ms = predict_ms
        self.filters: dict[int, FaceFilter] = {}

    def update(self, time: float,
               tracks: Iterable[tuple[int, str, FaceFit | None]]) -> list[FaceState]:
        """States of the tracks of one frame: (track id, status, the regressor's fit or None)
        each.

        Tracking tracks are updated, coasting ones predicted; a lost track is predicted one last
        time, reported with status ``lost`` and its filter dropped. Coasting or lost tracks that
        were never measured have no state and are skipped.
        """
        states = []
        for track, status, measurement in tracks:
            if status == TRACKING:
                if measurement is None:
                    raise ValueError(f"track {track} is tracking but has no measurement")
                face = self.filters.get(track)
                if face is None:
                    face = self.filters[track] = FaceFilter(track, self.config, self.predict_ms)
                states.append(face.update(time, measurement.identity, measurement.expression,
                                          measurement.rotation, measurement.translation))
            elif status == COASTING:
                if track in self.filters:
                    states.append(self.filters[track].predict(time))
            elif status == LOST:
                if track in self.filters:
                    states.append(replace(self.filters.pop(track).predict(time), status=LOST))
            else:
                raise ValueError(f"track {track}: unknown status {status!r}")
        return states
