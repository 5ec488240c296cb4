"""The VMC and Live Link bridges and the exports (docs/vmc.md, docs/livelink.md,
docs/exports.md), on a real recording: a real OSC server and a UDP socket on loopback receiving
a real replay, the CSV read back with csv and numpy, the glTF checked by Khronos' validator
(node) and loaded by trimesh."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import trimesh
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_server import BlockingOSCUDPServer
from scipy.spatial.transform import Rotation

from streams.exports import LLF_COLUMNS, timecode
from streams.recording import read_records, tracked_face
from streams.vmc import avatar_head
from tracker.expressions import ARKIT_NAMES, ICT_EXPRESSION_NAMES, to_arkit
from tracker.pose import angles, rotation
from tracker.regressor import DEFAULT_MODEL

from cli_helpers import FACETRACK, assert_one_line_error, facetrack, facetrack_ok

# Where .ci/run installs the validator: npm install --prefix .venv/node gltf-validator
VALIDATOR = Path(__file__).resolve().parents[1] / ".venv" / "node" / "node_modules" / \
    "gltf-validator"
VALIDATE_JS = """
const validator = require(process.argv[1]);
validator.validateBytes(new Uint8Array(require('fs').readFileSync(process.argv[2])))
  .then((report) => console.log(JSON.stringify(report)))
  .catch((error) => { console.error(String(error)); process.exit(1); });
"""


@pytest.fixture(scope="session")
def recording(footage_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run on real footage, once."""
    if not DEFAULT_MODEL.exists():
        pytest.skip("no regressor model")
    path = tmp_path_factory.mktemp("vmc") / "single_face.jsonl"
    result = facetrack("run", "--source", str(footage_dir / "single_face.mp4"), "--quiet",
                       "--record", str(path))
    assert result.returncode == 0, result.stderr
    return path


class BundleRecorder(Dispatcher):
    """Keeps every packet the server receives, parsed as a bundle, before dispatching it."""

    def __init__(self) -> None:
        super().__init__()
        self.bundles: list[OscBundle] = []

    def call_handlers_for_packet(self, data: bytes, client_address: tuple[str, int]) -> list:
        self.bundles.append(OscBundle(data))
        return super().call_handlers_for_packet(data, client_address)


def test_replay_to_a_vmc_receiver(recording: Path) -> None:
    _, records = read_records(recording)
    dispatcher = BundleRecorder()
    applied: list[str] = []
    dispatcher.map("/VMC/Ext/Blend/Apply", applied.append)
    # One thread takes the datagrams in the order they came (a thread each, as the threading
    # server has it, can append them out of order on a busy machine), with room in the kernel
    # for all of the replay's (72 bundles of about 2.5 kB): UDP drops what does not fit.
    server = BlockingOSCUDPServer(("127.0.0.1", 0), dispatcher)
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        result = subprocess.run([FACETRACK, "replay", str(recording), "--speed", "4",
                                 "--vmc", f"127.0.0.1:{port}"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        deadline = time.monotonic() + 10  # the server may still be reading what was sent
        while len(dispatcher.bundles) < len(records) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        server.shutdown()
        server.server_close()
    tracked = [record for record in records if tracked_face(record) is not None]
    assert len(dispatcher.bundles) == len(records) and len(applied) == len(tracked) > 0
    for bundle, record in zip(dispatcher.bundles, records, strict=True):
        messages = [(m.address, m.params) for m in bundle]
        assert messages[-2:] == [("/VMC/Ext/OK", [1]),
                                 ("/VMC/Ext/T", [pytest.approx(record["time"], abs=1e-4)])]
        if tracked_face(record) is None:
            continue
        blend = {params[0]: params[1] for address, params in messages
                 if address == "/VMC/Ext/Blend/Val"}
        assert sorted(blend) == sorted(ARKIT_NAMES)
        assert all(0.0 <= value <= 1.0 for value in blend.values())
        assert [address for address, _ in messages].count("/VMC/Ext/Blend/Apply") == 1
        bones = [params for address, params in messages if address == "/VMC/Ext/Bone/Pos"]
        assert len(bones) == 1 and bones[0][0] == "Head" and len(bones[0]) == 8
        assert np.linalg.norm(bones[0][4:]) == pytest.approx(1.0, abs=1e-5)
        # The avatar stands at the camera facing it: the head is in front, at -z.
        assert -2.0 < bones[0][3] < -0.1


def test_the_avatar_mirrors_the_subject() -> None:
    position, quaternion = avatar_head(rotation(0.0), np.array([0.0, 0.0, 60.0]))
    assert np.allclose(quaternion, [0, 0, 0, 1]) and np.allclose(position, [0, 0, -0.6])
    # The subject turns to their left: the avatar, a mirror image, turns to its right (+x)...
    forward = Rotation.from_quat(avatar_head(rotation(30.0), np.zeros(3))[1]).apply([0, 0, 1])
    assert forward[0] == pytest.approx(0.5)
    # ...and looking down stays looking down.
    forward = Rotation.from_quat(avatar_head(rotation(0, 20.0), np.zeros(3))[1]).apply([0, 0, 1])
    assert forward[1] < -0.3


@pytest.mark.parametrize("address", ["127.0.0.1:0", "127.0.0.1:70000", "host:port", ":39539",
                                     "[::1", "no-such-host.invalid"])
def test_bad_vmc_addresses_are_one_line_errors(recording: Path, address: str) -> None:
    assert_one_line_error(facetrack("replay", str(recording), "--vmc", address), "--vmc")


def live_link_replay(recording: Path, *options: str) -> list[bytes]:
    """The datagrams a replay of RECORDING sends to a Live Link receiver on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        receiver.bind(("127.0.0.1", 0))
        result = subprocess.run([FACETRACK, "replay", str(recording), "--speed", "8",
                                 "--livelink", f"127.0.0.1:{receiver.getsockname()[1]}",
                                 *options], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        receiver.settimeout(1.0)
        datagrams = []
        with contextlib.suppress(TimeoutError):
            while True:
                datagrams.append(receiver.recv(65536))
    return datagrams


def read_live_link(datagram: bytes) -> dict:
    """A Live Link Face datagram, read by its documented layout (network byte order)."""
    fields, at = {"version": datagram[0]}, 1
    for name in ("device", "subject"):
        (length,) = struct.unpack_from("!i", datagram, at)
        fields[name] = datagram[at + 4:at + 4 + length].decode()
        at += 4 + length
    fields["frame"], fields["subframe"], numerator, denominator, count = struct.unpack_from(
        "!ifiiB", datagram, at)
    fields["rate"] = numerator / denominator
    fields["values"] = struct.unpack_from(f"!{count}f", datagram, at + 17)
    assert len(datagram) == at + 17 + 4 * count, "nothing after the values"
    return fields


def test_replay_to_unreal_live_link(recording: Path, tmp_path: Path) -> None:
    """Each tracked frame as the Live Link Face app's datagram, with the values of the same
    frame's Live Link Face CSV row, at the record's time; the subject from --stream, one
    device id for it from run to run."""
    _, records = read_records(recording)
    faces = [(record, face) for record in records if (face := tracked_face(record))]
    packets = [read_live_link(datagram) for datagram in live_link_replay(recording)]
    assert len(packets) == len(faces) > 60
    csv_file = tmp_path / "take.csv"
    assert facetrack("export", str(recording), "--csv", str(csv_file)).returncode == 0
    rows = np.loadtxt(csv_file, delimiter=",", skiprows=1, usecols=range(2, 63))
    assert np.allclose([packet["values"] for packet in packets], rows, atol=2e-6)
    jaw = LLF_COLUMNS.index("JawOpen") - 2
    assert [packet["values"][jaw] for packet in packets] == pytest.approx(
        [face["expression"]["jawOpen"] for _, face in faces], abs=1e-6)
    start = faces[0][0]["time"]
    for packet, (record, _) in zip(packets, faces, strict=True):
        assert (packet["version"], packet["subject"], packet["rate"]) == (6, "facetrack", 60)
        assert (packet["frame"] + packet["subframe"]) / 60 == pytest.approx(
            record["time"] - start, abs=1e-5)
    assert len({packet["device"] for packet in packets}) == 1
    uuid.UUID(packets[0]["device"])
    again = read_live_link(live_link_replay(recording, "--stream", "alice")[0])
    assert again["subject"] == "alice" and again["device"] != packets[0]["device"]
    assert read_live_link(live_link_replay(recording)[0])["device"] == packets[0]["device"]


@pytest.mark.parametrize("address", ["127.0.0.1:0", "host:port", "no-such-host.invalid"])
def test_bad_live_link_addresses_are_one_line_errors(recording: Path, address: str) -> None:
    assert_one_line_error(facetrack("replay", str(recording), "--livelink", address),
                          "--livelink")


def test_csv_in_live_link_face_layout(recording: Path, tmp_path: Path) -> None:
    out = tmp_path / "take.csv"
    result = facetrack("export", str(recording), "--csv", str(out))
    assert result.returncode == 0, result.stderr
    with open(out, newline="") as file:
        rows = list(csv.reader(file))
    # Live Link Face's header: Timecode, BlendShapeCount, 52 shapes, 9 rotations.
    assert rows[0][:4] == ["Timecode", "BlendShapeCount", "EyeBlinkLeft", "EyeLookDownLeft"]
    assert rows[0][16:20] == ["JawForward", "JawRight", "JawLeft", "JawOpen"]
    assert rows[0][23:25] == ["MouthRight", "MouthLeft"]
    assert rows[0][53:] == ["TongueOut", "HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw",
                            "LeftEyePitch", "LeftEyeRoll", "RightEyeYaw", "RightEyePitch",
                            "RightEyeRoll"]
    assert tuple(rows[0]) == LLF_COLUMNS and len(LLF_COLUMNS) == 63
    assert {name.lower() for name in rows[0][2:54]} == {name.lower() for name in ARKIT_NAMES}
    _, records = read_records(recording)
    faces = [(record, face) for record in records if (face := tracked_face(record))]
    assert len(rows) == len(faces) + 1
    values = np.loadtxt(out, delimiter=",", skiprows=1, usecols=range(1, 63))
    assert (values[:, 0] == 61).all()
    expression = [[face["expression"][name] for name in ICT_EXPRESSION_NAMES]
                  for _, face in faces]
    arkit = dict(zip(ARKIT_NAMES, to_arkit(expression).T, strict=True))
    for column, name in enumerate(rows[0][2:54], start=1):
        expected = arkit[name[0].lower() + name[1:]]
        assert np.allclose(values[:, column], expected, atol=1e-5), name
    head = np.radians(angles(np.array([face["rotation"] for _, face in faces])))
    assert np.allclose(values[:, 53:56], head, atol=1e-5)
    start = faces[0][0]["time"]
    assert [row[0] for row in rows[1:]] == [timecode(record["time"] - start)
                                             for record, _ in faces]


def test_exports_to_standard_output(recording: Path, installed_model: Path,
                                    tmp_path: Path) -> None:
    """--csv - and --gltf -: the very bytes the files get, on standard output, to pipe on; a
    reader that stops early ends the export quietly (exit 0), as `head` expects."""
    for option, name in (("--csv", "take.csv"), ("--gltf", "take.glb")):
        facetrack_ok("export", str(recording), option, str(tmp_path / name),
                     "--model", str(installed_model))
        piped = subprocess.run([FACETRACK, "export", str(recording), option, "-", "--model",
                                str(installed_model)], capture_output=True, timeout=120)
        assert piped.returncode == 0, piped.stderr
        assert piped.stdout == (tmp_path / name).read_bytes()
        assert piped.stderr.decode().endswith("frames to standard output\n")
    process = subprocess.Popen([FACETRACK, "export", str(recording), "--gltf", "-", "--model",
                                str(installed_model)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    assert process.stdout.read(4) == b"glTF"
    process.stdout.close()  # long before the 1 MB head is all written
    assert process.wait(timeout=120) == 0
    assert process.stderr.read() == b""
    assert not (Path.cwd() / "-").exists()


def test_a_recording_cut_mid_line_exports_its_whole_frames(recording: Path,
                                                           tmp_path: Path) -> None:
    """A recording whose writer stopped mid-line (a full disk, a copy of a live run): export
    keeps the frames before the cut and warns (exit 1); a bad line elsewhere is still refused."""
    text = recording.read_bytes()
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(text[:len(text) * 2 // 3])
    whole = cut.read_bytes().count(b"\n") - 1  # frame lines before the cut one
    result = facetrack("export", str(cut), "--csv", str(tmp_path / "cut.csv"))
    assert result.returncode == 1, result.stderr
    assert f"warning: {cut}: its last line ({whole + 2}) is cut short" in result.stderr
    _, records = read_records(recording)
    tracked = sum(tracked_face(record) is not None for record in records[:whole])
    assert tracked > 0
    assert len((tmp_path / "cut.csv").read_text().splitlines()) == tracked + 1
    lines = text.splitlines(keepends=True)
    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(b"".join(lines[:5] + [lines[5][:40] + b"\n"] + lines[6:]))
    assert_one_line_error(facetrack("export", str(broken), "--csv", str(tmp_path / "b.csv")),
                          "not a facetrack recording: line 6")


def test_timecodes_count_frames_at_60_fps() -> None:
    assert timecode(0.0) == "00:00:00:00.000"
    assert timecode(3723.5) == "01:02:03:30.000"
    assert timecode(1.0 / 30) == "00:00:00:02.000"
    assert timecode(59.999999) == "00:01:00:00.000"


def test_gltf_passes_the_khronos_validator_and_loads(recording: Path, installed_model: Path,
                                                     tmp_path: Path) -> None:
    out = tmp_path / "take.glb"
    result = facetrack("export", str(recording), "--gltf", str(out), "--model",
                       str(installed_model))
    assert result.returncode == 0, result.stderr
    header, records = read_records(recording)
    frames = sum(tracked_face(record) is not None for record in records)

    scene = trimesh.load(out)
    (mesh,) = scene.geometry.values()
    assert len(mesh.vertices) > 10_000 and len(mesh.faces) > 20_000
    assert 0.15 < np.ptp(mesh.vertices[:, 1]) < 0.5  # a head, in metres

    gltf = json.loads(out.read_bytes()[20:20 + int.from_bytes(out.read_bytes()[12:16],
                                                              "little")])
    target_names = gltf["meshes"][0]["extras"]["targetNames"]
    assert target_names == list(ICT_EXPRESSION_NAMES)
    assert len(gltf["meshes"][0]["primitives"][0]["targets"]) == 53
    (animation,) = gltf["animations"]
    accessors = gltf["accessors"]
    counts = {channel["target"]["path"]: accessors[animation["samplers"][channel["sampler"]]
                                                   ["output"]]["count"]
              for channel in animation["channels"]}
    assert counts == {"weights": 53 * frames, "rotation": frames, "translation": frames}
    assert accessors[animation["samplers"][0]["input"]]["count"] == frames

    if shutil.which("node") is None:
        pytest.skip("node not installed: the Khronos glTF validator runs on node")
    if not VALIDATOR.is_dir():
        pytest.skip(f"gltf-validator not installed at {VALIDATOR}: "
                    "npm install --prefix .venv/node gltf-validator")
    checked = subprocess.run(["node", "-e", VALIDATE_JS, str(VALIDATOR), str(out)],
                             capture_output=True, text=True, timeout=120,
                             env={**os.environ, "NODE_NO_WARNINGS": "1"})
    assert checked.returncode == 0, checked.stderr
    report = json.loads(checked.stdout)
    assert report["issues"]["numErrors"] == 0, report["issues"]["messages"]
    assert report["info"]["hasMorphTargets"] and report["info"]["animationCount"] == 1


def test_bad_exports_are_one_line_errors(recording: Path, footage_dir: Path,
                                         tmp_path: Path) -> None:
    assert_one_line_error(facetrack("export", str(tmp_path / "missing.jsonl"), "--csv",
                                    str(tmp_path / "a.csv")), "missing.jsonl")
    assert_one_line_error(facetrack("export", str(footage_dir / "single_face.mp4"), "--csv",
                                    str(tmp_path / "a.csv")), "not a facetrack recording")
    assert_one_line_error(facetrack("export", str(recording), "--csv",
                                    str(tmp_path / "no" / "dir" / "a.csv")), "cannot write")
    assert_one_line_error(facetrack("export", str(recording), "--gltf",
                                    str(tmp_path / "no" / "dir" / "a.glb")), "cannot write")
    assert_one_line_error(facetrack("export", str(recording), "--csv", str(tmp_path / "a.csv"),
                                    "--track", "99"), "no tracked face of track 99")
    assert_one_line_error(facetrack("export", str(recording)), "nothing to export")
    before = recording.read_bytes()
    assert_one_line_error(facetrack("export", str(recording), "--csv", str(recording)),
                          "the recording and --csv both name")
    assert recording.read_bytes() == before
    header = recording.read_text().splitlines()[0]
    empty = tmp_path / "empty.jsonl"
    empty.write_text(header + '\n{"frame": 0, "time": 0.0, "faces": []}\n')
    assert_one_line_error(facetrack("export", str(empty), "--csv", str(tmp_path / "a.csv")),
                          "no tracked face")
