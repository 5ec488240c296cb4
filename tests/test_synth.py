"""Synthetic clips: made through the real command, then checked against their own ground truth
and against MediaPipe."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import av
import numpy as np
import pytest

from streams.errors import FacetrackError
from tracker.expressions import ICT_EXPRESSION_NAMES
from tracker.face_model import FaceModel, posed
from tracker.landmarks import FaceMesh
from tracker.pose import angles
from tracker.render import project
from tracker.synth import CLIP_NAMES, ClipMaker, clip_names, load_truth, scripted

from cli_helpers import FACETRACK, facetrack, synth

FRAMES, SEED = 24, 3
# Outer eye corners, nose tip and mouth corners: MediaPipe's indices and the 68 landmarks'.
MEDIAPIPE_POINTS, LANDMARK68_POINTS = [33, 263, 1, 61, 291], [36, 45, 30, 48, 54]




@pytest.fixture(scope="module")
def model(installed_model: Path) -> FaceModel:
    return FaceModel.load(installed_model)


@pytest.fixture(scope="module")
def clips(installed_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth(tmp_path_factory.mktemp("clips"), "all", FRAMES, SEED, installed_model)


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def test_videos_decode(clips: Path) -> None:
    for name in CLIP_NAMES:
        with av.open(str(clips / f"{name}.mp4")) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264"
            assert float(stream.average_rate) == pytest.approx(30, rel=1e-3)
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        assert len(frames) == FRAMES, name
        assert frames[0].shape == (480, 640, 3)


def test_truth_round_trips(clips: Path) -> None:
    for name in CLIP_NAMES:
        path = clips / f"{name}.json"
        truth = load_truth(path)
        assert json.loads(json.dumps(truth.to_dict())) == json.loads(path.read_text())
        assert (truth.clip, truth.seed, truth.fps, len(truth)) == (name, SEED, 30.0, FRAMES)
        assert truth.expression_names == ICT_EXPRESSION_NAMES
        assert truth.identity.shape == (100,) and truth.expressions.shape == (FRAMES, 53)
        assert (truth.expressions >= 0).all() and (truth.expressions <= 1).all()
        rotations = truth.rotations
        assert np.allclose(rotations @ rotations.transpose(0, 2, 1), np.eye(3), atol=1e-5)
        assert (truth.translations[:, 2] > 20).all()
        camera = truth.intrinsics
        assert (camera.width, camera.height, camera.cx, camera.cy) == (640, 480, 320, 240)


def test_still_is_still_and_head_turns_turn(clips: Path) -> None:
    still = load_truth(clips / "still.json")
    for values in (still.expressions, still.rotations, still.translations):
        assert (values == values[0]).all()
    yaw, pitch, roll = angles(load_truth(clips / "head_turns.json").rotations).T
    assert yaw.max() > 40 and yaw.min() < -40
    assert pitch.max() > 15 and pitch.min() < -15
    assert roll.max() > 15 and roll.min() < -15


@pytest.mark.parametrize("name", CLIP_NAMES)
def test_mediapipe_finds_the_face_where_the_truth_puts_it(clips: Path, model: FaceModel,
                                                         name: str) -> None:
    truth = load_truth(clips / f"{name}.json")
    found, errors = 0, []
    with FaceMesh() as mesh:
        for i, image in enumerate(decoded(clips / f"{name}.mp4")):
            faces = mesh.process(image)
            if len(faces) != 1:
                continue
            found += 1
            landmarks = model.vertices(truth.identity, truth.expressions[i], region="landmarks68")
            camera = posed(landmarks, truth.rotations[i], truth.translations[i])
            expected = project(camera, truth.intrinsics)[LANDMARK68_POINTS]
            seen = faces[0].landmarks[MEDIAPIPE_POINTS, :2]
            eyes = np.linalg.norm(expected[0] - expected[1])
            errors.append(np.linalg.norm(seen - expected, axis=1) / eyes)
    assert found >= 0.95 * len(truth)
    # Eye and mouth corners within a few percent of the eye distance; the nose tip is marked
    # differently by the two landmark sets, so only roughly.
    assert (np.median(errors, axis=0) < [0.08, 0.08, 0.2, 0.08, 0.08]).all()
    assert (np.max(errors, axis=0) < [0.2, 0.2, 0.3, 0.2, 0.2]).all()


def test_same_seed_same_clip(clips: Path, model: FaceModel, tmp_path: Path) -> None:
    # Made alone, in this process, it matches the one the command made among all the others.
    video, truth = ClipMaker(model, FRAMES, SEED).make("head_shake", tmp_path)
    assert truth.read_bytes() == (clips / "head_shake.json").read_bytes()
    for ours, theirs in zip(decoded(video), decoded(clips / "head_shake.mp4"), strict=True):
        assert np.array_equal(ours, theirs)
    other, _ = ClipMaker(model, FRAMES, SEED + 1).truth("head_shake")
    assert not np.allclose(other.identity, load_truth(truth).identity)


def test_one_person_clips_share_the_face(clips: Path, installed_model: Path,
                                        tmp_path: Path) -> None:
    """--one-person: every clip shows the same face, and is otherwise the clip it would be."""
    synth(tmp_path, "still,talking", FRAMES, SEED, installed_model, "--one-person")
    still, talking = (load_truth(tmp_path / f"{name}.json") for name in ("still", "talking"))
    plain = load_truth(clips / "talking.json")
    assert np.array_equal(still.identity, talking.identity)
    assert not np.allclose(plain.identity, talking.identity)
    assert plain.intrinsics == talking.intrinsics
    assert np.array_equal(plain.rotations, talking.rotations)
    assert np.array_equal(plain.translations, talking.translations)


def test_scripts() -> None:
    expressions, motion = scripted("asymmetric", 200)
    left, right = (ICT_EXPRESSION_NAMES.index(n) for n in ("eyeBlink_L", "eyeBlink_R"))
    assert ((expressions[:, left] > 0.9) & (expressions[:, right] < 0.1)).any()
    assert ((expressions[:, right] > 0.9) & (expressions[:, left] < 0.1)).any()
    _, shake = scripted("head_shake", 60)
    assert np.abs(np.diff(shake[:, 0])).max() > 8  # degrees per frame: fast
    _, distance = scripted("distance", 100)
    assert distance[:, 3].max() > 1.5 and distance[:, 3].min() < 0.6
    assert clip_names("talking, all") == ["talking", *(n for n in CLIP_NAMES if n != "talking")]


def test_an_interrupted_clip_leaves_no_video_beside_old_truth(installed_model: Path,
                                                               tmp_path: Path) -> None:
    """Stopped while it renders `talking` over an earlier run's clips: `still` is whole and
    new, and no `talking` video stands beside the earlier run's truth, which would score
    against the wrong face."""
    synth(tmp_path, "still,talking", 3, SEED, installed_model)
    process = subprocess.Popen(
        [FACETRACK, "synth", str(tmp_path), "--clips", "still,talking", "--frames", "600",
         "--seed", str(SEED + 1), "--model", str(installed_model)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().startswith("still: ")  # the first clip is done
    time.sleep(2)  # into the second
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert stderr.strip().splitlines() == [
        "facetrack: interrupted in talking, which is not written; 1 clip was made before it"]
    assert len(load_truth(tmp_path / "still.json")) == 600
    assert not (tmp_path / "talking.json").exists() and not (tmp_path / "talking.mp4").exists()


def test_bad_arguments_are_one_line_errors(installed_model: Path, tmp_path: Path) -> None:
    result = facetrack("synth", str(tmp_path), "--clips", "still,dancing")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "facetrack: error: unknown clip 'dancing'; known: " + ", ".join(CLIP_NAMES) + ", all"]
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = facetrack("synth", str(blocker / "clips"), "--clips", "still",
                       "--model", str(installed_model))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"facetrack: error: cannot write to {blocker / 'clips'}: Not a directory"]
    with pytest.raises(FacetrackError, match="not a ground-truth file"):
        load_truth(blocker)
