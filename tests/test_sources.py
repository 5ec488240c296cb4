"""Sources on real inputs: the footage, files written here, and streams served on 127.0.0.1."""

from __future__ import annotations

import argparse
import functools
import shutil
import signal
import socket
import subprocess
import threading
import time
import wave
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from streams.errors import SourceError
from streams.prefetch import Prefetch
from streams.recording import read_records
from streams.sources import CameraSource, CaptureMode, list_cameras, open_source

from cli_helpers import FACETRACK
from stream_helpers import (
    decoded,
    mjpeg_http_stream,
    mpegts,
    paced_tcp_stream,
    paced_udp_stream,
    write_video,
)

STREAM_FRAMES = 72  # single_face.mp4, re-encoded as MPEG-TS for the network tests


def read_all(spec: str, **options: float) -> tuple[list, list[str], int]:
    """Frames, warnings and drop count of a whole source."""
    with open_source(spec, **options) as source:
        return list(source), source.warnings, source.dropped


def gradient(count: int, width: int = 64, height: int = 48) -> list[np.ndarray]:
    """Small synthetic frames that differ from one to the next."""
    return [np.full((height, width, 3), 8 * k % 256, np.uint8) for k in range(count)]


@pytest.fixture(scope="module")
def mpegts_bytes(footage_dir: Path) -> bytes:
    """single_face.mp4 re-encoded as an MPEG-TS stream, the format live network sources send."""
    return mpegts(decoded(footage_dir / "single_face.mp4"))


@pytest.fixture
def http_footage(footage_dir: Path) -> Iterator[str]:
    """Base URL of the footage folder served by a local web server."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(footage_dir))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# Video files


def test_h264_file_yields_every_frame_with_pts_times(footage_dir: Path) -> None:
    spec = str(footage_dir / "WolfgangLanger_Pexels.mp4")
    with open_source(spec) as source:
        assert (source.live, source.length, source.size) == (False, 472, (640, 360))
        assert source.fps == pytest.approx(23.976, abs=1e-3)
        frames = list(source)
        assert (source.dropped, source.warnings) == (0, [])
    assert [frame.index for frame in frames] == list(range(472))
    assert {frame.source for frame in frames} == {spec}
    assert frames[0].image.shape == (360, 640, 3) and frames[0].image.dtype == np.uint8
    times = np.array([frame.time for frame in frames])
    assert times[0] == pytest.approx(0.0)
    np.testing.assert_allclose(np.diff(times), 1001 / 24000, atol=1e-4)


def test_hevc_mov_decodes(footage_dir: Path) -> None:
    frames, warnings, _ = read_all(str(footage_dir / "face_noface.mov"))
    assert (len(frames), frames[0].size, warnings) == (169, (960, 540), [])
    assert np.all(np.diff([frame.time for frame in frames]) > 0)


def test_edit_list_count_matches_what_players_show(footage_dir: Path) -> None:
    # no_face.mp4 stores 98 frames; its MP4 edit list hides 3 of them.
    with open_source(str(footage_dir / "no_face.mp4")) as source:
        assert source.length == 95
        assert len(list(source)) == 95
        assert source.warnings == []


def test_display_rotation_is_applied(tmp_path: Path) -> None:
    image = np.zeros((40, 80, 3), np.uint8)
    image[:10, :10] = 255  # top-left corner as stored
    write_video(tmp_path / "phone.mp4", [image] * 3, rotation=90)
    with open_source(str(tmp_path / "phone.mp4")) as source:
        assert source.size == (40, 80)
        shown = next(iter(source)).image
    assert shown.shape == (80, 40, 3)
    assert shown[-5, 5].min() > 200 and shown[5, 5].max() < 50  # turned counterclockwise


def test_truncated_file_yields_what_decodes_and_warns(footage_dir: Path, tmp_path: Path) -> None:
    # WolfgangLanger_Pexels.mp4 has its moov atom first, so its first 60% still opens.
    data = (footage_dir / "WolfgangLanger_Pexels.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 6 // 10])
    frames, warnings, _ = read_all(str(cut))
    assert 0 < len(frames) < 472
    assert len(warnings) == 1 and warnings[0].startswith(f"decoding stopped at frame {len(frames)}")


def test_realtime_paces_a_file_at_its_frame_rate(tmp_path: Path) -> None:
    write_video(tmp_path / "second.mp4", gradient(30), fps=30)
    started = time.monotonic()
    frames, _, _ = read_all(str(tmp_path / "second.mp4"), realtime=True)
    elapsed = time.monotonic() - started
    assert len(frames) == 30
    assert 0.9 <= elapsed < 10


# Errors the user can cause


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="^no such file: .*nothing.mp4$"):
        open_source(str(tmp_path / "nothing.mp4"))


def test_text_file_named_mp4(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("not a video\n" * 100)
    with pytest.raises(SourceError, match=f"^cannot open {path} as video: "):
        open_source(str(path))


def test_file_without_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "sound.wav"
    with wave.open(str(path), "wb") as sound:
        sound.setnchannels(1)
        sound.setsampwidth(2)
        sound.setframerate(8000)
        sound.writeframes(bytes(1600))
    with pytest.raises(SourceError, match="^no video stream in "):
        open_source(str(path))


def test_camera_that_does_not_exist() -> None:
    started = time.monotonic()
    with pytest.raises(SourceError, match="^cannot open camera 99$"):
        open_source("99")
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("served", [False, True], ids=["file", "http"])
def test_a_section_of_a_video(footage_dir: Path, http_footage: str, served: bool) -> None:
    """--start 5 --end 7: exactly the frames a full decode has from 5 s up to 7 s (the seek
    lands on a keyframe before), their times counted from 5 s; also over HTTP, where the seek
    is a range request."""
    name = "WolfgangLanger_Pexels.mp4"
    with av.open(str(footage_dir / name)) as container:
        everything = [(float(frame.pts * frame.time_base), frame.to_ndarray(format="rgb24"))
                      for frame in container.decode(video=0)]
    wanted = [(time, image) for time, image in everything if 5.0 <= time < 7.0]
    spec = f"{http_footage}/{name}" if served else str(footage_dir / name)
    with open_source(spec, start=5.0, end=7.0) as source:
        frames = list(source)
        assert source.length == len(wanted) == 48 and source.origin == 5.0
    assert [frame.index for frame in frames] == list(range(48))
    assert [frame.time for frame in frames] == pytest.approx([t - 5.0 for t, _ in wanted])
    assert all((frame.image == image).all()
               for frame, (_, image) in zip(frames, wanted, strict=True))
    with open_source(spec, start=19.0) as source:  # to the end
        assert len(list(source)) == sum(time >= 19.0 for time, _ in everything)


@pytest.mark.parametrize(("spec", "options", "words"), [
    ("WolfgangLanger_Pexels.mp4", {"start": 30.0}, "no frames from 30 s on"),
    ("single_face.jpg", {"start": 1.0}, "need a video file"),
    ("single_face.jpg", {"end": 1.0}, "need a video file"),
])
def test_a_section_that_cannot_be(footage_dir: Path, spec: str, options: dict,
                                  words: str) -> None:
    with pytest.raises(SourceError, match=words):
        open_source(str(footage_dir / spec), **options)


@pytest.mark.parametrize(("text", "mode"), [
    ("1280x720@60", CaptureMode(1280, 720, 60.0)), ("1920x1080", CaptureMode(1920, 1080)),
    ("@29.97", CaptureMode(fps=29.97)), ("0x720", None), ("@0", None), ("720p", None),
    ("", None), ("1280x720@", None),
])
def test_capture_modes(text: str, mode: CaptureMode | None) -> None:
    if mode is None:
        with pytest.raises(argparse.ArgumentTypeError, match="not a capture mode"):
            CaptureMode.parse(text)
    else:
        assert CaptureMode.parse(text) == mode


def test_a_camera_that_cannot_give_the_mode_says_what_it_gives(
        footage_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """OpenCV opens a video file as it opens a camera device, and a file refuses every mode:
    the warning names what is asked and what comes, and frames come as they are."""
    with CameraSource(str(footage_dir / "single_face.mp4"), CaptureMode(1280, 720, 60)) as source:
        assert source.size == (640, 360)
        assert next(iter(source)).image.shape == (360, 640, 3)
    assert "gives 640x360@30, not the 1280x720@60 asked for" in caplog.text
    with pytest.raises(SourceError, match="not a camera"):
        open_source(str(footage_dir / "single_face.mp4"), capture=CaptureMode(1280, 720))


def test_a_camera_that_stops_is_opened_again(footage_dir: Path, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """A camera that stops delivering (a file opened as OpenCV opens a device: its end) is
    opened again, and its frames go on from where they stopped, numbered on."""
    camera = shutil.copy(footage_dir / "single_face.mp4", tmp_path / "camera.mp4")
    first = decoded(camera, 1)[0]
    frames = []
    with CameraSource(str(camera), reconnect=5.0) as source:
        for frame in source:
            frames.append(frame)
            if frame.index >= 100:
                break
    assert "stopped delivering at frame 72; trying to open it again for 5 s" in caplog.text
    assert "reopened" in caplog.text
    indices = [frame.index for frame in frames]
    assert indices == sorted(indices) and indices[-1] >= 100
    again = next(frame for frame in frames if frame.index >= 72)
    if again.index == 72:  # a live source may drop a frame to a slow reader
        assert (again.image == first).all()


def test_a_camera_that_does_not_come_back_ends_with_a_warning(footage_dir: Path,
                                                             tmp_path: Path) -> None:
    camera = shutil.copy(footage_dir / "single_face.mp4", tmp_path / "camera.mp4")
    with CameraSource(str(camera), reconnect=1.0) as source:
        Path(camera).unlink()  # unplugged: what is open still reads, nothing opens again
        started = time.monotonic()
        frames = list(source)
        waited = time.monotonic() - started
    assert len(frames) > 0 and frames[-1].index < 72 and waited >= 1.0
    assert source.warnings == ["camera " + str(camera) + " stopped delivering at frame 72, and "
                               "it did not come back within 1 s"]


def test_frames_over_the_max_size_are_scaled_down(footage_dir: Path, tmp_path: Path) -> None:
    """A clip at twice the footage's size, read with max_size 640, is the footage again (to
    within what two scalings blur); a photo and a camera are scaled the same way."""
    originals = decoded(footage_dir / "single_face.mp4", 10)
    write_video(tmp_path / "large.mp4", [cv2.resize(image, (1280, 720)) for image in originals],
                options={"crf": "12"})
    frames, _, _ = read_all(str(tmp_path / "large.mp4"), max_size=640)
    assert [frame.size for frame in frames] == [(640, 360)] * 10
    assert np.mean([np.abs(frame.image.astype(int) - image).mean()
                    for frame, image in zip(frames, originals, strict=True)]) < 3.0
    (photo,), _, _ = read_all(str(footage_dir / "multi_face.jpg"), max_size=500)
    assert photo.size == (500, 334)
    (same,), _, _ = read_all(str(footage_dir / "multi_face.jpg"), max_size=1000)
    assert same.size == (1000, 667)
    with CameraSource(str(tmp_path / "large.mp4"), max_size=640) as camera:
        assert camera.size == (640, 360) and next(iter(camera)).size == (640, 360)


def test_list_cameras_returns_lines_quickly() -> None:
    started = time.monotonic()
    cameras = list_cameras()
    assert time.monotonic() - started < 10
    assert all(isinstance(line, str) for line in cameras)  # [] on a machine without cameras


def test_iterating_a_closed_source_is_an_error(footage_dir: Path) -> None:
    source = open_source(str(footage_dir / "single_face.mp4"))
    source.close()
    source.close()
    with pytest.raises(ValueError, match="closed"):
        next(iter(source))


# Images


@pytest.fixture
def image_folder(footage_dir: Path, tmp_path: Path) -> Path:
    """frame_1.png, frame_2.png, frame_10.jpg from the footage, a broken jpg and a text file."""
    face = cv2.imread(str(footage_dir / "single_face.jpg"))
    crowd = cv2.imread(str(footage_dir / "multi_face.jpg"))
    cv2.imwrite(str(tmp_path / "frame_10.jpg"), face)
    cv2.imwrite(str(tmp_path / "frame_2.png"), crowd)
    cv2.imwrite(str(tmp_path / "frame_1.png"), face)
    (tmp_path / "frame_3.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_single_image(footage_dir: Path) -> None:
    with open_source(str(footage_dir / "single_face.jpg")) as source:
        assert (source.live, source.fps, source.length) == (False, None, 1)
        (frame,) = list(source)
    assert (frame.index, frame.time, frame.image.shape) == (0, 0.0, (562, 572, 3))


def test_folder_in_natural_order_skipping_unreadable(image_folder: Path) -> None:
    with open_source(str(image_folder)) as source:
        assert source.length == 4
        frames = list(source)
        assert source.warnings == [f"skipped unreadable image {image_folder / 'frame_3.jpg'}"]
    assert [(frame.index, frame.time) for frame in frames] == [(0, 0.0), (1, 1.0), (3, 3.0)]
    assert [frame.size for frame in frames] == [(572, 562), (1000, 667), (572, 562)]
    stored = cv2.imread(str(image_folder / "frame_1.png"))
    np.testing.assert_array_equal(frames[0].image, stored[:, :, ::-1])  # RGB, not BGR


def test_videos_beside_images_are_named_not_dropped_in_silence(
        image_folder: Path, footage_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A phone's camera folder: photos and videos. The photos are run as one sequence, and a
    warning says which videos were left out and how to run them."""
    for name in ("VID_1.mp4", "VID_2.MOV"):
        shutil.copy(footage_dir / "single_face.mp4", image_folder / name)
    for spec in (str(image_folder), str(image_folder / "*")):
        caplog.clear()
        with open_source(spec) as source:
            assert source.stills and source.length == 4
        assert caplog.messages == [f"{spec}: running its images (4); 2 videos there left out "
                                   f"(--source '{image_folder / '*.mp4'}' runs those)"]
    caplog.clear()
    with open_source(str(image_folder / "*.png")) as source:
        assert source.length == 2 and not caplog.messages


def test_glob(image_folder: Path) -> None:
    frames, warnings, _ = read_all(str(image_folder / "*.png"))
    assert ([frame.size for frame in frames], warnings) == ([(572, 562), (1000, 667)], [])


def test_folder_without_images_and_glob_matching_nothing(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(SourceError, match="^no images in folder "):
        open_source(str(tmp_path))
    with pytest.raises(SourceError, match="^no images match "):
        open_source(str(tmp_path / "*.jpg"))


# Network streams


def test_live_tcp_stream_keeps_the_newest_frame(mpegts_bytes: bytes) -> None:
    with (
        paced_tcp_stream(mpegts_bytes, seconds=STREAM_FRAMES / 30) as url,
        open_source(url, timeout=5) as source,
    ):
        assert source.live and source.length is None and source.size == (640, 360)
        frames = []
        for frame in source:
            frames.append(frame)
            time.sleep(0.1)  # a consumer at 10 fps behind a 30 fps stream
        dropped = source.dropped
    assert {frame.size for frame in frames} == {(640, 360)}
    assert dropped > 0 and len(frames) + dropped == STREAM_FRAMES
    assert np.all(np.diff([frame.index for frame in frames]) > 0)
    assert np.all(np.diff([frame.time for frame in frames]) > 0)


def test_a_udp_stream_is_joined_mid_way(footage_dir: Path) -> None:
    """MPEG-TS over UDP, as cameras and encoders send it whether anyone listens or not: the
    source joins a stream under way and decodes from its next keyframe on."""
    data = mpegts(decoded(footage_dir / "single_face.mp4"), {"preset": "veryfast", "g": "30"})
    with paced_udp_stream(data, seconds=STREAM_FRAMES / 30) as url:
        time.sleep(1.0)  # under way before anyone listens
        with open_source(url, timeout=5) as source:
            assert source.live and source.length is None and source.size == (640, 360)
            frames = [frame for _, frame in zip(range(30), source, strict=False)]
    assert len(frames) == 30 and {frame.size for frame in frames} == {(640, 360)}
    assert np.all(np.diff([frame.time for frame in frames]) > 0)


def test_an_mjpeg_http_stream_is_live(footage_dir: Path) -> None:
    """JPEGs in one multipart HTTP response, as phone IP-camera apps and small network cameras
    send them: a live source, whose end is a warning."""
    images = decoded(footage_dir / "single_face.mp4", 40)
    with mjpeg_http_stream(images, fps=30) as url, open_source(url, timeout=5) as source:
        assert source.live and source.length is None and source.size == (640, 360)
        frames = list(source)
        warnings = source.warnings
    assert 30 <= len(frames) + source.dropped <= 40
    assert np.all(np.diff([frame.index for frame in frames]) > 0)
    assert warnings and warnings[0].startswith("decoding stopped at frame")


def test_live_stream_that_drops_is_reopened(mpegts_bytes: bytes) -> None:
    """The stream breaks off at 60% and comes back: reading goes on with the next frame
    number; when it ends and does not come back within ``reconnect`` s, the source ends with
    a warning that says so."""
    with (
        paced_tcp_stream(mpegts_bytes, seconds=STREAM_FRAMES / 30, cut=0.6) as url,
        open_source(url, timeout=5, reconnect=2) as source,
    ):
        frames = list(source)
        waited = time.monotonic() - frames[-1].time  # live frames' times are the clock's
        warnings, dropped = source.warnings, source.dropped
    assert STREAM_FRAMES + 10 < len(frames) + dropped < 2 * STREAM_FRAMES  # both connections'
    assert [frame.index for frame in frames] == sorted({frame.index for frame in frames})
    assert np.all(np.diff([frame.time for frame in frames]) > 0)
    assert warnings == [f"the stream ended at frame {frames[-1].index + 1}, and it did not "
                        "come back within 2 s"]
    assert 2 <= waited < 5


def test_a_run_goes_on_across_a_dropped_stream_and_stops_at_ctrl_c(mpegts_bytes: bytes,
                                                                   tmp_path: Path) -> None:
    """`facetrack run` on a live stream that breaks off and comes back records both parts; when
    it ends for good, Ctrl-C stops the run while it waits to reconnect (`--reconnect` 60 s)."""
    record, log = tmp_path / "live.jsonl", tmp_path / "stderr.txt"
    with (
        paced_tcp_stream(mpegts_bytes, seconds=STREAM_FRAMES / 30, cut=0.6) as url,
        log.open("w") as stderr,
    ):
        process = subprocess.Popen([FACETRACK, "run", "--source", url, "--record", str(record),
                                    "--reconnect", "60", "--quiet"], stderr=stderr)
        deadline = time.monotonic() + 60
        while log.read_text().count("trying to reconnect") < 2:  # the second part ended too
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        time.sleep(1)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 130, log.read_text()
    assert "reconnected" in log.read_text() and "Traceback" not in log.read_text()
    _, frames = read_records(record)
    numbers = [frame["frame"] for frame in frames]
    assert numbers == sorted(set(numbers)) and numbers[-1] > STREAM_FRAMES  # both parts
    assert sum(any(f["status"] == "tracking" for f in frame["faces"])
               for frame in frames if frame["frame"] > STREAM_FRAMES * 0.6) > 20


def test_file_over_http_is_read_like_a_file(http_footage: str) -> None:
    with open_source(f"{http_footage}/WolfgangLanger_Pexels.mp4", timeout=5) as source:
        assert (source.live, source.length, source.size) == (False, 472, (640, 360))
        frames = list(source)
        assert (len(frames), source.dropped, source.warnings) == (472, 0, [])
    assert frames[-1].time == pytest.approx(471 * 1001 / 24000)


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_url_that_does_not_answer(scheme: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections, never replies
        url = f"{scheme}://127.0.0.1:{silent.getsockname()[1]}/stream"
        started = time.monotonic()
        with pytest.raises(SourceError, match=f"^no answer from {url} within 1 s$"):
            open_source(url, timeout=1)
    assert time.monotonic() - started < 4


def test_url_that_refuses() -> None:
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    with pytest.raises(SourceError, match="^cannot open tcp://127.0.0.1:.*: Connection refused"):
        open_source(f"tcp://127.0.0.1:{port}", timeout=1)


def test_a_stream_not_up_yet_is_waited_for_within_reconnect(mpegts_bytes: bytes) -> None:
    """A network camera that boots after the tracker starts: refused for 2 s, then read from
    its first frame; one that never comes up is an error once `reconnect` has passed."""
    started = time.monotonic()
    with (
        paced_tcp_stream(mpegts_bytes, seconds=STREAM_FRAMES / 30, late=2) as url,
        open_source(url, timeout=5, reconnect=3.5) as source,
    ):
        opened = time.monotonic() - started
        frames = list(source)
    assert 2 <= opened < 5 and frames[0].index == 0 and len(frames) > STREAM_FRAMES // 2
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(SourceError, match="Connection refused, still after 1.5 s of tries$"):
        open_source(f"tcp://127.0.0.1:{port}", timeout=1, reconnect=1.5)
    assert 1.5 <= time.monotonic() - started < 3


# Background reading


def test_prefetch_raises_after_the_items_before_the_error() -> None:
    def items() -> Iterator[int]:
        yield from range(3)
        raise RuntimeError("broken input")

    received = []
    with pytest.raises(RuntimeError, match="broken input"):
        for item in Prefetch(items()):
            received.append(item)
    assert received == [0, 1, 2]


def test_prefetch_close_stops_and_releases_a_waiting_producer() -> None:
    released = threading.Event()

    def items() -> Iterator[int]:
        try:
            yield from range(1000)
        finally:
            released.set()

    prefetch = Prefetch(items(), depth=2)
    assert next(prefetch) == 0
    prefetch.close()
    assert released.is_set()
