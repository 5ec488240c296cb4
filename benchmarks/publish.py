"""Publish cost per face (DESIGN.md budget: 0.05 ms): `Publisher.send_frame` on a one-face record
shaped like a smoothed run's, with one subscriber connected so every message really goes out.
With --fps, also what a subscriber that never reads does to a real `facetrack run`: its frame
rate without publishing, publishing to nobody, and publishing to a stuck subscriber, the three
alternated over several rounds (issue 6: within 5%).

    .venv/bin/python benchmarks/publish.py [--format json] [--count 5000] [--fps [--rounds 3]]
"""

from __future__ import annotations

import argparse
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import zmq

from calibrate.intrinsics import Intrinsics
from streams.publisher import Publisher
from tracker.expressions import ICT_EXPRESSION_NAMES
from tracker.pose import rotation
from tracker.records import header

IDENTITY = np.round(np.random.default_rng(1).normal(0, 0.1, 100), 4)


def one_face_record(frame: int, rng: np.random.Generator) -> dict:
    """A frame record as tracker/records.py makes it for one smoothed face."""
    return {"frame": frame, "time": round(frame / 30, 6), "faces": [{
        "track": 0, "status": "tracking", "bbox": [221.25, 107.09, 371.57, 300.91],
        "score": 0.9575, "rotation": np.round(rotation(*rng.normal(0, 10, 3)), 6),
        "translation": np.round(rng.normal([0, 0, 60], 2), 3),
        "identity": IDENTITY,  # a running mean: steady, so no metadata re-sends
        "expression": dict(zip(ICT_EXPRESSION_NAMES, np.round(rng.random(53), 4).tolist(),
                               strict=True)),
        "angular_velocity": np.round(rng.normal(0, 0.1, 3), 5),
        "translation_velocity": np.round(rng.normal(0, 1, 3), 3),
        "expression_velocity": np.round(rng.normal(0, 0.1, 53), 4),
        "rotation_variance": rng.random(3).astype(np.float32),
        "translation_variance": rng.random(3).astype(np.float32),
        "identity_variance": rng.random(100).astype(np.float32),
        "expression_variance": rng.random(53).astype(np.float32)}]}


FOOTAGE = Path(__file__).resolve().parents[2] / "shared" / "footage"
FACETRACK = str(Path(sys.executable).parent / "facetrack")


def run_fps(clip: Path, publish: str | None) -> float:
    """The frame rate `facetrack run` reports for CLIP, publishing to PUBLISH if given."""
    extra = ["--publish", publish] if publish else []
    result = subprocess.run([FACETRACK, "run", "--source", str(clip), *extra],
                            capture_output=True, text=True, check=True)
    return float(re.search(r"\(([\d.]+) fps\)", result.stderr).group(1))


def stuck_subscriber_fps(clip: Path, rounds: int) -> dict[str, list[float]]:
    """Frame rates of runs without publishing, publishing to nobody, and publishing to a
    subscriber that never reads (its queue full after a few messages)."""
    fps: dict[str, list[float]] = {"no --publish": [], "--publish, no subscriber": [],
                                   "--publish, stuck subscriber": []}
    for _ in range(rounds):
        fps["no --publish"].append(run_fps(clip, None))
        fps["--publish, no subscriber"].append(run_fps(clip, f"tcp://127.0.0.1:{_free_port()}"))
        port = _free_port()
        stuck = zmq.Context.instance().socket(zmq.SUB)
        stuck.setsockopt(zmq.RCVHWM, 10)
        stuck.subscribe(b"")
        stuck.connect(f"tcp://127.0.0.1:{port}")  # connects once the run binds; never reads
        fps["--publish, stuck subscriber"].append(run_fps(clip, f"tcp://127.0.0.1:{port}"))
        stuck.close(linger=0)
    return fps


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", choices=("msgpack", "json"), default="msgpack")
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--fps", action="store_true",
                        help="also compare run frame rates with a stuck subscriber")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clip", type=Path, default=FOOTAGE / "WolfgangLanger_Pexels.mp4")
    args = parser.parse_args()
    if args.fps:
        rates = stuck_subscriber_fps(args.clip, args.rounds)
        base = np.median(rates["no --publish"])
        print(f"| {args.clip.name}, {args.rounds} rounds | median fps | vs no --publish |\n"
              "|---|---:|---:|")
        for name, values in rates.items():
            print(f"| {name} | {np.median(values):.1f} | "
                  f"{100 * (np.median(values) / base - 1):+.1f}% |")
    rng = np.random.default_rng(0)
    records = [one_face_record(i, rng) for i in range(args.count)]
    with Publisher("tcp://127.0.0.1:*", fmt=args.format) as publisher:
        publisher.send_header(header("bench", Intrinsics.from_fov(640, 360), fps=30.0,
                                     frame_count=None, landmarks=False, regressor="bench"))
        subscriber = zmq.Context.instance().socket(zmq.SUB)
        subscriber.subscribe(b"")
        subscriber.connect(publisher.endpoint)
        time.sleep(0.3)  # connected and subscribed
        costs, size = [], 0
        for record in records:
            started = time.perf_counter()
            publisher.send_frame(record)
            costs.append(time.perf_counter() - started)
            while subscriber.poll(0):
                topic, payload = subscriber.recv_multipart()
                size = len(payload) if topic.startswith(b"face/") else size
        subscriber.close(linger=0)
    ms = np.array(costs[100:]) * 1e3  # the first sends warm caches and connections up
    print(f"{args.format}: publish per face median {np.median(ms):.4f} ms, "
          f"p95 {np.percentile(ms, 95):.4f} ms, payload {size} bytes, "
          f"dropped {publisher.dropped} (n={len(ms)})")


if __name__ == "__main__":
    main()
