"""The temporal smoother: exact against filterpy, smooth when still, quick on steps, and sound
on SO(3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from filterpy.common import Q_discrete_white_noise
from filterpy.kalman import KalmanFilter
from scipy.spatial.transform import Rotation

from tracker.pose import rotation as head_rotation
from tracker.regressor import FaceFit
from tracker.smoothing import (
    ChainFilter,
    ChainNoise,
    FaceFilter,
    FaceState,
    IdentityEstimate,
    Smoother,
    SmoothingConfig,
)

# The filter's mechanics are tested at fixed noise levels (the defaults move whenever
# benchmarks/tune_smoothing.py is re-run for a new regressor): 0.05 expression, 0.3-1.5 cm,
# 1 degree, acceleration about 10/s² x measurement std, a 3-sigma gate.
CONFIG = SmoothingConfig(
    expression=ChainNoise(measurement_std=0.05, acceleration_std=0.5, initial_velocity_std=1.0,
                          adapt_gain=3.0, adapt_gate=9.0),
    translation=ChainNoise(measurement_std=(0.3, 0.3, 1.5), acceleration_std=3.0,
                           initial_velocity_std=10.0, adapt_gain=3.0, adapt_gate=9.0),
    rotation=ChainNoise(measurement_std=float(np.radians(1.0)), acceleration_std=0.2,
                        initial_velocity_std=1.0, adapt_gain=3.0, adapt_gate=9.0),
    identity_std=0.5)
FPS = 30.0


def reference_filters(value, value_variance, velocity_variance) -> list[KalmanFilter]:
    filters = []
    for x, p0, p1 in zip(value, value_variance, velocity_variance, strict=True):
        kf = KalmanFilter(dim_x=2, dim_z=1)
        kf.x = np.array([[x], [0.0]])
        kf.P = np.diag([p0, p1])
        kf.H = np.array([[1.0, 0.0]])
        filters.append(kf)
    return filters


@pytest.mark.parametrize(("adapt_gain", "velocity_time"),
                         [(0.0, math.inf), (2.5, math.inf), (0.0, 0.15), (2.5, 0.15)])
def test_chains_match_filterpy(adapt_gain: float, velocity_time: float) -> None:
    """Batched chains == one filterpy KalmanFilter per chain, with random dt, coasting steps and
    per-chain noise; with adaptation, == filterpy whose prediction is scaled by the rule; with a
    decaying velocity, == filterpy with that decay in F."""
    rng = np.random.default_rng(5)
    k = 9
    value, p0, p1 = rng.normal(size=k), rng.uniform(0.01, 1, k), rng.uniform(0.1, 4, k)
    q, gate = rng.uniform(0.1, 50, k), rng.uniform(0.5, 4, k)
    chains = ChainFilter(value, p0, p1, q, adapt_gain, gate, velocity_time)
    reference = reference_filters(value, p0, p1)
    truth = value.copy()
    for _ in range(300):
        dt = rng.uniform(0.005, 0.2)
        truth += rng.normal(scale=0.5, size=k) * dt
        chains.predict(dt)
        for kf, qi in zip(reference, q, strict=True):
            kf.predict(F=np.array([[1.0, dt], [0.0, math.exp(-dt / velocity_time)]]),
                       Q=Q_discrete_white_noise(2, dt, qi))
        if rng.random() < 0.8:  # else the chains coast on to the next step
            r = rng.uniform(0.001, 0.5, k)
            z = truth + rng.normal(size=k) * np.sqrt(r) * rng.choice([1, 10], k)
            nis = chains.update(z, r)
            for i, kf in enumerate(reference):
                innovation = z[i] - kf.x[0, 0]
                reference_nis = innovation**2 / (kf.P[0, 0] + r[i])
                assert nis[i] == pytest.approx(reference_nis, rel=1e-9)
                kf.P = kf.P * (1.0 + adapt_gain * max(0.0, reference_nis - gate[i]))
                kf.update(z[i], R=r[i])
        expected_x = np.array([kf.x[:, 0] for kf in reference])
        expected_p = np.array([kf.P for kf in reference])
        np.testing.assert_allclose(chains.value, expected_x[:, 0], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(chains.velocity, expected_x[:, 1], rtol=1e-9, atol=1e-12)
        for ours, index in ((chains.p00, (0, 0)), (chains.p01, (0, 1)), (chains.p11, (1, 1))):
            np.testing.assert_allclose(ours, expected_p[:, index[0], index[1]],
                                       rtol=1e-9, atol=1e-12)


def degrees_between(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    """Angles (degrees) between two sequences of rotation matrices, pair by pair."""
    relative = np.array(a) @ np.swapaxes(np.array(b), 1, 2)
    return np.degrees(Rotation.from_matrix(relative).magnitude())


def noisy(rng: np.random.Generator, identity: np.ndarray, expression: np.ndarray,
          rotation: np.ndarray, translation: np.ndarray) -> FaceFit:
    """A measurement with the noise the default config expects."""
    rotation_noise = rng.normal(scale=CONFIG.rotation.measurement_std, size=3)
    return FaceFit(
        identity + rng.normal(scale=CONFIG.identity_std, size=identity.shape),
        expression + rng.normal(scale=CONFIG.expression.measurement_std, size=expression.shape),
        Rotation.from_rotvec(rotation_noise).as_matrix() @ rotation,
        translation + rng.normal(size=3) * CONFIG.translation.measurement_std)


def run(face: FaceFilter, measurements: list[FaceFit], start: float = 0.0) -> list[FaceState]:
    return [face.update(start + i / FPS, m.identity, m.expression, m.rotation, m.translation)
            for i, m in enumerate(measurements)]


def still_truth() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    expression = np.zeros(53)
    expression[26] = 0.4  # jawOpen; the rest at rest, where clipping matters
    return (np.linspace(-1, 1, 100), expression, head_rotation(10, -5, 3),
            np.array([1.0, -2.0, 60.0]))


def test_still_face_is_smoothed() -> None:
    rng = np.random.default_rng(1)
    truth = still_truth()
    measurements = [noisy(rng, *truth) for _ in range(120)]
    states = run(FaceFilter(0, CONFIG), measurements)[30:]  # after a second of convergence
    inputs = measurements[30:]

    def motion(values: list[np.ndarray]) -> float:
        return float(np.mean(np.abs(np.diff(values, axis=0))))

    for field in ("expression", "translation"):
        ours = motion([getattr(s, field) for s in states])
        theirs = motion([getattr(m, field) for m in inputs])
        assert ours < 0.2 * theirs, field
    ours, theirs = ([x.rotation for x in sequence] for sequence in (states, inputs))
    assert degrees_between(ours[1:], ours[:-1]).mean() < 0.2 * degrees_between(
        theirs[1:], theirs[:-1]).mean()
    assert all(s.expression.min() >= 0.0 and s.expression.max() <= 1.0 for s in states)
    # Smoothed, not just slowed: closer to the truth than the measurements.
    assert np.mean([abs(s.expression[26] - 0.4) for s in states]) < 0.5 * np.mean(
        [abs(m.expression[26] - 0.4) for m in inputs])


def test_step_is_followed_within_two_frames() -> None:
    """jawOpen 0.1 -> 0.8 at 30 fps: past 90% of the step two frames (67 ms) after it, and on
    the new value after that (the constant-velocity model overshoots a step a little), without
    moving the other chains."""
    rng = np.random.default_rng(2)
    identity, expression, rotation, translation = still_truth()
    before, after = expression.copy(), expression.copy()
    before[26], after[26] = 0.1, 0.8
    measurements = ([noisy(rng, identity, before, rotation, translation) for _ in range(30)]
                    + [noisy(rng, identity, after, rotation, translation) for _ in range(30)])
    states = run(FaceFilter(0, CONFIG), measurements)
    jaw = np.array([s.expression[26] for s in states])
    assert jaw[32] > 0.73 and np.abs(jaw[33:] - 0.8).mean() < 0.06, jaw[30:40]
    others = np.delete(np.array([s.expression for s in states[20:]]), 26, axis=1)
    assert np.abs(others - np.delete(after, 26)).max() < 0.07


def test_coasting_grows_variance_and_lost_restarts_cleanly() -> None:
    rng = np.random.default_rng(3)
    truth = still_truth()
    smoother = Smoother(CONFIG)
    for i in range(10):
        smoother.update(i / FPS, [(0, "tracking", noisy(rng, *truth))])
    coasting = [smoother.update((10 + i) / FPS, [(0, "coasting", None)])[0] for i in range(5)]
    assert all(s.status == "coasting" for s in coasting)
    for field in ("expression_variance", "rotation_variance", "translation_variance"):
        variances = np.array([getattr(s, field) for s in coasting])
        assert np.all(np.diff(variances, axis=0) > 0), field
    (lost,) = smoother.update(15 / FPS, [(0, "lost", None)])
    assert lost.status == "lost" and 0 not in smoother.filters
    assert smoother.update(16 / FPS, [(0, "coasting", None)]) == []

    # The face comes back, far away and with another expression: a fresh start, no memory.
    identity, expression, rotation, translation = still_truth()
    back = FaceFit(identity + 1.0, 1.0 - expression, head_rotation(-40), translation + 20.0)
    (state,) = smoother.update(17 / FPS, [(1, "tracking", back)])
    np.testing.assert_allclose(state.identity, back.identity)
    np.testing.assert_allclose(state.expression, back.expression)
    np.testing.assert_allclose(state.rotation, back.rotation, atol=1e-12)
    np.testing.assert_allclose(state.translation, back.translation)
    np.testing.assert_allclose(state.translation_velocity, 0.0)
    np.testing.assert_allclose(state.identity_variance, CONFIG.identity_std**2)


def test_tracks_keep_separate_filters() -> None:
    rng = np.random.default_rng(4)
    truth = still_truth()
    mine = [noisy(rng, *truth) for _ in range(20)]
    other_truth = (truth[0] * 2, 1.0 - truth[1], head_rotation(30, 20), truth[3] + 10)
    others = [noisy(rng, *other_truth) for _ in range(20)]
    alone = run(FaceFilter(0, CONFIG), mine)
    smoother = Smoother(CONFIG)
    together = [smoother.update(i / FPS, [(1, "tracking", b), (0, "tracking", a)])[1]
                for i, (a, b) in enumerate(zip(mine, others, strict=True))]
    for a, b in zip(alone, together, strict=True):
        for field in ("identity", "expression", "rotation", "translation",
                      "expression_variance", "angular_velocity"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_rotation_stays_a_rotation_over_10000_random_steps() -> None:
    rng = np.random.default_rng(6)
    identity, expression, _, translation = still_truth()
    face = FaceFilter(0, CONFIG)
    time = 0.0
    for rotation in Rotation.random(10_000, random_state=7).as_matrix():
        time += rng.uniform(0.0, 0.1)
        if rng.random() < 0.9:
            state = face.update(time, identity, expression, rotation, translation)
        else:
            state = face.predict(time)
        assert np.abs(state.rotation @ state.rotation.T - np.eye(3)).max() < 1e-9
        assert np.linalg.det(state.rotation) == pytest.approx(1.0, abs=1e-9)


def test_rotation_follows_constant_angular_velocity() -> None:
    rng = np.random.default_rng(8)
    identity, expression, start, translation = still_truth()
    omega = np.array([0.3, -1.0, 0.5])  # rad/s, camera frame: a brisk head turn
    times = np.arange(120) / FPS
    truths = [Rotation.from_rotvec(omega * t).as_matrix() @ start for t in times]
    measurements = [noisy(rng, identity, expression, r, translation) for r in truths]
    states = run(FaceFilter(0, CONFIG), measurements)
    errors = degrees_between([s.rotation for s in states], truths)[30:]
    raw = degrees_between([m.rotation for m in measurements], truths)[30:]
    # No lag behind the turn: well under the measurements' own error (1.6 degrees on average).
    assert errors.mean() < 0.5 * raw.mean() and errors.max() < 1.5, errors
    velocities = np.array([s.angular_velocity for s in states[30:]])
    assert np.abs(velocities - omega).max() < 0.2


def test_predict_ms_publishes_ahead_without_changing_the_filter() -> None:
    rng = np.random.default_rng(9)
    identity, expression, rotation, translation = still_truth()
    velocity = np.array([20.0, 0.0, 0.0])  # cm/s
    measurements = [noisy(rng, identity, expression, rotation, translation + velocity * i / FPS)
                    for i in range(60)]
    now = run(FaceFilter(0, CONFIG), measurements)
    ahead = run(FaceFilter(0, CONFIG, predict_ms=100.0), measurements)
    for a, b in zip(now, ahead, strict=True):
        assert b.time == pytest.approx(a.time + 0.1)
        np.testing.assert_allclose(b.translation, a.translation + 0.1 * a.translation_velocity)
        assert np.all(b.translation_variance > a.translation_variance)
    published_for = ahead[-1].time
    assert ahead[-1].translation[0] == pytest.approx(translation[0] + velocity[0] * published_for,
                                                     abs=0.5)


def test_identity_converges_with_variance_one_over_n() -> None:
    rng = np.random.default_rng(10)
    truth = rng.normal(size=100)
    std, n = 0.5, 400
    measurements = truth + rng.normal(scale=std, size=(n, 100))
    estimate = IdentityEstimate(measurements[0], std**2)
    for m in measurements[1:]:
        estimate.update(m, std**2)
    np.testing.assert_allclose(estimate.mean, measurements.mean(axis=0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(estimate.variance, std**2 / n)
    assert np.sqrt(np.mean((estimate.mean - truth) ** 2)) == pytest.approx(std / np.sqrt(n),
                                                                          rel=0.25)


def test_identity_weights_measurements_by_their_variance() -> None:
    estimate = IdentityEstimate([0.0], 1.0)
    estimate.update([3.0], 0.5)  # twice the information of the first
    np.testing.assert_allclose(estimate.mean, [2.0])
    np.testing.assert_allclose(estimate.variance, [1.0 / 3.0])
