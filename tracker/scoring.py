"""Accuracy of tracked faces against the ground truth of synthetic clips (`tracker.synth`): the
metrics of the accuracy harness (benchmarks/accuracy.py), kept here so tests and later benchmarks
score the same way.

Distances are in millimetres (the model is in centimetres) on the narrow face. Per-frame errors
are summarised by their median, so a few lost or wild frames do not hide how the tracker does
most of the time; correlations and lags are per clip.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streams.errors import FacetrackError
from streams.recording import read_records
from tracker.face_model import FaceModel, posed
from tracker.pose import angles
from tracker.synth import Truth
from tracker.tracks import TRACKING

REGION = "narrow_face"
MM_PER_CM = 10.0
MAX_LAG = 10  # frames
# Blendshapes whose correlation with the truth and gain are reported; two names: the sides are
# averaged.
CHANNELS: dict[str, tuple[str, ...]] = {
    "jawOpen": ("jawOpen",),
    "eyeBlink": ("eyeBlink_L", "eyeBlink_R"),
    "mouthSmile": ("mouthSmile_L", "mouthSmile_R"),
    "browInnerUp": ("browInnerUp_L", "browInnerUp_R"),
    "mouthPucker": ("mouthPucker",),
    "browDown": ("browDown_L", "browDown_R"),
}
# A truth channel "moves" (correlation and lag are defined) beyond these ranges; the head's
# sway in every clip (about 0.6°) stays under the yaw one.
MIN_RANGE = {"expression": 1e-3, "yaw": 5.0, "jawOpen": 0.1}
@dataclass(frozen=True)
class Predictions:
    """A tracker's per-frame output on a clip, NaN where it gave none (no face, or a field the
    record lacks)."""

    tracked: np.ndarray  # (N,) bool: a face was tracked in the frame
    rotations: np.ndarray  # (N, 3, 3)
    translations: np.ndarray  # (N, 3) cm
    identities: np.ndarray  # (N, 100)
    expressions: np.ndarray  # (N, 53), ICT order

    @classmethod
    def empty(cls, frames: int, identities: int = 100, expressions: int = 53) -> Predictions:
        """Nothing tracked, every value NaN: what a recording fills in."""
        return cls(np.zeros(frames, bool), *(np.full(shape, np.nan) for shape in (
            (frames, 3, 3), (frames, 3), (frames, identities), (frames, expressions))))


def baseline(truth: Truth) -> Predictions:
    """The mean face with the true head pose: what a regressor must beat on shape and
    expression (its pose errors are zero by construction)."""
    frames = len(truth)
    return Predictions(np.ones(frames, bool), truth.rotations.copy(), truth.translations.copy(),
                       np.zeros((frames, len(truth.identity))),
                       np.zeros_like(truth.expressions, dtype=np.float64))


def read_predictions(path: str | Path, truth: Truth) -> Predictions:
    """The predictions of recording PATH of the clip TRUTH describes: the coefficients of the
    first tracked face of each frame."""
    _, records = read_records(path)
    names = truth.expression_names
    result = Predictions.empty(len(truth), len(truth.identity), len(names))
    faces: dict[int, dict] = {}
    for record in records:
        frame = record.get("frame")
        if not isinstance(frame, int) or not 0 <= frame < len(truth):
            raise FacetrackError(f"{path}: frame {frame!r} is not one of the clip's "
                                 f"{len(truth)} frames")
        face = next((f for f in record.get("faces", []) if f.get("status") == TRACKING), None)
        if face is not None:
            faces[frame] = face
            result.tracked[frame] = True
    if faces and not any("rotation" in face for face in faces.values()):
        raise FacetrackError(f"{path}: its faces carry no coefficients (recorded by a facetrack "
                             "without the regressor)")
    try:
        for frame, face in faces.items():
            _fill(result, frame, face, names)
    except (TypeError, ValueError) as error:
        raise FacetrackError(f"{path}: frame {frame}: {error}") from None
    return result


def _fill(result: Predictions, frame: int, face: dict, names: tuple[str, ...]) -> None:
    """Frame FRAME of RESULT from a record's face; a malformed field raises ValueError."""
    for key, values in (("rotation", result.rotations), ("translation", result.translations),
                        ("identity", result.identities)):
        if key in face:
            values[frame] = face[key]
    expression = face.get("expression", {})
    unknown = set(expression) - set(names)
    if unknown:
        raise ValueError(f"unknown expressions {', '.join(sorted(unknown))}")
    for name, value in expression.items():
        result.expressions[frame, names.index(name)] = value


def similarity_align(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """SOURCE points (..., n, 3) moved onto TARGET (..., n, 3) by the rotation, uniform scale and
    translation that minimise the squared distances (Umeyama 1991): errors of shape alone."""
    source_mean = source.mean(axis=-2, keepdims=True)
    target_mean = target.mean(axis=-2, keepdims=True)
    a, b = source - source_mean, target - target_mean
    covariance = np.swapaxes(b, -1, -2) @ a / a.shape[-2]
    u, s, vt = np.linalg.svd(covariance)
    signs = np.ones(s.shape)
    signs[..., -1] = np.sign(np.linalg.det(u @ vt))  # a rotation, never a reflection
    rotation = u @ (signs[..., :, None] * vt)
    variance = (a**2).sum(axis=(-1, -2)) / a.shape[-2]
    scale = (s * signs).sum(axis=-1) / variance
    return scale[..., None, None] * a @ np.swapaxes(rotation, -1, -2) + target_mean


def posed_error_mm(predicted: np.ndarray, true: np.ndarray, align: bool = False) -> np.ndarray:
    """Mean vertex distance (...,) in mm between meshes (..., n, 3) in cm; ALIGN first removes a
    similarity transform, leaving the error of the shape alone."""
    if align:
        predicted = similarity_align(predicted, true)
    return np.linalg.norm(predicted - true, axis=-1).mean(axis=-1) * MM_PER_CM


def rotation_error_deg(predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Geodesic angle (...,) in degrees of R_pred R_true^T, from the chord ||R_pred - R_true||,
    which stays accurate for small angles where arccos of the trace does not."""
    chord = np.linalg.norm(predicted - true, axis=(-2, -1)) / (2 * np.sqrt(2))
    return np.degrees(2 * np.arcsin(np.clip(chord, 0.0, 1.0)))


def correlation(true: np.ndarray, predicted: np.ndarray) -> float:
    """Pearson correlation over the frames with a prediction; NaN where the truth is constant
    (nothing to follow), 0 for a constant prediction (it follows nothing)."""
    pair = _followable(true, predicted)
    if pair is None:
        return float("nan")
    true, predicted = pair
    if np.ptp(predicted) == 0:
        return 0.0
    return float(np.corrcoef(true, predicted)[0, 1])


def gain(true: np.ndarray, predicted: np.ndarray) -> float:
    """The least-squares slope of PREDICTED on TRUE over the frames with a prediction: 1 when a
    shape is read at its full size, under 1 when it is read smaller (which a correlation does
    not see, and an avatar does); NaN where the truth is constant."""
    pair = _followable(true, predicted)
    return float("nan") if pair is None else float(np.polyfit(*pair, 1)[0])


def _followable(true: np.ndarray,
                predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """TRUE and PREDICTED over the frames with a prediction, or None where the truth barely
    moves there (nothing to follow)."""
    valid = np.isfinite(predicted)
    true, predicted = true[valid], predicted[valid]
    if len(true) < 3 or np.ptp(true) < MIN_RANGE["expression"]:
        return None
    return true, predicted


def lag_frames(true: np.ndarray, predicted: np.ndarray, max_lag: int = MAX_LAG) -> float:
    """How many frames (0..MAX_LAG) PREDICTED trails TRUE: the shift that best correlates their
    first differences (motion, not level, so an offset or a scale error does not matter).
    NaN when no shift gives a defined correlation."""
    d_true, d_predicted = np.diff(true), np.diff(predicted)
    scores = [_pearson(d_true[: len(d_true) - lag], d_predicted[lag:])
              for lag in range(max_lag + 1)]
    if np.isnan(scores).all():
        return float("nan")
    return float(np.nanargmax(scores))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation over the pairs both finite; NaN for fewer than 3 or a constant side."""
    valid = np.isfinite(a) & np.isfinite(b)
    a, b = a[valid], b[valid]
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


PER_FRAME = ("posed_aligned_mm", "posed_camera_mm", "rotation_deg", "translation_pct",
             "motion_mm")


def score_clip(truth: Truth, predictions: Predictions, model: FaceModel) -> dict:
    """Every metric of PREDICTIONS against TRUTH: ``{"frames", "tracked", "per_frame": {name:
    errors, NaN where not predicted; motion has one fewer}, "per_clip": {name: value},
    "summary": {name: value}}``, the summary being the clip's row of the table."""
    true_mesh = posed(model.vertices(truth.identity, truth.expressions, region=REGION),
                      truth.rotations, truth.translations).astype(np.float64)
    valid = (np.isfinite(predictions.identities).all(axis=1)
             & np.isfinite(predictions.expressions).all(axis=1)
             & np.isfinite(predictions.rotations).all(axis=(1, 2))
             & np.isfinite(predictions.translations).all(axis=1))
    mesh = np.full_like(true_mesh, np.nan)
    mesh[valid] = posed(model.vertices(predictions.identities[valid],
                                       predictions.expressions[valid], region=REGION),
                        predictions.rotations[valid], predictions.translations[valid])
    aligned = np.full(len(truth), np.nan)
    aligned[valid] = posed_error_mm(mesh[valid], true_mesh[valid], align=True)
    motion = np.diff(mesh, axis=0) - np.diff(true_mesh, axis=0)
    translation = np.linalg.norm(predictions.translations - truth.translations, axis=1)
    per_frame = {
        "posed_aligned_mm": aligned,
        "posed_camera_mm": posed_error_mm(mesh, true_mesh),
        "rotation_deg": rotation_error_deg(predictions.rotations, truth.rotations),
        "translation_pct": 100 * translation / np.linalg.norm(truth.translations, axis=1),
        "motion_mm": np.linalg.norm(motion, axis=-1).mean(axis=-1) * MM_PER_CM,
    }
    per_clip = {"neutral_mm": neutral_error_mm(truth, predictions, model),
                **_lags(truth, predictions),
                **{f"{key}_{channel}": _per_channel(metric, truth, predictions, names)
                   for key, metric in (("r", correlation), ("gain", gain))
                   for channel, names in CHANNELS.items()}}
    tracked = int(predictions.tracked.sum())
    return {"frames": len(truth), "tracked": tracked, "per_frame": per_frame,
            "per_clip": per_clip, "summary": _summary(len(truth), tracked, per_frame, per_clip)}


def overall(scores: list[dict]) -> dict[str, float]:
    """The "all" row of several clips' `score_clip`: per-frame errors pooled over every frame of
    every clip, per-clip numbers (correlations, lags, neutral error) averaged over the clips
    that define them."""
    per_frame = {name: np.concatenate([s["per_frame"][name] for s in scores])
                 for name in PER_FRAME}
    per_clip = {name: _nanmean([s["per_clip"][name] for s in scores])
                for name in scores[0]["per_clip"]}
    return _summary(sum(s["frames"] for s in scores), sum(s["tracked"] for s in scores),
                    per_frame, per_clip)


def neutral_error_mm(truth: Truth, predictions: Predictions, model: FaceModel) -> float:
    """Shape error of the clip-averaged identity, neutral and unposed, after a similarity
    alignment: how well the clip pins down who it is, apart from pose and expression."""
    known = np.isfinite(predictions.identities).all(axis=1)
    if not known.any():
        return float("nan")
    predicted = model.vertices(predictions.identities[known].mean(axis=0), region=REGION)
    true = model.vertices(truth.identity, region=REGION)
    return float(posed_error_mm(predicted.astype(np.float64), true.astype(np.float64),
                                align=True))


def _lags(truth: Truth, predictions: Predictions) -> dict[str, float]:
    """Lag of yaw and of jawOpen behind the truth, where the truth moves them."""
    yaw_true = angles(truth.rotations)[:, 0]
    yaw = np.full(len(truth), np.nan)
    posed_frames = np.isfinite(predictions.rotations).all(axis=(1, 2))
    yaw[posed_frames] = angles(predictions.rotations[posed_frames])[:, 0]
    jaw = truth.expression_names.index("jawOpen")
    jaw_true = truth.expressions[:, jaw].astype(np.float64)
    return {"lag_yaw": _moving_lag(yaw_true, yaw, MIN_RANGE["yaw"]),
            "lag_jawOpen": _moving_lag(jaw_true, predictions.expressions[:, jaw],
                                       MIN_RANGE["jawOpen"])}


def _moving_lag(true: np.ndarray, predicted: np.ndarray, min_range: float) -> float:
    return lag_frames(true, predicted) if np.ptp(true) > min_range else float("nan")


def _per_channel(metric: Callable[[np.ndarray, np.ndarray], float], truth: Truth,
                 predictions: Predictions, names: tuple[str, ...]) -> float:
    """METRIC (`correlation`, `gain`) of one channel, averaged over its sides that the truth
    moves."""
    columns = [truth.expression_names.index(name) for name in names]
    return _nanmean([metric(truth.expressions[:, c].astype(np.float64),
                            predictions.expressions[:, c]) for c in columns])


def _summary(frames: int, tracked: int, per_frame: dict[str, np.ndarray],
             per_clip: dict[str, float]) -> dict[str, float]:
    """A table row: tracked share, medians of per-frame errors (the mean for motion, whose
    rare jumps are what it measures), per-clip numbers as they are."""
    return {"tracked": tracked / frames,
            **{name: (_nanmean if name == "motion_mm" else _nanmedian)(values)
               for name, values in per_frame.items()},
            **per_clip}


def _nanmean(values: list[float] | np.ndarray) -> float:
    finite = np.asarray(values, np.float64)
    finite = finite[np.isfinite(finite)]
    return float(finite.mean()) if len(finite) else float("nan")


def _nanmedian(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if len(finite) else float("nan")
