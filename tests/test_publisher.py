"""The ZeroMQ stream (docs/protocol.md): real sockets on 127.0.0.1, real subprocesses where a
user would run one."""

from __future__ import annotations

import csv
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import zmq

from calibrate.intrinsics import Intrinsics
from streams.publisher import Publisher, is_local
from streams.recording import read_records
from streams.subscriber import FaceMessage, MetaMessage, Subscriber, to_unity, to_unreal
from tracker.expressions import ARKIT_NAMES, ICT_EXPRESSION_NAMES
from tracker.pose import rotation
from tracker.records import header
from tracker.regressor import DEFAULT_MODEL

from cli_helpers import FACETRACK, assert_one_line_error, facetrack

SCHEMA = json.loads((Path(__file__).parents[1] / "docs" / "protocol.schema.json").read_text())
HEADER = header("clip.mp4", Intrinsics.from_fov(640, 360), fps=30.0, frame_count=None,
                landmarks=False, regressor="test")


def free_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def face(track: int = 0, jaw: float = 0.3) -> dict:
    expression = dict.fromkeys(ICT_EXPRESSION_NAMES, 0.0) | {"jawOpen": jaw}
    return {"track": track, "status": "tracking", "bbox": [10.0, 20.0, 110.0, 140.0],
            "score": 0.97, "rotation": np.diag([1.0, -1.0, -1.0]),
            "translation": np.array([0.5, -1.0, 60.0]), "identity": np.full(100, 0.1),
            "expression": expression}


def record(frame: int, faces: list[dict] | None = None) -> dict:
    return {"frame": frame, "time": round(frame / 30, 6),
            "faces": [face()] if faces is None else faces}


def until(condition: Callable[[], bool], publisher: Publisher, timeout: float = 5.0) -> float:
    """Publish frames until ``condition`` holds; the seconds it took (fails after timeout)."""
    started = time.monotonic()
    frame = 0
    while not condition():
        assert time.monotonic() - started < timeout, "timed out"
        publisher.send_frame(record(frame))
        frame += 1
        time.sleep(0.002)
    return time.monotonic() - started


def joined(subscriber: Subscriber, publisher: Publisher) -> None:
    """Wait for the late-join metadata, which proves the subscription reached the publisher,
    then drain what came with it."""
    until(lambda: isinstance(subscriber.receive(0), MetaMessage), publisher)
    while subscriber.receive(0.05) is not None:
        pass


def receive_all(subscriber: Subscriber, idle: float = 0.5,
                first: float | None = None) -> list[FaceMessage | MetaMessage]:
    """Messages until none came for ``idle`` seconds (``first`` for the first one)."""
    messages = []
    while (message := subscriber.receive(first if first and not messages else idle)):
        messages.append(message)
    return messages


@pytest.fixture()
def publisher() -> Publisher:
    with Publisher(free_endpoint()) as publisher:
        publisher.send_header(HEADER)
        yield publisher


def test_a_run_reaches_another_process_in_order_and_replays_the_same(
        footage_dir: Path, tmp_path: Path) -> None:
    if not DEFAULT_MODEL.exists():
        pytest.skip("no regressor model")
    endpoint, rows, recording = free_endpoint(), tmp_path / "faces.csv", tmp_path / "rec.jsonl"
    listen = subprocess.Popen([FACETRACK, "listen", endpoint, "--csv", str(rows)],
                              stderr=subprocess.PIPE, text=True)
    try:
        assert "listening" in listen.stderr.readline()
        with Subscriber(endpoint) as subscriber:
            run = facetrack("run", "--source", str(footage_dir / "single_face.mp4"), "--quiet",
                            "--record", str(recording), "--publish", endpoint,
                            "--wait-subscribers", "2")
            assert run.returncode == 0, run.stderr
            live = receive_all(subscriber, first=20)
    finally:  # stopped as a service manager or `timeout` stops it; Ctrl-C takes the same path
        listen.send_signal(signal.SIGTERM)
        assert listen.wait(10) == 130
        described = [line for line in listen.stderr if "stream 0:" in line]
    _, frames = read_records(recording)
    with_face = [f["frame"] for f in frames if any(x["status"] == "tracking" for x in f["faces"])]
    with open(rows, newline="") as file:
        listened = list(csv.DictReader(file))
    assert [int(row["frame"]) for row in listened if row["status"] == "tracking"] == with_face
    faces = [m for m in live if isinstance(m, FaceMessage)]
    assert [m.frame for m in faces if m.status == "tracking"] == with_face
    assert isinstance(live[0], MetaMessage) and live[0].payload["regressor"]
    # The metadata is sent again as the identity settles; listen tells the stream once.
    assert sum(isinstance(m, MetaMessage) for m in live) > 1 and len(described) == 1, described
    validator = jsonschema.Draft202012Validator(SCHEMA)
    known = SCHEMA["$defs"]["face"]["properties"].keys() | SCHEMA["$defs"]["meta"]["properties"]
    for message in live:
        validator.validate(message.payload)
        assert message.payload.keys() <= known, message.payload.keys() - known

    # The recording replayed (in the other format, ten times faster) gives the same messages.
    with Subscriber(endpoint) as subscriber:
        replay = subprocess.Popen([FACETRACK, "replay", str(recording), "--publish", endpoint,
                                   "--format", "json", "--speed", "10", "--wait-subscribers", "1"],
                                  stderr=subprocess.PIPE, text=True)
        replayed = receive_all(subscriber, first=20)
        assert replay.wait(30) == 0, replay.stderr.read()
    assert len(replayed) == len(live)
    for again, first in zip(replayed, live, strict=True):
        assert again.payload.keys() == first.payload.keys()
        for key, value in first.payload.items():
            if key.endswith("_variance"):  # float32: JSON keeps 7 digits, msgpack all of them
                np.testing.assert_allclose(again.payload[key], value, rtol=1e-6)
            else:
                assert again.payload[key] == value, key


def test_a_new_frame_size_sends_the_metadata_again(publisher: Publisher) -> None:
    """A stream whose size changed (its records then carry their own size and intrinsics):
    subscribers get the new ones in the metadata before that frame's faces, once."""
    smaller = Intrinsics.from_fov(480, 270)
    own = {"image_size": [480, 270], "intrinsics": smaller.to_dict()}
    with Subscriber(publisher.endpoint, stream="0") as subscriber:
        joined(subscriber, publisher)
        for frame in range(4):
            publisher.send_frame(record(frame) | (own if frame >= 2 else {}))
        messages = receive_all(subscriber)
    assert [(type(m).__name__, getattr(m, "frame", None)) for m in messages] == [
        ("FaceMessage", 0), ("FaceMessage", 1), ("MetaMessage", None), ("FaceMessage", 2),
        ("FaceMessage", 3)]
    assert messages[2].payload["image_size"] == [480, 270]
    assert messages[2].payload["intrinsics"]["cx"] == smaller.cx == 240


def test_a_late_joiner_gets_the_metadata_within_100_ms(publisher: Publisher) -> None:
    with Subscriber(publisher.endpoint, stream="0") as late:
        seconds = until(lambda: isinstance(late.receive(0), MetaMessage), publisher)
    assert seconds < 0.1


def test_a_closed_subscriber_says_so(publisher: Publisher) -> None:
    """Closed twice, no error; a receive after it is refused by name (it was ZeroMQ's
    'Operation not supported')."""
    with Subscriber(publisher.endpoint) as subscriber:
        joined(subscriber, publisher)
    subscriber.close()
    with pytest.raises(ValueError, match="this Subscriber is closed"):
        subscriber.receive(0)


def test_a_subscriber_that_never_reads_blocks_nobody(publisher: Publisher) -> None:
    context = zmq.Context.instance()
    stuck = context.socket(zmq.SUB)
    stuck.setsockopt(zmq.RCVHWM, 10)
    stuck.setsockopt(zmq.RCVBUF, 4096)
    stuck.subscribe(b"")
    stuck.connect(publisher.endpoint)
    with Subscriber(publisher.endpoint) as reader:
        joined(reader, publisher)
        time.sleep(0.1)  # the stuck one has subscribed too by now
        received, started = 0, time.monotonic()
        for chunk in range(200):
            for frame in range(chunk * 100, chunk * 100 + 100):
                publisher.send_frame(record(frame))
            while received < chunk * 100 + 100:
                message = reader.receive(5)
                assert message is not None, f"reader starved after {received}"
                received += isinstance(message, FaceMessage)
        seconds = time.monotonic() - started
    stuck.close(linger=0)
    assert received == 20_000 and publisher.dropped > 0
    assert seconds < 30, f"20,000 messages took {seconds:.1f} s"


def test_twenty_subscribers_all_receive(publisher: Publisher) -> None:
    subscribers = [Subscriber(publisher.endpoint) for _ in range(20)]
    try:
        for subscriber in subscribers:
            joined(subscriber, publisher)
        for subscriber in subscribers:  # what the later ones' joining sent
            receive_all(subscriber, 0.05)
        for frame in range(50):
            publisher.send_frame(record(1000 + frame))
        for subscriber in subscribers:
            frames = [m.frame for m in receive_all(subscriber, 0.2)
                      if isinstance(m, FaceMessage)]
            assert frames == list(range(1000, 1050))
    finally:
        for subscriber in subscribers:
            subscriber.close()
    assert publisher.dropped == 0


def test_garbage_from_peers_changes_nothing(publisher: Publisher) -> None:
    host, port = publisher.endpoint.removeprefix("tcp://").rsplit(":", 1)
    context = zmq.Context.instance()
    with Subscriber(publisher.endpoint) as good, \
            socket.create_connection((host, int(port))) as raw:
        joined(good, publisher)
        raw.sendall(os.urandom(8192) + b"\xff" * 64)
        dealer = context.socket(zmq.DEALER)
        xsub = context.socket(zmq.XSUB)
        for peer in (dealer, xsub):
            peer.setsockopt(zmq.LINGER, 0)
            peer.connect(publisher.endpoint)
        for junk in (b"", b"\x02junk", b"\x00never-subscribed", b"import os; os.system('x')",
                     b"\x80\x04\x95" + os.urandom(64), b"\x01meta/0", os.urandom(10_000)):
            dealer.send_multipart([junk, junk])
            xsub.send_multipart([junk, b"more"])
        for frame in range(50):
            publisher.send_frame(record(2000 + frame))
            time.sleep(0.002)
        messages = receive_all(good, 0.3)
        dealer.close()
        xsub.close()
    assert [m.frame for m in messages if isinstance(m, FaceMessage)] == list(range(2000, 2050))
    assert publisher.dropped == 0


def test_curve_admits_only_the_client_keys(tmp_path: Path) -> None:
    right, wrong, mixed = tmp_path / "right", tmp_path / "wrong", tmp_path / "mixed"
    for keys in (right, wrong):
        result = facetrack("keys", str(keys))
        assert result.returncode == 0, result.stderr
    assert (right / "server.key_secret").stat().st_mode & 0o077 == 0
    shutil.copytree(wrong, mixed)  # a client unknown to the server, with the right server key
    shutil.copy(right / "server.key", mixed / "server.key")
    with Publisher(free_endpoint(), curve=right) as publisher:
        publisher.send_header(HEADER)
        admitted = Subscriber(publisher.endpoint, curve_dir=right)
        refused = [Subscriber(publisher.endpoint, curve_dir=keys) for keys in (wrong, mixed)]
        refused.append(Subscriber(publisher.endpoint))  # no encryption at all
        try:
            joined(admitted, publisher)
            for frame in range(30):
                publisher.send_frame(record(frame))
            assert receive_all(admitted, 0.3)
            assert all(subscriber.receive(0.2) is None for subscriber in refused)
        finally:
            for subscriber in (admitted, *refused):
                subscriber.close()


def test_replay_keeps_the_recorded_timing(tmp_path: Path) -> None:
    path, endpoint = tmp_path / "rec.jsonl", free_endpoint()
    lines = [HEADER] + [dict(record(f), time=f * 0.1) for f in range(6)]
    path.write_text("".join(json.dumps(line, default=np.ndarray.tolist) + "\n" for line in lines))
    with Subscriber(endpoint) as subscriber:
        replay = subprocess.Popen([FACETRACK, "replay", str(path), "--publish", endpoint,
                                   "--speed", "2", "--wait-subscribers", "1"],
                                  stderr=subprocess.PIPE)
        arrivals, wait = [], 30.0  # the first message waits out the command's start-up
        while (message := subscriber.receive(wait)) is not None:
            wait = 2.0
            if isinstance(message, FaceMessage):
                arrivals.append((message.frame, time.monotonic()))
        assert replay.wait(10) == 0
    assert [frame for frame, _ in arrivals] == list(range(6))
    assert 0.2 < arrivals[-1][1] - arrivals[0][1] < 0.5  # 0.5 s recorded, at twice the speed


@pytest.mark.parametrize(("endpoint", "local"), [
    ("tcp://127.0.0.1:5570", True), ("tcp://127.3.2.1:1", True), ("tcp://localhost:5570", True),
    ("tcp://[::1]:5570", True), ("ipc:///tmp/facetrack", True), ("tcp://0.0.0.0:5570", False),
    ("tcp://*:5570", False), ("tcp://192.168.1.20:5570", False), ("tcp://eth0:5570", False),
    ("udp://127.0.0.1:5570", False),
])
def test_only_loopback_and_ipc_are_local(endpoint: str, local: bool) -> None:
    assert is_local(endpoint) is local


def test_bad_inputs_are_one_line_errors(footage_dir: Path, tmp_path: Path) -> None:
    result = facetrack("run", "--source", str(footage_dir / "single_face.mp4"),
                       "--publish", "tcp://0.0.0.0:5570")
    assert_one_line_error(result, "--publish-any-host")
    assert_one_line_error(facetrack("replay", str(tmp_path / "missing.jsonl"), "--publish"),
                          "missing.jsonl")
    path = tmp_path / "rec.jsonl"
    path.write_text(json.dumps(HEADER) + "\n")
    with Publisher(free_endpoint()) as taken:
        assert_one_line_error(facetrack("replay", str(path), "--publish", taken.endpoint),
                              "cannot publish", taken.endpoint)


@pytest.mark.parametrize(("command", "endpoint", "words"), [
    ("run", "tcp://127.0.0.1:99999", ["port from 1 to 65535"]),  # ZeroMQ wraps it to 34463
    ("run", "tcp://127.0.0.1", ["port from 1 to 65535"]),
    ("listen", "tcp://127.0.0.1:99999", ["port from 1 to 65535"]),
    ("listen", "tcp://127.0.0.1:*", ["port from 1 to 65535"]),
    ("listen", "tcp://no-such-host.invalid:5570", ["no host no-such-host.invalid"]),
    ("run", "5570", ["names its transport", "tcp://127.0.0.1:5570"]),
    ("listen", "localhost:5570", ["names its transport", "tcp://127.0.0.1:5570"]),
])
def test_endpoints_zeromq_takes_but_never_reaches_are_refused(
        footage_dir: Path, command: str, endpoint: str, words: list[str]) -> None:
    """ZeroMQ accepts these and then waits in silence for ever (a listen) or publishes where
    nobody looks (a run): the user is told at once instead. An endpoint without its transport
    (as --vmc's HOST:PORT) is told how one is written, not that it is an invalid argument or
    can be reached from other machines."""
    args = (["run", "--source", str(footage_dir / "single_face.jpg"), "--publish", endpoint]
            if command == "run" else ["listen", endpoint])
    result = subprocess.run([FACETRACK, *args], capture_output=True, text=True, timeout=60)
    assert_one_line_error(result, endpoint, *words)


@contextmanager
def feeding(publisher: Publisher) -> Iterator[None]:
    """PUBLISHER sends a frame every 10 ms within it."""
    stop = threading.Event()

    def feed() -> None:
        frame = 0
        while not stop.is_set():
            publisher.send_frame(record(frame))
            frame += 1
            time.sleep(0.01)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        yield
    finally:
        stop.set()
        feeder.join()


def test_listen_says_when_nothing_comes_and_keeps_listening() -> None:
    """Pub/sub waits in silence for a publisher that is not there: after 5 s listen says so,
    once, and still takes the faces of a publisher that starts later."""
    endpoint = free_endpoint()
    listen = subprocess.Popen([FACETRACK, "listen", endpoint], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    said: queue.SimpleQueue[str] = queue.SimpleQueue()
    reader = threading.Thread(target=lambda: [said.put(line) for line in listen.stderr],
                              daemon=True)
    reader.start()
    try:
        assert said.get(timeout=30).startswith(f"facetrack: listening on {endpoint}")
        assert said.get(timeout=15).startswith("facetrack: nothing yet in 5 s; still listening "
                                               "(is a 'facetrack run --publish'")
        with Publisher(endpoint) as late:
            late.send_header(HEADER)
            with feeding(late):  # its first frames go out before listen has connected
                assert " track 0 " in listen.stdout.readline()
        listen.send_signal(signal.SIGTERM)
        assert listen.wait(timeout=30) == 130
    finally:
        listen.kill()
    reader.join(timeout=30)
    rest = [said.get() for _ in range(said.qsize())]
    assert rest[-1].endswith(" face messages\n")
    assert not any("nothing yet" in line for line in rest)  # said once


@pytest.mark.parametrize("where", ["a pipe closed by its reader",
                                   "a CSV pipe closed by its reader", "a full disk"])
def test_listen_whose_output_fails_ends_in_one_line(publisher: Publisher, where: str) -> None:
    """`facetrack listen | head -2`, and with `--csv -`: once the reader has gone, listen ends
    quietly (exit 0). `--csv` on a full disk (/dev/full): one line that says so."""
    args = {"a full disk": ["--csv", "/dev/full"],
            "a CSV pipe closed by its reader": ["--csv", "-"]}.get(where, [])
    listen = subprocess.Popen([FACETRACK, "listen", publisher.endpoint, *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with feeding(publisher):  # frames until the end, so nothing listen reads can starve
            if where != "a full disk":
                first = listen.stdout.readline()
                assert first.startswith("frame,time,") == bool(args), first
                assert listen.stdout.readline()
                listen.stdout.close()  # as `head -2` does once it has its lines
            listen.wait(timeout=30)
    finally:
        listen.kill()
    stderr = listen.stderr.read()
    assert "Traceback" not in stderr
    if where == "a full disk":
        assert listen.returncode == 2
        assert_one_line_error(subprocess.CompletedProcess([], 2, "", stderr),
                              "cannot write /dev/full", "No space left")
    else:
        assert listen.returncode == 0 and "face messages" in stderr


def test_ipv6_loopback_carries_the_stream() -> None:
    with Publisher("tcp://[::1]:*") as publisher, Subscriber(publisher.endpoint) as subscriber:
        publisher.send_header(HEADER)
        assert until(lambda: isinstance(subscriber.receive(0), MetaMessage), publisher) < 5


def test_pose_in_unity_and_unreal_conventions() -> None:
    frontal, ahead = rotation(0.0), np.array([0.0, 0.0, 60.0])
    unity = to_unity(frontal, ahead)
    np.testing.assert_allclose(unity.position, [0, 0, 0.6])
    assert np.allclose(unity.rotation, [0, 1, 0, 0]) or np.allclose(unity.rotation, [0, -1, 0, 0])
    unreal = to_unreal(frontal, ahead)
    np.testing.assert_allclose(unreal.location, [60, 0, 0])
    np.testing.assert_allclose(abs(unreal.rotator[1]), 180)
    np.testing.assert_allclose(unreal.rotator[[0, 2]], 0, atol=1e-9)
    # Up and to the image's right (OpenCV y down) is +y, +x in Unity and +z, +y in Unreal.
    raised = np.array([10.0, -5.0, 60.0])
    np.testing.assert_allclose(to_unity(frontal, raised).position, [0.1, 0.05, 0.6])
    np.testing.assert_allclose(to_unreal(frontal, raised).location, [60, 10, 5])
    # Turned 30° to the subject's left (toward the image's right), looking 20° down, rolled.
    for yaw, pitch, roll in [(30, 0, 0), (0, 20, 0), (0, 0, 15), (25, -10, 5)]:
        turned = rotation(yaw, pitch, roll)
        forward = _unity_matrix(to_unity(turned, ahead).rotation) @ [0, 0, 1]
        assert np.sign(forward[0].round(9)) == np.sign(yaw)  # image right is Unity +x
        assert np.sign(forward[1].round(9)) == -np.sign(pitch)  # looking down is Unity -y
        pose = to_unreal(turned, ahead)
        matrix = _unreal_matrix(*pose.rotator)
        np.testing.assert_allclose(matrix, _unity_matrix(pose.quaternion), atol=1e-9)
        # The head's forward in both engines is the same physical direction.
        unreal_forward = matrix @ [1, 0, 0]
        np.testing.assert_allclose(unreal_forward, [forward[2], forward[0], forward[1]],
                                   atol=1e-9)
    np.testing.assert_allclose(to_unreal(rotation(0, 20), ahead).rotator[0], -20, atol=1e-9)


def _unity_matrix(quaternion: np.ndarray) -> np.ndarray:
    """The rotation matrix of a quaternion x, y, z, w (the standard formula both engines use)."""
    x, y, z, w = quaternion
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def _unreal_matrix(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """Unreal's FRotationMatrix, rows the images of x, y, z, transposed to column form."""
    p, y, r = np.radians([pitch, yaw, roll])
    sp, sy, sr, cp, cy, cr = np.sin(p), np.sin(y), np.sin(r), np.cos(p), np.cos(y), np.cos(r)
    rows = np.array([[cp * cy, cp * sy, sp],
                     [sr * sp * cy - cr * sy, sr * sp * sy + cr * cy, -sr * cp],
                     [-(cr * sp * cy + sr * sy), cy * sr - cr * sp * sy, cr * cp]])
    return rows.T


def test_arkit_view_in_face_messages(publisher: Publisher) -> None:
    with Subscriber(publisher.endpoint, stream="0") as subscriber:
        joined(subscriber, publisher)
        publisher.send_frame(record(7, [face(0, jaw=0.25), face(3, jaw=0.5)]))
        messages = [m for m in receive_all(subscriber, 0.2) if isinstance(m, FaceMessage)]
    assert [(m.track, m.frame) for m in messages] == [(0, 7), (3, 7)]
    assert list(messages[1].arkit) == list(ARKIT_NAMES)
    assert messages[1].arkit["jawOpen"] == 0.5 and messages[1].arkit["tongueOut"] == 0
