"""Per-frame cost of each stage of ``facetrack run`` next to the floor: decode + MediaPipe alone.

    .venv/bin/python benchmarks/pipeline.py [--clip FILE] [--frames N] [--rounds R]

Without --clip it makes a 640×480 clip (the WolfgangLanger footage, letterboxed) in a temporary
folder. The floor and the full pipeline alternate for R rounds in one process, so both see the
same machine state; the table gives the median and p95 of each stage over all rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import av
import numpy as np
from mediapipe.python.solutions import face_mesh

from streams.recording import Recorder
from streams.sources import open_source
from streams.video_writer import VideoWriter
from tracker.native_log import filter_native_stderr
from tracker.overlay import Overlay
from tracker.pipeline import FaceTracker
from tracker.records import frame_record
from tracker.refine import Refiner
from tracker.regressor import Regressor
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


def pipeline(clip: Path, frames: int, out_dir: Path, times: dict[str, list[float]],
             output: bool) -> None:
    """The stages of ``facetrack run --record --record-landmarks`` (the regressor on ONNX
    Runtime, then the smoother) with an overlay drawn,
    and with ``output`` also ``--output`` (H.264 encoding on its own thread)."""
    overlay = Overlay()
    prefix = "facetrack + H.264 output" if output else "facetrack"
    regressor = Regressor(engine="onnxruntime")
    in_regressor = _timed(regressor)
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(open_source(str(clip)))
        tracker = stack.enter_context(FaceTracker(1, regressor=regressor,
                                                  refiner=Refiner.load(),
                                                  smoother=Smoother()))
        recorder = stack.enter_context(Recorder(out_dir / "bench.jsonl"))
        writer = (stack.enter_context(VideoWriter(out_dir / "bench.mp4", source.fps))
                  if output else None)
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
            overlay.draw(frame.image, faces, "fps 30.0  latency 5 ms  faces 1")
            if writer:
                writer.write(frame.image, frame.time)
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
        if not output or name in ("landmarks (MediaPipe + numpy)", "per frame"):
            times[f"{prefix}: {name}"].extend(values)


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
    base = np.median(times["floor: per frame"])
    added = np.median(times["facetrack: per frame"]) - base
    rows.append(f"\nfacetrack per frame minus floor: {added * 1e3:+.2f} ms "
                f"({100 * added / base:+.1f}% of the floor); the H.264 row encodes on a thread "
                "that shares the two cores with MediaPipe")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path)
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    filter_native_stderr()
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(tmp)
        clip = args.clip or make_clip(out_dir / "clip640x480.mp4")
        times: dict[str, list[float]] = defaultdict(list)
        for _ in range(args.rounds):
            floor(clip, args.frames, times)
            pipeline(clip, args.frames, out_dir, times, output=False)
            pipeline(clip, args.frames, out_dir, times, output=True)
    print(f"clip: {clip.name if args.clip else '640×480 WolfgangLanger letterboxed'}, "
          f"{args.frames} frames × {args.rounds} rounds, {os.cpu_count()} cores")
    print(table(times))


if __name__ == "__main__":
    main()
