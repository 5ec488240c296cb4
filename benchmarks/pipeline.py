"""Per-frame cost of each stage of ``facetrack run`` next to the floor: decode + MediaPipe alone.

    .venv/bin/python benchmarks/pipeline.py [--clip FILE] [--frames N] [--rounds R]

Without --clip it makes a 640×480 clip (the WolfgangLanger footage, letterboxed) in a temporary
folder. Each round runs the floor; the pipeline's stages one after another on one thread, each
timed; and ``facetrack run``'s own loop, where MediaPipe finds the next frame's landmarks on a
second thread while a frame is fitted (`FaceTracker.stream`; its regressor calls timed too),
without and with H.264 output; and that loop fed at the clip's frame rate, as a camera feeds
it, next to the same loop on one thread, for the latency a live user sees. The rounds
alternate in one process, so all see the same machine state; the table gives the median and
p95 of each row over all rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

import av
import numpy as np
from mediapipe.python.solutions import face_mesh

from streams.frame import Frame
from streams.recording import Recorder
from streams.sources import open_source
from streams.video_writer import VideoWriter
from tracker.face_model import FaceModel
from tracker.native_log import filter_native_stderr
from tracker.overlay import Overlay
from tracker.pipeline import FaceTracker, Processed, frames_ahead
from tracker.records import frame_record
from tracker.refine import Refiner
from tracker.regressor import Regressor
from tracker.render import Renderer
from tracker.shading import with_shading
from tracker.smoothing import Smoother

FOOTAGE = Path(__file__).resolve().parents[2] / "shared" / "footage"


def make_clip(path: Path, size: tuple[int, int] = (640, 480)) -> Path:
    """Letterbox the 640×360 footage into 640×480, re-encoded as H.264."""
    width, height = size
    with av.open(str(FOOTAGE / "WolfgangLanger_Pexels.mp4")) as src, \
            av.open(str(path), "w") as dst:
        stream = src.streams.video[0]
        out = dst.add_stream("libx264", rate=stream.average_rate)
        out.width, out.height, out.pix_fmt = width, height, "yuv420p"
        for frame in src.decode(stream):
            image = frame.to_ndarray(format="rgb24")
            canvas = np.zeros((height, width, 3), np.uint8)
            top = (height - image.shape[0]) // 2
            canvas[top:top + image.shape[0], : image.shape[1]] = image[:, :width]
            dst.mux(out.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")))
        dst.mux(out.encode(None))
    return path


def floor(clip: Path, frames: int, times: dict[str, list[float]]) -> None:
    """What a user of bare MediaPipe writes: decode, convert, process."""
    mesh = face_mesh.FaceMesh(max_num_faces=1, refine_landmarks=True)
    with av.open(str(clip)) as container, mesh:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        last = time.perf_counter()
        for index, frame in enumerate(container.decode(stream)):
            if index == frames:
                break
            image = frame.to_ndarray(format="rgb24")
            t1 = time.perf_counter()
            mesh.process(image)
            t2 = time.perf_counter()
            times["floor: decode + to RGB"].append(t1 - last)
            times["floor: MediaPipe"].append(t2 - t1)
            times["floor: per frame"].append(t2 - last)
            last = t2


def stages(clip: Path, frames: int, out_dir: Path, times: dict[str, list[float]],
           overlay: Overlay) -> None:
    """The stages of ``facetrack run --record --record-landmarks`` (the regressor on ONNX
    Runtime, refinement, the smoother, an overlay drawn) one after another on one thread,
    each timed: what each costs."""
    prefix = "facetrack, stage by stage"
    regressor = Regressor(engine="onnxruntime")
    in_regressor = _timed(regressor)
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(open_source(str(clip)))
        tracker = stack.enter_context(_tracker(regressor))
        recorder = stack.enter_context(Recorder(out_dir / "bench.jsonl"))
        stages = defaultdict(list)
        last = time.perf_counter()
        for frame in source:
            if frame.index == frames:
                break
            t1 = time.perf_counter()
            observations = tracker.mesh.process(frame.image)
            t2 = time.perf_counter()
            observations = with_shading(frame.image, observations)
            t2b = time.perf_counter()
            faces = tracker.ids.update(observations, frame.time)
            in_regressor.clear()
            t3 = time.perf_counter()
            faces = tracker.fit(faces, *frame.size)
            t3b = time.perf_counter()
            faces = tracker.smooth(faces, frame.time)
            t3c = time.perf_counter()
            recorder.write(frame_record(frame, faces, landmarks=True))
            t4 = time.perf_counter()
            overlay.draw(frame.image, faces, "fps 30.0  latency 5 ms  faces 1",
                         tracker.intrinsics(*frame.size))
            t5 = time.perf_counter()
            stages["wait for decoded frame"].append(t1 - last)
            stages["landmarks (MediaPipe + numpy)"].append(t2 - t1)
            stages["shading at the landmarks"].append(t2b - t2)
            stages["track ids"].append(t3 - t2b)
            if in_regressor:  # a frame with a face
                stages["regressor (ONNX Runtime, 1 thread; inputs, infer)"].append(
                    in_regressor[0])
                stages["refinement (1 step)"].append(t3b - t3 - in_regressor[0])
            stages["smoother"].append(t3c - t3b)
            stages["record (with landmarks)"].append(t4 - t3c)
            stages["overlay"].append(t5 - t4)
            stages["per frame"].append(t5 - last)
            last = t5
    for name, values in stages.items():
        times[f"{prefix}: {name}"].extend(values)


def run_loop(clip: Path, frames: int, out_dir: Path, times: dict[str, list[float]],
             overlay: Overlay, *, output: bool = False, paced: bool = False,
             threads: bool = True, ahead: int | None = None) -> None:
    """``facetrack run``'s own loop (`FaceTracker.stream`: landmarks on a second thread, or
    with ``threads`` False `FaceTracker.process` a frame at a time) recording, drawing and with
    ``output`` also encoding H.264 (on a thread of its own): the time between one frame's end
    and the next's, and each frame's latency, from when the tracker took it to its record and
    drawing. ``paced`` feeds the clip at its frame rate (``--realtime``), as a camera would."""
    default = frames_ahead(paced)  # what facetrack run does
    ahead = ahead or default
    prefix = ("facetrack run" + (" + H.264 output" if output else "")
              + (", paced" if paced else "") + ("" if threads else ", one thread")
              + ("" if ahead == default else f", {ahead} ahead"))
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(open_source(str(clip), realtime=paced))
        regressor = Regressor(engine="onnxruntime")
        in_regressor = _timed(regressor)  # beside MediaPipe's thread, as the user's run has it
        tracker = stack.enter_context(_tracker(regressor))
        recorder = stack.enter_context(Recorder(out_dir / "bench.jsonl"))
        writer = (stack.enter_context(VideoWriter(out_dir / "bench.mp4", source.fps))
                  if output else None)
        processed = stack.enter_context(contextlib.closing(
            tracker.stream(source, ahead) if threads else _one_thread(tracker, source)))
        last = time.perf_counter()
        for frame, faces, started in processed:
            if frame.index == frames:
                break
            recorder.write(frame_record(frame, faces, landmarks=True))
            overlay.draw(frame.image, faces, "fps 30.0  latency 5 ms  faces 1",
                         tracker.intrinsics(*frame.size))
            if writer:
                writer.write(frame.image, frame.time)
            now = time.perf_counter()
            if not paced:
                times[f"{prefix}: per frame"].append(now - last)
            times[f"{prefix}: latency"].append(now - started)
            last = now
    times[f"{prefix}: regressor (inputs, infer)"].extend(in_regressor)


def _one_thread(tracker: FaceTracker, frames: Iterable[Frame]) -> Iterator[Processed]:
    for frame in frames:
        started = time.perf_counter()
        yield Processed(frame, tracker.process(frame), started)


def _tracker(regressor: Regressor) -> FaceTracker:
    """What `facetrack run` tracks with by default."""
    return FaceTracker(1, regressor=regressor, refiner=Refiner.load(), smoother=Smoother())


def _timed(regressor: Regressor) -> list[float]:
    """Make REGRESSOR's fit note its duration in the returned list (one entry per call),
    so the regressor and the refinement, both inside ``FaceTracker.fit``, are timed apart."""
    spent: list[float] = []
    fit = regressor.fit

    def timed_fit(*args: object) -> object:
        started = time.perf_counter()
        result = fit(*args)
        spent.append(time.perf_counter() - started)
        return result

    regressor.fit = timed_fit  # type: ignore[method-assign]
    return spent


def table(times: dict[str, list[float]]) -> str:
    rows = ["| stage | median ms | p95 ms |", "|---|---:|---:|"]
    for name, values in times.items():
        ms = np.array(values) * 1e3
        rows.append(f"| {name} | {np.median(ms):.2f} | {np.percentile(ms, 95):.2f} |")
    # The mean too: a frame's time is the whole run's over its frames, and the two threads'
    # run hands frames on in uneven steps, which a median of steps can misjudge.
    floor = times["floor: per frame"]
    for name in ("facetrack, stage by stage", "facetrack run", "facetrack run, 1 ahead"):
        cost = times[f"{name}: per frame"]
        rows.append(f"\n{name}: {np.median(cost) / np.median(floor):.2f}× the floor per frame "
                    f"(median), {np.mean(cost) / np.mean(floor):.2f}× (mean)")
    rows.append("\nThe H.264 rows encode on a thread that shares the two cores with MediaPipe.")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path)
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mesh", action="store_true",
                        help="draw each face's shaded mesh too, as facetrack run --mesh does")
    parser.add_argument("--paced-frames", type=int, default=200,
                        help="frames of the paced runs, at the clip's 24 fps (default 200)")
    args = parser.parse_args()
    filter_native_stderr()
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(tmp)
        clip = args.clip or make_clip(out_dir / "clip640x480.mp4")
        times: dict[str, list[float]] = defaultdict(list)
        overlay = Overlay(mesh=Renderer(FaceModel.load(), "face") if args.mesh else None)
        for _ in range(args.rounds):
            floor(clip, args.frames, times)
            stages(clip, args.frames, out_dir, times, overlay)
            run_loop(clip, args.frames, out_dir, times, overlay)
            run_loop(clip, args.frames, out_dir, times, overlay, ahead=1)
            run_loop(clip, args.frames, out_dir, times, overlay, output=True)
            for threads in (True, False):
                run_loop(clip, args.paced_frames, out_dir, times, overlay, paced=True,
                         threads=threads)
    print(f"clip: {clip.name if args.clip else '640×480 WolfgangLanger letterboxed'}, "
          f"{args.frames} frames × {args.rounds} rounds, {os.cpu_count()} cores"
          + (", shaded mesh drawn" if args.mesh else ""))
    print(table(times))


if __name__ == "__main__":
    main()
