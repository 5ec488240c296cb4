"""The accuracy harness: the truth scores as perfect, known perturbations score as expected, and
the real command's records are read and scored."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from calibrate.profile import FaceProfile
from streams.errors import FacetrackError
from streams.recording import Recorder, read_records
from tracker.face_model import FaceModel
from tracker.pose import rotation
from tracker.scoring import (
    CHANNELS,
    Predictions,
    correlation,
    gain,
    lag_frames,
    overall,
    posed_error_mm,
    read_predictions,
    rotation_error_deg,
    score_clip,
    similarity_align,
)
from tracker.synth import ClipMaker, Truth

HARNESS = Path(__file__).resolve().parents[1] / "benchmarks" / "accuracy.py"
FRAMES, SEED = 24, 5


@pytest.fixture(scope="session")
def model(installed_model: Path) -> FaceModel:
    return FaceModel.load(installed_model)


@pytest.fixture(scope="session")
def truths(model: FaceModel) -> dict[str, Truth]:
    """The truth of the clips that move each scored channel (nothing rendered)."""
    maker = ClipMaker(model, FRAMES, SEED)
    return {name: maker.truth(name)[0] for name in
            ("talking", "head_turns", "blinks_smile", "brows", "still")}


@pytest.fixture(scope="session")
def harness_run(installed_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The harness run for real on one short clip, its files kept."""
    keep = tmp_path_factory.mktemp("accuracy")
    result = subprocess.run(
        [sys.executable, str(HARNESS), "--clips", "head_turns", "--frames", str(FRAMES),
         "--seed", str(SEED), "--model", str(installed_model), "--keep", str(keep),
         "--json", str(keep / "results.json")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (keep / "stdout.md").write_text(result.stdout)
    return keep


def perfect(truth: Truth) -> Predictions:
    """The truth itself, as a tracker would report it."""
    frames = len(truth)
    return Predictions(np.ones(frames, bool), truth.rotations, truth.translations,
                       np.tile(truth.identity, (frames, 1)), truth.expressions)


def test_truth_scores_as_perfect(truths: dict[str, Truth], model: FaceModel) -> None:
    scores = [score_clip(truth, perfect(truth), model) for truth in truths.values()]
    for summary in [s["summary"] for s in scores] + [overall(scores)]:
        assert summary["tracked"] == 1.0
        for key in ("posed_aligned_mm", "posed_camera_mm", "neutral_mm", "rotation_deg",
                    "translation_pct", "motion_mm"):
            assert summary[key] == pytest.approx(0, abs=1e-3), key
    by_clip = {name: s["summary"] for name, s in zip(truths, scores, strict=True)}
    assert by_clip["head_turns"]["lag_yaw"] == 0 and by_clip["talking"]["lag_jawOpen"] == 0
    for channel in CHANNELS:  # each moved by one of the clips, constant in "still"
        assert math.isnan(by_clip["still"][f"r_{channel}"])
        for key in ("r", "gain"):
            defined = [s[f"{key}_{channel}"] for s in by_clip.values()
                       if not math.isnan(s[f"{key}_{channel}"])]
            assert defined and np.allclose(defined, 1), (key, channel)


def test_known_perturbations(truths: dict[str, Truth], model: FaceModel) -> None:
    truth = truths["talking"]
    exact = perfect(truth)
    turned = replace(exact, rotations=rotation(0, 0, 5) @ np.diag([1, -1, -1]) @ truth.rotations,
                     translations=truth.translations * 1.1)
    summary = score_clip(truth, turned, model)["summary"]
    assert summary["rotation_deg"] == pytest.approx(5, abs=1e-6)
    assert summary["translation_pct"] == pytest.approx(10, abs=1e-6)
    assert summary["posed_aligned_mm"] == pytest.approx(0, abs=1e-3)  # a similarity away
    assert summary["posed_camera_mm"] > 1
    wider = score_clip(truth, replace(exact, identities=exact.identities * 1.5), model)
    assert wider["summary"]["neutral_mm"] > 0.1 and wider["summary"]["posed_aligned_mm"] > 0.1
    late = np.concatenate([np.repeat(truth.expressions[:1], 3, axis=0), truth.expressions[:-3]])
    delayed = score_clip(truth, replace(exact, expressions=late), model)["summary"]
    assert delayed["lag_jawOpen"] == 3 and delayed["r_jawOpen"] < 0.99
    assert delayed["motion_mm"] > 0.05
    # read at 60% of their size: followed as closely, but the gain says how much smaller
    smaller = score_clip(truth, replace(exact, expressions=0.6 * truth.expressions),
                         model)["summary"]
    assert smaller["r_jawOpen"] == pytest.approx(1)
    assert smaller["gain_jawOpen"] == pytest.approx(0.6)


def test_metric_functions() -> None:
    rng = np.random.default_rng(0)
    points = rng.normal(size=(50, 3))
    moved = 2.5 * points @ rotation(30, -10, 5).T + [1.0, 2.0, 3.0]
    assert np.allclose(similarity_align(points, moved), moved)
    assert posed_error_mm(points, moved, align=True) == pytest.approx(0, abs=1e-9)
    assert posed_error_mm(points, points + [0.1, 0, 0]) == pytest.approx(1.0)  # 1 mm
    assert rotation_error_deg(rotation(40, 10, 0), rotation(40, 10, 0)) == 0
    assert rotation_error_deg(rotation(0, 0, 179), rotation(0, 0, -179)) == pytest.approx(2)
    signal = np.sin(np.linspace(0, 6, 60))
    assert lag_frames(signal, np.concatenate([np.zeros(4), signal[:-4]])) == 4
    assert math.isnan(lag_frames(signal, np.zeros(60)))
    assert math.isnan(correlation(np.zeros(60), signal))  # nothing to follow
    assert correlation(signal, np.zeros(60)) == 0  # follows nothing
    assert correlation(signal, np.where(signal > 0, np.nan, signal)) == pytest.approx(1)
    assert gain(signal, 0.5 * signal + 0.2) == pytest.approx(0.5)
    assert math.isnan(gain(np.zeros(60), signal))


def test_records_with_coefficients_are_read(truths: dict[str, Truth], model: FaceModel,
                                            tmp_path: Path) -> None:
    truth = truths["head_turns"]
    path = tmp_path / "record.jsonl"
    names = truth.expression_names
    with Recorder(path) as recorder:
        recorder.write({"type": "header", "intrinsics": None})
        for i in range(len(truth)):
            face = {"track": 0, "status": "tracking", "rotation": truth.rotations[i],
                    "translation": truth.translations[i], "identity": truth.identity,
                    "expression": dict(zip(names, truth.expressions[i].tolist(), strict=True))}
            recorder.write({"frame": i, "faces": [face] if i % 4 else []})
    predictions = read_predictions(path, truth)
    summary = score_clip(truth, predictions, model)["summary"]
    assert summary["tracked"] == pytest.approx(0.75)
    assert summary["rotation_deg"] == pytest.approx(0, abs=1e-4)
    assert summary["posed_camera_mm"] == pytest.approx(0, abs=1e-2)
    with Recorder(path) as recorder:
        recorder.write({"type": "header"})
        recorder.write({"frame": len(truth), "faces": []})
    with pytest.raises(FacetrackError, match=f"frame {len(truth)} is not one of the clip's"):
        read_predictions(path, truth)
    with Recorder(path) as recorder:
        recorder.write({"type": "header"})
        recorder.write({"frame": 0, "faces": [{"track": 0, "status": "tracking"}]})
    with pytest.raises(FacetrackError, match="carry no coefficients"):
        read_predictions(path, truth)


def test_harness_on_a_real_run(harness_run: Path, model: FaceModel) -> None:
    stdout = (harness_run / "stdout.md").read_text()
    assert "| head_turns |" in stdout and "| all |" in stdout
    results = json.loads((harness_run / "results.json").read_text())
    assert results["clips"] == ["head_turns"]
    row = results["tracker"]["head_turns"]
    assert row["tracked"] > 0.9
    assert 0 < row["rotation_deg"] < 15 and row["translation_pct"] < 20
    assert results["baseline"]["head_turns"]["rotation_deg"] == 0
    header = json.loads((harness_run / "head_turns.jsonl").read_text().splitlines()[0])
    assert header["intrinsics"]["assumed"] is False  # the truth's camera was passed to the run


def test_harness_scores_a_face_profile_on_the_persons_other_clips(installed_model: Path,
                                                                  tmp_path: Path) -> None:
    """--one-person --profile-from still: the profile made from the still clip, the other clip
    scored with and without it."""
    result = subprocess.run(
        [sys.executable, str(HARNESS), "--clips", "still,resting", "--frames", "66", "--seed",
         str(SEED), "--one-person", "--profile-from", "still", "--model", str(installed_model),
         "--keep", str(tmp_path), "--json", str(tmp_path / "results.json")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "## tracker with the face profile of clip still" in result.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["clips"] == ["resting"] and results["profile_from"] == "still"
    profile = FaceProfile.load(tmp_path / "still.profile.json")
    header, records = read_records(tmp_path / "resting.profiled.jsonl")
    assert header["profile"]["file"] == "still.profile.json"
    assert np.allclose(records[0]["faces"][0]["identity"], profile.identity, atol=1e-4)
    # One person: the profile's identity is nearer the resting clip's than the mean face is.
    assert results["profiled"]["resting"]["neutral_mm"] < results["baseline"]["resting"][
        "neutral_mm"]


def test_bad_inputs_are_one_line_errors(harness_run: Path, tmp_path: Path) -> None:
    for args, error in (
            (["--clips-dir", str(tmp_path)], f"no clips (NAME.mp4 with NAME.json) in {tmp_path}"),
            (["--clips-dir", str(harness_run), "--profile-from", "still"],
             "--profile-from still: no such clip among head_turns")):
        result = subprocess.run([sys.executable, str(HARNESS), *args], capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [f"accuracy: error: {error}"]
