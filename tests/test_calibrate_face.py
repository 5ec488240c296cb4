"""Face profiles end to end: `facetrack calibrate face` on synthetic clips of known identity and
resting expression, then `facetrack run --profile` on the same clip, scored against the truth."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from calibrate.face import MAX_ANGLE, ROUTINE, STILL_PROMPT, Samples, Script, make_profile
from calibrate.intrinsics import load_camera
from calibrate.profile import FaceProfile
from streams.errors import FacetrackError
from streams.recording import read_records
from streams.sources import open_source
from tracker.expressions import ICT_EXPRESSION_NAMES
from tracker.face_model import FaceModel
from tracker.pipeline import FaceTracker
from tracker.pose import rotation
from tracker.refine import Refiner
from tracker.regressor import DEFAULT_MODEL, FaceFit, Manifest, Regressor
from tracker.scoring import REGION, posed_error_mm
from tracker.synth import RESTING, load_truth, write_camera_file

from cli_helpers import assert_one_line_error, facetrack, synth

FRAMES, SEED, SECONDS = 90, 5, "2"  # 3 s clips; the still stretch is 2 s of them
RESTING_NAMES = list(RESTING)
REGRESSOR_VERSION = Manifest.load(DEFAULT_MODEL).model_version


@pytest.fixture(scope="module")
def clips(installed_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """still and resting clips, each with a camera file of its true intrinsics."""
    outdir = synth(tmp_path_factory.mktemp("face_clips"), "still,resting", FRAMES, SEED,
                   installed_model)
    for name in ("still", "resting"):
        write_camera_file(load_truth(outdir / f"{name}.json"), outdir / f"{name}_camera.json")
    return outdir


def calibrated(clips: Path, name: str) -> Path:
    """The profile `facetrack calibrate face` makes of clip NAME (made once per module)."""
    out = clips / f"{name}_profile.json"
    if not out.exists():
        result = facetrack("calibrate", "face", "--source", str(clips / f"{name}.mp4"),
                           "--seconds", SECONDS, "--camera", str(clips / f"{name}_camera.json"),
                           "--out", str(out))
        assert result.returncode == 0, result.stderr
        assert f"-> {out}" in result.stdout
    return out


def tracked(clips: Path, name: str, label: str, *options: str) -> tuple[dict, list[dict]]:
    """Header and first face of every frame of `facetrack run` on clip NAME."""
    record = clips / f"{name}_{label}.jsonl"
    result = facetrack("run", "--source", str(clips / f"{name}.mp4"), "--camera",
                       str(clips / f"{name}_camera.json"), "--record", str(record), "--quiet",
                       *options)
    assert result.returncode == 0, result.stderr
    header, records = read_records(record)
    return header, [r["faces"][0] for r in records if r["faces"]]


def neutral_mm(model: FaceModel, identities: np.ndarray, true_identity: np.ndarray) -> np.ndarray:
    """tracker.scoring.neutral_error_mm's measure, per identity (..., 100): the neutral shape's
    mean vertex error after a similarity alignment."""
    true = model.vertices(true_identity, region=REGION).astype(np.float64)
    predicted = model.vertices(identities, region=REGION).astype(np.float64)
    return posed_error_mm(predicted, np.broadcast_to(true, predicted.shape), align=True)


def test_profile_file(clips: Path) -> None:
    data = json.loads(calibrated(clips, "still").read_text())
    assert (data["format"], data["version"]) == ("facetrack-face-profile", 1)
    assert len(data["identity"]) == 100
    assert list(data["rest"]) == list(ICT_EXPRESSION_NAMES) and data["range"] is None
    assert data["frames"]["used"] == 60 and data["frames"]["read"] == FRAMES
    assert data["regressor"] == REGRESSOR_VERSION
    assert data["source"].endswith("still.mp4") and data["created"]
    FaceProfile.load(calibrated(clips, "still"))


def test_routine_records_ranges(clips: Path, tmp_path: Path) -> None:
    out = tmp_path / "routine.json"
    result = facetrack("calibrate", "face", "--source", str(clips / "resting.mp4"), "--seconds",
                       SECONDS, "--routine", "--out", str(out))
    assert result.returncode == 0, result.stderr
    profile = FaceProfile.load(out)
    assert profile.info["frames"]["routine"] == FRAMES
    # A file of one resting face: every 95th percentile sits at or just above the mean.
    assert (profile.range >= profile.rest - 0.01).all()
    assert list(json.loads(out.read_text())["range"]) == list(ICT_EXPRESSION_NAMES)


def test_profile_identity_is_not_worse_than_per_frame(clips: Path, installed_model: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    """Averaged over the still stretch, the identity is as close to the truth as what the run
    reports without a profile (the regressor's readings pooled over the track so far), within
    1% (the issue's target, 30% closer, needs per-frame errors that average out; see the report
    in docs/face-profile.md)."""
    model = FaceModel.load(installed_model)
    truth = load_truth(clips / "still.json")
    profile = FaceProfile.load(calibrated(clips, "still"))
    _, faces = tracked(clips, "still", "raw", "--no-smooth")
    per_frame = neutral_mm(model, np.array([f["identity"] for f in faces]), truth.identity)
    with_profile = float(neutral_mm(model, profile.identity, truth.identity))
    with capsys.disabled():
        print(f"\nneutral error: per frame {per_frame.mean():.3f} mm (mean of {len(faces)} "
              f"frames), profile {with_profile:.3f} mm")
    assert with_profile <= per_frame.mean() * 1.01


def test_run_with_profile_reads_the_resting_face_as_zero(clips: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    path = calibrated(clips, "resting")
    profile = FaceProfile.load(path)
    header, faces = tracked(clips, "resting", "profile", "--profile", str(path))
    _, plain_faces = tracked(clips, "resting", "plain")
    assert len(faces) == len(plain_faces) == FRAMES
    assert header["profile"]["file"] == path.name
    assert header["profile"]["frames"] == 60
    assert header["profile"]["created"] == profile.info["created"]
    assert np.allclose([f["identity"] for f in faces], profile.identity, atol=1e-4)
    corrected = np.array([[f["expression"][n] for n in RESTING_NAMES] for f in faces])
    plain = np.array([[f["expression"][n] for n in RESTING_NAMES] for f in plain_faces])
    with capsys.disabled():
        print(f"\nresting {RESTING}: mean without profile "
              f"{dict(zip(RESTING_NAMES, plain.mean(0).round(3), strict=True))}, with "
              f"{dict(zip(RESTING_NAMES, np.abs(corrected).mean(0).round(3), strict=True))}")
    assert (np.abs(corrected).mean(axis=0) < 0.1).all()


def test_profile_removes_the_resting_smile_the_regressor_sees(clips: Path) -> None:
    """What the profile is for: the resting smile reads above zero without it, at zero with
    it. (This regressor underreads a resting smile of 0.3 as about 0.05, and resting brows of
    0.2 as about 0: see the closing numbers of issue 7.)"""
    path = calibrated(clips, "resting")
    smile = [n for n in RESTING_NAMES if n.startswith("mouthSmile")]
    _, plain = tracked(clips, "resting", "plain")
    _, profiled = tracked(clips, "resting", "profile", "--profile", str(path))
    without = np.array([[f["expression"][n] for n in smile] for f in plain]).mean()
    with_profile = np.array([[f["expression"][n] for n in smile] for f in profiled]).mean()
    assert without > 0.02
    assert with_profile < 0.25 * without


def test_with_a_profile_the_refinement_fits_the_persons_face(clips: Path,
                                                             installed_model: Path) -> None:
    """The refinement poses the profile's face on the landmarks (not the identity the regressor
    guessed in the frame), then the profile rescales the expression: the still clip's profile
    on the resting clip, another person, so that the two identities differ plainly."""
    profile = FaceProfile.load(calibrated(clips, "still"))
    regressor, refiner = Regressor(), Refiner.load(FaceModel.load(installed_model))
    camera = load_camera(clips / "resting_camera.json")
    with open_source(str(clips / "resting.mp4")) as source, FaceTracker(
            camera=camera, regressor=regressor, refiner=refiner, profile=profile) as tracker:
        for frame in list(source)[:5]:
            [face] = tracker.fit(tracker.track(frame), *frame.size)
            landmarks = face.observation.landmarks
            guessed = regressor.fit(landmarks[None], face.observation.shading[None],
                                    camera).face(0)
            expected = profile.apply(refiner.refine(
                replace(guessed, identity=profile.identity), landmarks, camera))
            unprofiled = refiner.refine(guessed, landmarks, camera)
            assert np.allclose(face.fit.translation, expected.translation, atol=1e-4)
            assert np.allclose(face.fit.rotation, expected.rotation, atol=1e-5)
            assert np.allclose(face.fit.expression, expected.expression, atol=1e-5)
            assert np.abs(face.fit.translation - unprofiled.translation).max() > 1e-3


def test_a_profile_from_photos_of_the_resting_face(clips: Path, installed_model: Path,
                                                   tmp_path: Path) -> None:
    """Three photos taken from the resting clip make about the profile its video makes: photos
    have no clock, so no still stretch of --seconds is looked for; each frontal photo counts.
    Measured: neutral error 1.48 mm against the video's 1.53; the resting expression within
    0.084 of the video's (MediaPipe's landmarks on a photo, found afresh, differ a little
    from those it tracks)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    with av.open(str(clips / "resting.mp4")) as video:
        for index, frame in enumerate(video.decode(video=0)):
            if index in (15, 45, 75):
                cv2.imwrite(str(photos / f"{index}.png"), frame.to_ndarray(format="bgr24"))
    out = tmp_path / "photos.json"
    result = facetrack("calibrate", "face", "--source", str(photos), "--camera",
                       str(clips / "resting_camera.json"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "from 3 photos" in result.stdout
    from_photos, from_video = FaceProfile.load(out), FaceProfile.load(calibrated(clips, "resting"))
    assert from_photos.info["frames"]["used"] == 3
    assert np.abs(from_photos.rest - from_video.rest).max() < 0.1
    model, truth = FaceModel.load(installed_model), load_truth(clips / "resting.json")
    assert (neutral_mm(model, from_photos.identity, truth.identity)
            <= 1.05 * neutral_mm(model, from_video.identity, truth.identity))
    result = facetrack("calibrate", "face", "--source", str(photos), "--routine",
                       "--out", str(tmp_path / "routine.json"))
    assert_one_line_error(result, "--routine", "photos")


def test_too_short_a_source_is_a_one_line_error(clips: Path, tmp_path: Path) -> None:
    out = tmp_path / "me.json"
    result = facetrack("calibrate", "face", "--source", str(clips / "still.mp4"), "--seconds",
                       "5", "--out", str(out))
    assert_one_line_error(result, "need 5 s", "found 3.0 s", "still.mp4", "--seconds")
    assert not out.exists()


@pytest.mark.parametrize(("source", "words"), [
    ("no_face.mp4", ["found 0.0 s", "a face in 0 of", "need 3 s"]),
    ("no_face.png", ["no frontal face", "a face in 0 of 1 photos"]),
])
def test_no_face_is_a_one_line_error(footage_dir: Path, tmp_path: Path, source: str,
                                     words: list[str]) -> None:
    path = footage_dir / source
    if not path.exists():  # a photo of the cartoon
        path = tmp_path / source
        with av.open(str(footage_dir / "no_face.mp4")) as video:
            cv2.imwrite(str(path), next(video.decode(video=0)).to_ndarray(format="bgr24"))
    out = tmp_path / "me.json"
    result = facetrack("calibrate", "face", "--source", str(path), "--out", str(out))
    assert_one_line_error(result, *words)
    assert not out.exists()


def good_profile() -> dict:
    zeros = dict.fromkeys(ICT_EXPRESSION_NAMES, 0.0)
    return {"format": "facetrack-face-profile", "version": 1, "identity": [0.0] * 100,
            "rest": zeros, "range": None, "created": "2026-01-01T00:00:00+00:00"}


BAD_PROFILES = {
    "not JSON": ("{", "not JSON"),
    "a camera file": ({"format": "facetrack-camera", "version": 1}, "is not a face profile"),
    "version 2": ({**good_profile(), "version": 2}, "version 2"),
    "no rest": ({k: v for k, v in good_profile().items() if k != "rest"}, "no rest"),
    "short identity": ({**good_profile(), "identity": [0.0] * 99}, "shape [99]"),
    "text identity": ({**good_profile(), "identity": ["a"] * 100}, "not a valid"),
    "missing name": ({**good_profile(), "rest": {"jawOpen": 0.1}}, "lacks 52"),
    "range above 1": ({**good_profile(), "range": dict.fromkeys(ICT_EXPRESSION_NAMES, 2.0)},
                      "range has values outside [0, 1]"),
    "NaN": ({**good_profile(), "identity": [float("nan")] * 100}, "not finite"),
}


@pytest.mark.parametrize("case", BAD_PROFILES)
def test_bad_profiles_are_one_line_errors(case: str, tmp_path: Path) -> None:
    content, words = BAD_PROFILES[case]
    path = tmp_path / "bad.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(FacetrackError) as error:
        FaceProfile.load(path)
    assert str(path) in str(error.value) and words in str(error.value)
    assert "\n" not in str(error.value)


def test_run_refuses_a_bad_profile(clips: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**good_profile(), "identity": [0.0] * 99}))
    result = facetrack("run", "--source", str(clips / "still.mp4"), "--profile", str(path))
    assert_one_line_error(result, str(path), "shape [99]")
    missing = facetrack("run", "--source", str(clips / "still.mp4"), "--profile",
                        str(tmp_path / "none.json"))
    assert_one_line_error(missing, "cannot read face profile")


def test_apply_maps_rest_to_zero_and_range_to_one() -> None:
    rest = np.full(53, 0.2, np.float32)
    maxima = np.full(53, 0.7, np.float32)
    maxima[0] = 0.25  # not really shown: keeps the default range
    profile = FaceProfile(np.ones(100, np.float32), rest, maxima, {})
    fit = FaceFit(np.zeros(100, np.float32), np.full(53, 0.45, np.float32), np.eye(3),
                  np.zeros(3))
    applied = profile.apply(fit)
    assert (applied.identity == 1).all() and applied.rotation is fit.rotation
    assert applied.expression[1:] == pytest.approx(0.5)
    assert applied.expression[0] == pytest.approx(0.25 / 0.8)  # (e - rest) / (1 - rest)
    assert profile.apply(FaceFit(fit.identity, rest, fit.rotation, fit.translation)).expression \
        == pytest.approx(0.0)
    assert profile.apply(FaceFit(fit.identity, np.ones(53, np.float32), fit.rotation,
                                 fit.translation)).expression == pytest.approx(1.0)
    no_range = FaceProfile(profile.identity, rest, None, {})
    assert no_range.span == pytest.approx(0.8)


def samples(expression: np.ndarray, yaw: np.ndarray) -> Samples:
    count = len(expression)
    rotations = np.array([rotation(y) for y in yaw])
    identity = np.arange(count)[:, None] * np.ones((count, 100))
    return Samples(np.arange(count), np.arange(count) / 30.0, identity, expression, rotations,
                   count)


def test_make_profile_picks_the_stillest_frontal_stretch() -> None:
    """Frames 0-29 turned away, 30-89 still (a few jittery), then a routine: rest and identity
    come from the stillest 30 frames, ranges from everything."""
    rng = np.random.default_rng(0)
    expression = np.full((150, 53), 0.1) + rng.normal(0, 0.002, (150, 53))
    expression[40:50] += rng.normal(0, 0.02, (10, 53))  # still enough, but not the stillest
    expression[90:, 45] = np.linspace(0.1, 0.9, 60)  # a smile
    yaw = np.where(np.arange(150) < 30, 2 * MAX_ANGLE, 0.0)
    profile = make_profile(samples(expression, yaw), 1.0, True, "clip.mp4", "test")
    frames = profile.info["frames"]
    assert (frames["used"], frames["routine"]) == (30, 150)
    assert frames["first"] >= 50 and frames["last"] <= 89
    assert profile.identity == pytest.approx(np.full(100, (frames["first"] + frames["last"]) / 2))
    assert profile.rest == pytest.approx(np.full(53, 0.1), abs=0.01)
    assert profile.range[45] == pytest.approx(np.percentile(expression[:, 45], 95))
    with pytest.raises(FacetrackError, match=r"found 2\.0 s of still, frontal face"):
        make_profile(samples(expression[:90], yaw[:90]), 2.5, False, "clip.mp4", "test")


def test_script_prompts_still_then_the_routine() -> None:
    script = Script(3.0, routine=True)
    assert script.prompt(0.0) == script.prompt(4.9) == STILL_PROMPT
    assert script.prompt(5.1) == ROUTINE[0][0]
    assert script.prompt(5.0 + sum(d for _, d in ROUTINE) + 0.1) is None
    assert Script(3.0, routine=False).prompt(5.1) is None
