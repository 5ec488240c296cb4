"""`FaceTracker.stream`: the pipeline on two threads gives what `process` gives frame by frame,
works one frame ahead at most, hands on the frames before a source's error and then the error,
and stops its thread when left early. Real footage, real MediaPipe, the committed regressor."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from streams.errors import FacetrackError
from streams.frame import Frame
from streams.sources import open_source
from tracker.face_model import FaceModel
from tracker.pipeline import FaceTracker
from tracker.refine import Refiner
from tracker.regressor import Regressor
from tracker.smoothing import Smoother


def full_tracker(model_path: Path) -> FaceTracker:
    """Everything `facetrack run` does per frame: regressor, refinement and smoother."""
    return FaceTracker(1, regressor=Regressor(engine="onnxruntime"),
                       refiner=Refiner.load(FaceModel.load(model_path)), smoother=Smoother())


def frames_of(path: Path) -> list[Frame]:
    with open_source(str(path)) as source:
        return list(source)


def finder_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "facetrack-landmarks"]


def test_stream_gives_what_process_gives(footage_dir: Path, installed_model: Path) -> None:
    frames = frames_of(footage_dir / "single_face.mp4")
    with full_tracker(installed_model) as tracker:
        one_by_one = [tracker.process(frame) for frame in frames]
    with full_tracker(installed_model) as tracker:
        streamed = list(tracker.stream(frames))
    assert [p.frame.index for p in streamed] == [f.index for f in frames]
    assert sum(bool(faces) for faces in one_by_one) == len(frames)
    for faces, processed in zip(one_by_one, streamed, strict=True):
        assert len(faces) == len(processed.faces) == 1
        (a,), (b,) = faces, processed.faces
        assert (a.track, a.status) == (b.track, b.status)
        assert np.array_equal(a.observation.landmarks, b.observation.landmarks)
        for name in ("identity", "expression", "rotation", "translation"):
            assert np.array_equal(getattr(a.fit, name), getattr(b.fit, name)), name
            assert np.array_equal(getattr(a.state, name), getattr(b.state, name)), name
    assert not finder_threads()


def test_stream_takes_a_frame_only_once_the_one_before_is_taken(
        footage_dir: Path, installed_model: Path) -> None:
    """A slow caller (drawing a mesh, say) must not leave the thread holding a stale frame:
    a live source's newest frame would wait behind it."""
    frames = frames_of(footage_dir / "single_face.mp4")[:8]
    done: list[int] = []  # frames the caller has finished with
    done_when_pulled: list[int] = []

    def watched() -> Iterator[Frame]:
        for frame in frames:
            done_when_pulled.append(len(done))
            yield frame

    with full_tracker(installed_model) as tracker:
        for processed in tracker.stream(watched()):
            time.sleep(0.03)  # a caller slower than MediaPipe
            done.append(processed.frame.index)
    assert done == [f.index for f in frames]
    # Frame i is taken while the caller works on frame i - 1, not sooner.
    assert all(finished >= i - 1 for i, finished in enumerate(done_when_pulled)), \
        done_when_pulled


def test_stream_raises_a_sources_error_after_the_frames_before_it(
        footage_dir: Path, installed_model: Path) -> None:
    frames = frames_of(footage_dir / "single_face.mp4")[:5]

    def broken() -> Iterator[Frame]:
        yield from frames
        raise FacetrackError("the stream broke")

    seen = []
    with full_tracker(installed_model) as tracker, \
            pytest.raises(FacetrackError, match="the stream broke"):
        for processed in tracker.stream(broken()):
            seen.append(processed.frame.index)
    assert seen == [f.index for f in frames]
    assert not finder_threads()


def test_leaving_a_stream_early_stops_its_thread(footage_dir: Path,
                                                 installed_model: Path) -> None:
    first = frames_of(footage_dir / "single_face.mp4")[:3]
    endless = (Frame("endless", i, i / 30, first[i % 3].image) for i in itertools.count())
    with full_tracker(installed_model) as tracker:
        stream = tracker.stream(endless)
        taken = [next(stream) for _ in range(4)]
        assert len(finder_threads()) == 1
        stream.close()
        assert not finder_threads()
    assert all(p.faces and p.faces[0].fit is not None for p in taken)
