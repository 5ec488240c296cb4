"""What MediaPipe's full-range face detector costs and finds, next to the short-range one.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/detectors.py [--frames N] [--rounds R]

Landmarks per frame of the WolfgangLanger footage (one face) through `tracker.landmarks.FaceMesh`
with each detector, for up to one face (the detector runs once, then the face is tracked) and
up to two (one face in view, so the detector runs on every frame), next to bare MediaPipe
(`solutions.face_mesh`) in the same rounds; then the group photo (five people) in static mode,
where the faces found matter more than the time. Rounds alternate in one process.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import av
import cv2
import numpy as np
from mediapipe.python.solutions import face_mesh

from tracker.landmarks import DETECTORS, FaceMesh
from tracker.native_log import filter_native_stderr

FOOTAGE = Path(__file__).resolve().parents[2] / "shared" / "footage"


def frames_of(clip: Path, count: int) -> list[np.ndarray]:
    with av.open(str(clip)) as container:
        return [frame.to_ndarray(format="rgb24")
                for _, frame in zip(range(count), container.decode(video=0), strict=False)]


def timed(process, images: list[np.ndarray]) -> list[float]:
    """Seconds per call after the first (the graph's start)."""
    process(images[0])
    spent = []
    for image in images[1:]:
        started = time.perf_counter()
        process(image)
        spent.append(time.perf_counter() - started)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    filter_native_stderr()
    clip = frames_of(FOOTAGE / "WolfgangLanger_Pexels.mp4", args.frames)
    group = cv2.cvtColor(cv2.imread(str(FOOTAGE / "multi_face.jpg")), cv2.COLOR_BGR2RGB)
    times: dict[str, list[float]] = defaultdict(list)
    found: dict[str, int] = {}
    for _ in range(args.rounds):
        with face_mesh.FaceMesh(max_num_faces=1, refine_landmarks=True) as bare:
            times["bare MediaPipe, 1 face"] += timed(bare.process, clip)
        for detector in DETECTORS:
            for faces in (1, 2):
                with FaceMesh(faces, detector=detector) as mesh:
                    row = f"{detector}, up to {faces} face{'s' if faces > 1 else ''}"
                    times[row] += timed(mesh.process, clip)
            with FaceMesh(5, static_image_mode=True, detector=detector) as mesh:
                row = f"{detector}, group photo, up to 5 faces"
                times[row] += timed(mesh.process, [group] * 6)
                found[row] = len(mesh.process(group))
    print("| per frame | median ms | p95 ms | faces found |\n|---|---:|---:|---:|")
    for name, spent in times.items():
        ms = np.array(spent) * 1e3
        print(f"| {name} | {np.median(ms):.2f} | {np.percentile(ms, 95):.2f} | "
              f"{found.get(name, '')} |")


if __name__ == "__main__":
    main()
