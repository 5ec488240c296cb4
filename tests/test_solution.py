"""Facetrack from Python (`tracker.solution`), on real footage, against `facetrack run`."""

from __future__ import annotations

import re
from pathlib import Path

import av
import cv2
import numpy as np
import orjson
import pytest

from streams.recording import read_records
from tracker.solution import Facetrack

from cli_helpers import facetrack_ok


def as_recorded(faces: list[dict]) -> list[dict]:
    """FACES as a record line holds them: through JSON, as `facetrack run` writes them."""
    return orjson.loads(orjson.dumps(faces, option=orjson.OPT_SERIALIZE_NUMPY))


def test_a_video_tracked_from_python_is_what_the_command_records(footage_dir: Path,
                                                                 tmp_path: Path) -> None:
    video = footage_dir / "single_face.mp4"
    facetrack_ok("run", "--source", str(video), "--quiet", "--record-landmarks",
                 "--record", str(tmp_path / "faces.jsonl"))
    _, records = read_records(tmp_path / "faces.jsonl")
    with av.open(str(video)) as container, Facetrack(landmarks=True) as facetrack:
        start = container.streams.video[0].start_time or 0
        faces = [as_recorded(facetrack.process(frame.to_ndarray(format="rgb24"),
                                               float((frame.pts - start) * frame.time_base)))
                 for frame in container.decode(video=0)]
    assert len(faces) == len(records) == 72
    assert faces == [record["faces"] for record in records]
    assert faces[40][0]["status"] == "tracking" and len(faces[40][0]["landmarks"]) == 478


def test_photos_from_python(footage_dir: Path) -> None:
    """Each photo on its own: the group photo's five faces, left to right; then a portrait."""
    group = cv2.cvtColor(cv2.imread(str(footage_dir / "multi_face.jpg")), cv2.COLOR_BGR2RGB)
    portrait = cv2.cvtColor(cv2.imread(str(footage_dir / "single_face.jpg")), cv2.COLOR_BGR2RGB)
    with Facetrack(max_faces=20, stills=True) as facetrack:
        faces = facetrack.process(group)
        assert [face["track"] for face in faces] == [0, 1, 2, 3, 4]
        assert all(face["status"] == "tracking" for face in faces)
        lefts = [face["bbox"][0] for face in faces]
        assert lefts == sorted(lefts)
        assert all(0.0 <= value <= 1.0 for face in faces for value in face["expression"].values())
        assert [face["track"] for face in facetrack.process(portrait)] == [0]


@pytest.mark.parametrize(("image", "words"), [
    (np.zeros((48, 64), np.uint8), "uint8 (48, 64)"),
    (np.zeros((48, 64, 3), np.float32), "float32 (48, 64, 3)"),
    ([[0, 0, 0]], "list"),
])
def test_a_bad_image_is_named(image: object, words: str) -> None:
    with Facetrack(refine=0) as facetrack, pytest.raises(ValueError, match=re.escape(words)):
        facetrack.process(image)


def test_a_bad_image_or_time_leaves_the_tracker_working(footage_dir: Path) -> None:
    """An empty image (which breaks MediaPipe's graph for good), a time that is not a number
    (which poisons the smoother) or one that goes back are refused, each before it reaches the
    tracker: the next good frame is tracked as if they had not been given."""
    with av.open(str(footage_dir / "single_face.mp4")) as container:
        images = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)][:3]
    with Facetrack(refine=0) as facetrack:
        first = facetrack.process(images[0], 0.0)
        for image, seconds, words in [(np.zeros((0, 0, 3), np.uint8), 0.04, "uint8 (0, 0, 3)"),
                                      (images[1], float("nan"), "not nan"),
                                      (images[1], float("inf"), "not inf"),
                                      (images[1], -1.0, "-1 s after 0 s")]:
            with pytest.raises(ValueError, match=re.escape(words)):
                facetrack.process(image, seconds)
        after = [facetrack.process(image, seconds)
                 for image, seconds in zip(images[1:], (0.04, 0.08), strict=True)]
    with Facetrack(refine=0) as facetrack:
        clean = [facetrack.process(image, seconds)
                 for image, seconds in zip(images, (0.0, 0.04, 0.08), strict=True)]
    assert as_recorded([first, *after]) == as_recorded(clean)
    assert all(faces and faces[0]["status"] == "tracking" for faces in clean)


@pytest.mark.parametrize(("options", "words"), [
    ({"max_faces": 0}, "max_faces must be positive, got 0"),
    ({"max_faces": 2.5}, "max_faces must be int, got 2.5"),
    ({"focal": -800.0}, "focal must be positive, got -800.0"),
    ({"focal": float("nan")}, "focal must be positive, got nan"),
    ({"refine": 11}, "refine must be 0 to 10, got 11"),
    ({"predict_ms": -5.0}, "predict_ms must be 0 to 1000, got -5.0"),
])
def test_bad_options_are_named(options: dict, words: str) -> None:
    """The rules of `facetrack run`'s options, named as Python's: before, each was taken in
    silence (no face found with max_faces 0, depths from a negative focal, a state predicted
    into the past)."""
    with pytest.raises(ValueError, match=re.escape(words)):
        Facetrack(**options)


def test_a_closed_facetrack_says_so() -> None:
    """Closing twice (a `with` and a close of its own) is no error, and an image after it is
    refused by name, where MediaPipe's graph said '_graph is None in SolutionBase'."""
    with Facetrack(refine=0) as facetrack:
        assert facetrack.process(np.zeros((64, 64, 3), np.uint8), 0.0) == []
    facetrack.close()
    with pytest.raises(ValueError, match="this Facetrack is closed"):
        facetrack.process(np.zeros((64, 64, 3), np.uint8), 1.0)
