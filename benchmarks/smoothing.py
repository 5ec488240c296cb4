"""Temporal smoothing on ground-truth clips and real footage (issue 5, item 6): the raw regressor
against a One Euro filter and against our Kalman smoother.

    .venv/bin/python benchmarks/smoothing.py [--frames N] [--seed S] [--work DIR] [--json OUT]

It makes the clips with ``facetrack synth`` (still, talking, head_shake, head_turns), records the
raw series with ``facetrack run --no-smooth --record`` (with a camera file of each clip's true
intrinsics), and runs both filters over those series in-process: the Kalman one is the very
``Smoother`` that ``facetrack run`` uses (checked against a smoothed ``facetrack run`` of the still
clip). The One Euro filter is tuned the Casiez et al. way, printed, and then everything is scored
with `tracker.scoring`. Also: pose noise on still stretches of real footage, a jitter-lag curve,
and the smoother's cost per face and frame.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from streams.errors import FacetrackError
from streams.recording import read_records, tracked_face
from tracker.expressions import ICT_EXPRESSION_NAMES
from tracker.face_model import FaceModel
from tracker.regressor import DEFAULT_MODEL, FaceFit, Manifest
from tracker.scoring import Predictions, score_clip
from tracker.smoothing import (
    ChainNoise,
    FaceState,
    Smoother,
    SmoothingConfig,
)
from tracker.synth import Truth, load_truth, write_camera_file
from tracker.tracks import COASTING, TRACKING

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import facetrack  # noqa: E402  (the harness's runner)

FOOTAGE = Path(__file__).resolve().parents[2] / "shared" / "footage"
CLIPS = ("still", "talking", "head_shake", "head_turns", "blinks_smile")
MOVING = ("talking", "head_shake", "head_turns", "blinks_smile")
TARGET_JITTER = 0.05  # mm/frame on the still clip (issue 5)
TARGET_LAG = 1  # frames, yaw on head_shake and jawOpen on talking
# Casiez et al.'s order: min_cutoff lowered (Hz) until a still face stops jittering, then beta
# raised until fast motion stops lagging. Beta is per measurement std (see OneEuroParams).
MIN_CUTOFFS = (8.0, 5.0, 3.0, 2.0, 1.5, 1.0, 0.7, 0.5, 0.3, 0.2, 0.1)
BETAS = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
# The jitter-lag curve of the Kalman smoother: adapt_gain at the tuned process noise.
ADAPT_GAINS = (0.0, 0.3, 1.0, 3.0, 10.0, 30.0)
NOISE_SCALES = (0.1, 0.3, 3.0, 10.0)  # and acceleration_std times these, at the default gain
VELOCITY_TIMES = (math.inf, 0.5, 0.2, 0.1, 0.05)  # and velocity_time_s set to these
GROUPS = ("expression", "translation", "rotation")
SETTLE_FRAMES = 15  # still-face jitter counts from here: a filter's first frames converge
STILL_STRETCH_S = 1.0  # seconds of real footage whose face box moves least


@dataclass(frozen=True)
class Series:
    """One face's per-frame values over a recording (the first tracking face of each frame),
    NaN where there is none; ``bbox`` is MediaPipe's, for finding still stretches."""

    times: np.ndarray  # (N,) s
    tracked: np.ndarray  # (N,) bool
    identity: np.ndarray  # (N, 100)
    expression: np.ndarray  # (N, 53), ICT order
    rotation: np.ndarray  # (N, 3, 3)
    translation: np.ndarray  # (N, 3) cm
    bbox: np.ndarray  # (N, 4) px

    def fits(self) -> Iterator[FaceFit | None]:
        for i in range(len(self.times)):
            yield (FaceFit(self.identity[i], self.expression[i], self.rotation[i],
                           self.translation[i]) if self.tracked[i] else None)

    def predictions(self) -> Predictions:
        return Predictions(self.tracked, self.rotation, self.translation, self.identity,
                           self.expression)


def read_series(path: Path) -> Series:
    """The first tracking face of every frame of recording PATH."""
    _, records = read_records(path)
    n = len(records)
    series = Series(np.array([r["time"] for r in records]), np.zeros(n, bool),
                    *(np.full(shape, np.nan) for shape in ((n, 100), (n, 53), (n, 3, 3), (n, 3),
                                                           (n, 4))))
    for i, record in enumerate(records):
        face = tracked_face(record)
        if face is None:
            continue
        series.tracked[i] = True
        series.identity[i], series.rotation[i] = face["identity"], face["rotation"]
        series.translation[i], series.bbox[i] = face["translation"], face["bbox"]
        series.expression[i] = [face["expression"][name] for name in ICT_EXPRESSION_NAMES]
    return series


@dataclass(frozen=True)
class Clip:
    name: str
    truth: Truth
    raw: Series


def ground_truth_clips(folder: Path, names: tuple[str, ...], frames: int, seed: int) -> list[Clip]:
    """NAMES as ``facetrack synth`` makes them in FOLDER (kept if there), with the raw series of
    ``facetrack run --no-smooth`` on each."""
    missing = [name for name in names if not (folder / f"{name}.json").is_file()]
    if missing:
        facetrack("synth", str(folder), "--clips", ",".join(missing), "--frames", str(frames),
                  "--seed", str(seed))
    clips = []
    for name in names:
        truth = load_truth(folder / f"{name}.json")
        camera = write_camera_file(truth, folder / f"{name}.camera.json")
        clips.append(Clip(name, truth, raw_series(folder / f"{name}.mp4", folder, camera)))
    return clips


def raw_series(video: Path, folder: Path, camera: Path | None = None) -> Series:
    """The raw regressor output of ``facetrack run --no-smooth`` on VIDEO (recorded once per
    regressor version)."""
    record = folder / f"{video.stem}.{Manifest.load(DEFAULT_MODEL).model_version}.raw.jsonl"
    if not record.is_file():
        extra = ["--camera", str(camera)] if camera else []
        facetrack("run", "--source", str(video), "--record", str(record), "--no-smooth",
                  "--quiet", *extra)
    return read_series(record)


def kalman(series: Series, config: SmoothingConfig | None = None) -> Series:
    """SERIES through the pipeline's smoother: the states it would publish."""
    smoother = Smoother(config)
    out = _empty_like(series)
    started = False
    for i, (t, fit) in enumerate(zip(series.times, series.fits(), strict=True)):
        if fit is None and not started:
            continue
        started = True
        (state,) = smoother.update(t, [(0, TRACKING, fit) if fit else (0, COASTING, None)])
        _put(out, i, state)
    return out


@dataclass(frozen=True)
class OneEuroParams:
    """One Euro settings for every group; a group's beta is ``beta / its measurement std``, so
    one number serves expression, cm and radians alike (speed is counted in noise units)."""

    min_cutoff: float  # Hz
    beta: float  # s per measurement std
    d_cutoff: float = 1.0  # Hz, Casiez et al.'s default


class OneEuroFilter:
    """Casiez, Roussel and Vogel's 1€ filter (CHI 2012) on a vector of channels, written on the
    innovation (measurement minus estimate) so it also filters rotations in their tangent
    space. As in the reference code, the speed is the innovation rate, low-passed at d_cutoff,
    and the cutoff is ``min_cutoff + beta * |speed|``."""

    def __init__(self, min_cutoff: float, beta: float | np.ndarray, d_cutoff: float) -> None:
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.speed: np.ndarray | None = None

    def step(self, innovation: np.ndarray, dt: float) -> np.ndarray:
        """How far to move the estimate toward the measurement."""
        rate = innovation / dt
        self.speed = rate if self.speed is None else (
            self.speed + _alpha(self.d_cutoff, dt) * (rate - self.speed))
        return _alpha(self.min_cutoff + self.beta * np.abs(self.speed), dt) * innovation


def _alpha(cutoff: float | np.ndarray, dt: float) -> np.ndarray:
    return 1.0 / (1.0 + 1.0 / (2 * np.pi * np.asarray(cutoff) * dt))


def one_euro(series: Series, params: OneEuroParams, config: SmoothingConfig) -> Series:
    """SERIES through One Euro filters on expression, translation and rotation (SO(3), camera
    frame, as the Kalman's); identity passed on as the Kalman passes it (the run pooled it), so
    only the temporal filters differ. CONFIG's measurement stds scale beta."""
    out = _empty_like(series)
    filters: dict[str, OneEuroFilter] = {}
    last = 0.0
    for i, fit in enumerate(series.fits()):
        if fit is None:
            continue
        if not filters:  # the first fit
            expression, translation, rotation = fit.expression, fit.translation, fit.rotation
            filters = {group: OneEuroFilter(
                params.min_cutoff, params.beta / np.asarray(getattr(config, group).measurement_std),
                params.d_cutoff) for group in GROUPS}
        else:
            dt = series.times[i] - last
            expression = expression + filters["expression"].step(fit.expression - expression, dt)
            translation = translation + filters["translation"].step(
                fit.translation - translation, dt)
            error = Rotation.from_matrix(fit.rotation @ rotation.T).as_rotvec()
            rotation = Rotation.from_rotvec(filters["rotation"].step(error, dt)).as_matrix() @ (
                rotation)
        last = series.times[i]
        out.tracked[i] = True
        out.identity[i], out.expression[i] = fit.identity, np.clip(expression, 0, 1)
        out.rotation[i], out.translation[i] = rotation, translation
    return out


def _empty_like(series: Series) -> Series:
    return replace(series, tracked=np.zeros_like(series.tracked), **{
        name: np.full_like(getattr(series, name), np.nan)
        for name in ("identity", "expression", "rotation", "translation")})


def _put(series: Series, i: int, values: FaceFit | FaceState) -> None:
    series.tracked[i] = True
    series.identity[i], series.expression[i] = values.identity, values.expression
    series.rotation[i], series.translation[i] = values.rotation, values.translation


def measure(clips: list[Clip], filtered: Callable[[Series], Series], model: FaceModel) -> dict:
    """Issue 5's numbers for one filter over CLIPS: still-face jitter (once settled) and extra
    motion (mm/frame of the narrow-face mesh), lags (frames), aligned shape and rotation error
    (median and p95 over frames), and how well blinks survive (eyeBlink's correlation with the
    truth on blinks_smile: a fast, small expression is what smoothing flattens first)."""
    scores = {clip.name: score_clip(clip.truth, filtered(clip.raw).predictions(), model)
              for clip in clips}

    def pooled(metric: str, names: tuple[str, ...], skip: int = 0) -> np.ndarray:
        values = np.concatenate([scores[n]["per_frame"][metric][skip:] for n in names
                                 if n in scores] or [np.empty(0)])
        return values[np.isfinite(values)]

    def quantiles(values: np.ndarray) -> tuple[float, float]:
        return (float(np.median(values)), float(np.percentile(values, 95))) if len(values) else (
            float("nan"), float("nan"))

    def per_clip(name: str, metric: str) -> float:
        return scores[name]["per_clip"][metric] if name in scores else float("nan")

    everything = tuple(scores)
    return {"jitter": quantiles(pooled("motion_mm", ("still",), SETTLE_FRAMES)),
            "extra_motion": quantiles(pooled("motion_mm", MOVING)),
            "lag_yaw_shake": per_clip("head_shake", "lag_yaw"),
            "lag_yaw_turns": per_clip("head_turns", "lag_yaw"),
            "lag_jaw": per_clip("talking", "lag_jawOpen"),
            "r_blink": per_clip("blinks_smile", "r_eyeBlink"),
            "aligned_mm": quantiles(pooled("posed_aligned_mm", everything)),
            "rotation_deg": quantiles(pooled("rotation_deg", everything))}


def tune_one_euro(clips: list[Clip], model: FaceModel, config: SmoothingConfig,
                  log: Callable[[str], None]) -> OneEuroParams:
    """Casiez et al.'s procedure, automated and carried to its end: min_cutoff lowered step by
    step (less jitter on the still face), each time with beta raised just enough that head_shake
    yaw and talking jawOpen lag at most TARGET_LAG frames (fast motion followed); the pair with
    the least still-face jitter wins."""
    still = [c for c in clips if c.name == "still"]
    moving = [c for c in clips if c.name in ("head_shake", "talking")]
    betas = iter(BETAS)  # a lower cutoff needs more beta: each search goes on from the last
    beta: float | None = next(betas)
    best, best_jitter = OneEuroParams(MIN_CUTOFFS[0], BETAS[-1]), float("inf")
    for cutoff in MIN_CUTOFFS:
        while beta is not None:
            params = OneEuroParams(cutoff, beta)
            m = measure(moving, partial(one_euro, params=params, config=config), model)
            if not max(m["lag_yaw_shake"], m["lag_jaw"]) > TARGET_LAG:  # NaN: cannot tell
                break
            beta = next(betas, None)
        if beta is None:
            log(f"  min_cutoff {cutoff:g} Hz: no beta up to {BETAS[-1]:g} follows fast motion")
            break
        jitter = measure(still, partial(one_euro, params=params, config=config),
                         model)["jitter"][0]
        log(f"  min_cutoff {cutoff:5.2f} Hz, beta {beta:g}: yaw lag {m['lag_yaw_shake']:.0f}, "
            f"jawOpen lag {m['lag_jaw']:.0f} frames; still jitter {jitter:.4f} mm/frame")
        if jitter < best_jitter:
            best, best_jitter = params, jitter
    return best


def pose_spread(series: Series, model_frames: slice) -> tuple[float, float]:
    """Standard deviation over MODEL_FRAMES of the head's rotation (degrees, the angle from
    the stretch's mean rotation) and translation (cm, the norm of the deviation)."""
    rotations = Rotation.from_matrix(series.rotation[model_frames])
    angles = (rotations * rotations.mean().inv()).magnitude()
    translations = series.translation[model_frames]
    deviations = np.linalg.norm(translations - translations.mean(axis=0), axis=1)
    return (float(np.degrees(np.sqrt(np.mean(angles ** 2)))),
            float(np.sqrt(np.mean(deviations ** 2))))


def still_stretch(series: Series) -> slice:
    """The STILL_STRETCH_S window whose MediaPipe face box (centre and size) moves least: a
    still stretch chosen without looking at either filter's output."""
    fps = 1.0 / np.median(np.diff(series.times))
    width = int(round(STILL_STRETCH_S * fps))
    boxes = series.bbox
    features = np.column_stack([boxes[:, :2] + boxes[:, 2:], boxes[:, 2:] - boxes[:, :2]])
    spread = [np.nanstd(features[i:i + width], axis=0).sum()
              if series.tracked[i:i + width].all() else np.inf
              for i in range(len(boxes) - width + 1)]
    start = int(np.argmin(spread))
    return slice(start, start + width)


def smoother_cost(clips: list[Clip], rounds: int = 3) -> tuple[float, float]:
    """Median and p95 (microseconds) of one ``Smoother.update`` of one face."""
    times = []
    for _ in range(rounds):
        for clip in clips:
            smoother = Smoother()
            for t, fit in zip(clip.raw.times, clip.raw.fits(), strict=True):
                started = time.perf_counter()
                smoother.update(t, [(0, TRACKING, fit)])
                times.append(time.perf_counter() - started)
    micro = np.array(times) * 1e6
    return float(np.median(micro)), float(np.percentile(micro, 95))


def online_matches_offline(clip: Clip, folder: Path) -> float:
    """Largest rotation entry difference between a smoothed ``facetrack run`` and this script's
    smoother on the same raw series: the benchmark measures what the command publishes."""
    record = folder / f"{clip.name}.smoothed.jsonl"
    facetrack("run", "--source", str(folder / f"{clip.name}.mp4"), "--record", str(record),
              "--quiet", "--camera", str(folder / f"{clip.name}.camera.json"))
    online, offline = read_series(record), kalman(clip.raw)
    return float(np.nanmax(np.abs(online.rotation - offline.rotation)))


def comparison_table(rows: dict[str, dict]) -> str:
    lines = ["| filter | still jitter mm/frame (median, p95) | extra motion mm/frame (median, "
             "p95) | yaw lag head_shake | yaw lag head_turns | jawOpen lag talking | r eyeBlink "
             "| posed aligned mm (median, p95) | rotation ° (median, p95) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in rows.items():
        lines.append(
            f"| {name} | {m['jitter'][0]:.4f}, {m['jitter'][1]:.4f} | "
            f"{m['extra_motion'][0]:.3f}, {m['extra_motion'][1]:.3f} | "
            f"{m['lag_yaw_shake']:.0f} | {m['lag_yaw_turns']:.0f} | {m['lag_jaw']:.0f} | "
            f"{m['r_blink']:.2f} | {m['aligned_mm'][0]:.2f}, {m['aligned_mm'][1]:.2f} | "
            f"{m['rotation_deg'][0]:.2f}, {m['rotation_deg'][1]:.2f} |")
    return "\n".join(lines)


def curve_table(title: str, rows: dict[str, dict]) -> str:
    lines = [f"| {title} | still jitter mm/frame (median, p95) | extra motion mm/frame (median) "
             "| yaw lag head_shake | jawOpen lag talking | r eyeBlink | rotation ° (median) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {name} | {m['jitter'][0]:.4f}, {m['jitter'][1]:.4f} | "
              f"{m['extra_motion'][0]:.3f} | {m['lag_yaw_shake']:.0f} | {m['lag_jaw']:.0f} | "
              f"{m['r_blink']:.2f} | {m['rotation_deg'][0]:.2f} |" for name, m in rows.items()]
    return "\n".join(lines)


def footage_table(folder: Path, params: OneEuroParams) -> str:
    config = SmoothingConfig()
    lines = ["| footage (still stretch) | frames | raw rotation ° / translation cm | One Euro | "
             "Kalman |", "|---|---|---:|---:|---:|"]
    for name in ("single_face.mp4", "WolfgangLanger_Pexels.mp4"):
        raw = raw_series(FOOTAGE / name, folder)
        stretch = still_stretch(raw)
        cells = [pose_spread(s, stretch) for s in (raw, one_euro(raw, params, config),
                                                   kalman(raw))]
        lines.append(f"| {name} | {stretch.start}-{stretch.stop - 1} | " + " | ".join(
            f"{r:.3f} / {t:.3f}" for r, t in cells) + " |")
    return "\n".join(lines)


def evaluate(folder: Path, frames: int, seed: int) -> dict:
    model = FaceModel.load()
    clips = ground_truth_clips(folder, CLIPS, frames, seed)
    config = SmoothingConfig()
    version = Manifest.load(DEFAULT_MODEL).model_version
    print(f"regressor {version}; clips {', '.join(CLIPS)}, {frames} frames, seed {seed}")
    print(f"smoothed `facetrack run` vs this script's smoother on still: max rotation entry "
          f"difference {online_matches_offline(clips[0], folder):.1e}\n")
    print("One Euro tuning (Casiez et al.):")
    params = tune_one_euro(clips, model, config, print)
    print(f"chosen: min_cutoff {params.min_cutoff:g} Hz, beta {params.beta:g} s per measurement "
          f"std, d_cutoff {params.d_cutoff:g} Hz\n")
    rows = {"raw regressor": measure(clips, lambda s: s, model),
            f"One Euro ({params.min_cutoff:g} Hz, β {params.beta:g})": measure(
                clips, partial(one_euro, params=params, config=config), model),
            "Kalman (ours, defaults)": measure(clips, kalman, model)}
    print(comparison_table(rows) + "\n")
    kalman_curve = {
        **{f"adapt_gain {gain:g}": measure(clips, partial(kalman, config=per_group(
            config, lambda noise, g=gain: replace(noise, adapt_gain=g))), model)
           for gain in ADAPT_GAINS},
        **{f"acceleration_std x{scale:g}": measure(clips, partial(kalman, config=per_group(
            config, lambda noise, k=scale: replace(
                noise, acceleration_std=k * noise.acceleration_std))), model)
           for scale in NOISE_SCALES},
        **{f"velocity_time_s {seconds:g}": measure(clips, partial(kalman, config=per_group(
            config, lambda noise, s=seconds: replace(noise, velocity_time_s=s))), model)
           for seconds in VELOCITY_TIMES}}
    print(curve_table("Kalman (one setting changed from the defaults)", kalman_curve) + "\n")
    euro_curve = {f"beta {beta:g}": measure(clips, partial(
        one_euro, params=replace(params, beta=beta), config=config), model) for beta in BETAS}
    print(curve_table(f"One Euro, min_cutoff {params.min_cutoff:g} Hz", euro_curve) + "\n")
    print(footage_table(folder, params) + "\n")
    median, p95 = smoother_cost(clips)
    print(f"smoother cost per face and frame: median {median:.0f} µs, p95 {p95:.0f} µs")
    return {"regressor": version, "one_euro": vars(params), "comparison": rows,
            "kalman_curve": kalman_curve, "one_euro_curve": euro_curve,
            "cost_us": [median, p95]}


def per_group(config: SmoothingConfig,
              change: Callable[[ChainNoise], ChainNoise]) -> SmoothingConfig:
    """CONFIG with CHANGE applied to the noise of expression, translation and rotation."""
    return replace(config, **{group: change(getattr(config, group)) for group in GROUPS})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=150, help="frames per clip (default 150)")
    p.add_argument("--seed", type=int, default=0, help="seed of the clips (default 0)")
    p.add_argument("--work", type=Path, metavar="DIR",
                   help="keep clips and records in DIR and reuse them (default: a temporary "
                        "folder)")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the numbers as JSON")
    args = p.parse_args(argv)
    try:
        if args.work:
            args.work.mkdir(parents=True, exist_ok=True)
            results = evaluate(args.work, args.frames, args.seed)
        else:
            with tempfile.TemporaryDirectory(prefix="facetrack-smoothing-") as work:
                results = evaluate(Path(work), args.frames, args.seed)
    except (FacetrackError, OSError) as error:
        print(f"smoothing: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
