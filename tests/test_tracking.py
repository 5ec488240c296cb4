"""Real MediaPipe on real footage: faces found, lost, re-found, and ids that stay put."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from streams.frame import Frame
from streams.sources import open_source
from tracker.landmarks import FaceMesh
from tracker.pipeline import FaceTracker
from tracker.tracks import COASTING, LOST, TRACKING


def track_file(path: Path, max_faces: int = 1) -> list[list]:
    with open_source(str(path)) as source, FaceTracker(max_faces) as tracker:
        return [tracker.process(frame) for frame in source]


def tracking(faces: list) -> list:
    return [f for f in faces if f.status == TRACKING]


def test_face_in_nearly_every_frame_of_wolfgang(footage_dir: Path) -> None:
    frames = track_file(footage_dir / "WolfgangLanger_Pexels.mp4")
    assert len(frames) == 472
    found = sum(bool(tracking(faces)) for faces in frames)
    assert found / len(frames) >= 0.98
    first = tracking(frames[0])[0].observation
    assert first.landmarks.shape == (478, 3)
    assert first.landmarks.dtype == np.float32
    # Landmarks are pixels of the 640×360 frame, inside the box they define.
    x0, y0, x1, y1 = first.bbox
    assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 360
    assert first.score is not None and 0.5 < first.score <= 1.0
    ids = {f.track for faces in frames for f in tracking(faces)}
    assert ids == {0}, "one face, one id, across short losses"


def test_face_lost_mid_clip(footage_dir: Path) -> None:
    frames = track_file(footage_dir / "face_noface.mov")
    statuses = [[f.status for f in faces] for faces in frames]
    seen = [TRACKING in s for s in statuses]
    assert seen[0] and not seen[-1]
    last_seen = max(i for i, s in enumerate(seen) if s)
    assert 0.3 < last_seen / len(frames) < 0.6  # the man is there for ~43% of the clip
    after = [s for s in statuses[last_seen + 1:] if s]
    assert after[0] == [COASTING] and [LOST] in after
    assert all(not s for s in statuses[statuses.index([LOST]) + 1:])


def test_face_found_mid_clip_then_lost(footage_dir: Path) -> None:
    frames = track_file(footage_dir / "noface_face.mov")
    seen = [bool(tracking(faces)) for faces in frames]
    first, last = seen.index(True), len(seen) - 1 - seen[::-1].index(True)
    assert first > 10, "the clip starts with a cartoon"
    assert sum(seen[first:last + 1]) / (last + 1 - first) > 0.9
    # The clip ends on a black frame: the face is gone there, its track coasting.
    assert [f.status for f in frames[-1]] == [COASTING]


def test_no_face_in_cartoon(footage_dir: Path) -> None:
    frames = track_file(footage_dir / "no_face.mp4")
    assert len(frames) >= 95
    assert not any(frames)


def test_a_face_back_after_a_gap_longer_than_the_coast_is_a_new_track(
        footage_dir: Path) -> None:
    """A stream that stalled for 2 s and came back: the face where it was is a new track,
    whose smoother and identity start afresh, and the old track is reported lost once."""
    with open_source(str(footage_dir / "single_face.mp4")) as source:
        frames = [frame for _, frame in zip(range(20), source, strict=False)]
    resumed = [replace(frame, index=frame.index + 10, time=frame.time + 2.0)
               for frame in frames[10:]]
    with FaceTracker(1) as tracker:
        statuses = [[(f.track, f.status) for f in tracker.process(frame)]
                    for frame in frames[:10] + resumed]
    assert statuses[:10] == [[(0, TRACKING)]] * 10
    assert statuses[10] == [(1, TRACKING), (0, LOST)]
    assert statuses[11:] == [[(1, TRACKING)]] * 9


def face_crop(image: np.ndarray, size: tuple[int, int] = (180, 210)) -> np.ndarray:
    """The face of a photo with a margin, resized: MediaPipe itself says where it is."""
    with FaceMesh(1, static_image_mode=True) as mesh:
        x0, y0, x1, y1 = mesh.process(image)[0].bbox
    mx, my = 0.35 * (x1 - x0), 0.35 * (y1 - y0)
    crop = image[max(int(y0 - my), 0):int(y1 + my), max(int(x0 - mx), 0):int(x1 + mx)]
    return cv2.resize(crop, size, interpolation=cv2.INTER_AREA)


def crossing_clip(footage_dir: Path, frames: int = 60) -> tuple[list[Frame], list[np.ndarray]]:
    """Two real faces sliding past each other in opposite directions; their true x centres."""
    single = cv2.cvtColor(cv2.imread(str(footage_dir / "single_face.jpg")), cv2.COLOR_BGR2RGB)
    faces = [face_crop(skimage.data.astronaut()), face_crop(single)]
    h, w = faces[0].shape[:2]
    clip, centres = [], []
    for i in range(frames):
        canvas = np.full((480, 640, 3), 90, np.uint8)
        a = int(20 + (640 - w - 40) * i / (frames - 1))
        b = 640 - w - a
        canvas[30:30 + h, a:a + w] = faces[0]
        canvas[250:250 + h, b:b + w] = faces[1]
        clip.append(Frame("crossing", i, i / 30, canvas))
        centres.append(np.array([a + w / 2, b + w / 2]))
    return clip, centres


def test_two_faces_keep_their_ids_while_crossing(footage_dir: Path) -> None:
    clip, centres = crossing_clip(footage_dir)
    owner: dict[int, int] = {}  # track id -> which face (0 top, moving right; 1 bottom)
    with FaceTracker(max_faces=2) as tracker:
        for frame, truth in zip(clip, centres, strict=True):
            seen = tracking(tracker.process(frame))
            assert len(seen) == 2, f"frame {frame.index}: {len(seen)} faces"
            for face in seen:
                x0, y0, x1, y1 = face.observation.bbox
                which = int((y0 + y1) / 2 > 240)
                assert abs((x0 + x1) / 2 - truth[which]) < 40
                assert owner.setdefault(face.track, which) == which, "a track changed faces"
    assert sorted(owner) == [0, 1]


@pytest.mark.parametrize("max_faces", [1, 2])
def test_max_faces_caps_the_count(footage_dir: Path, max_faces: int) -> None:
    clip = crossing_clip(footage_dir)[0][:5]
    with FaceTracker(max_faces=max_faces) as tracker:
        counts = [len(tracking(tracker.process(frame))) for frame in clip]
    assert counts == [max_faces] * 5
