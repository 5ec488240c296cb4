"""Videos written and served for the tests: H.264 files and buffers, and live streams over
TCP on 127.0.0.1."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import islice
from pathlib import Path

import av
import cv2
import numpy as np


def write_video(
    target: str | Path | io.BytesIO,
    images: list[np.ndarray],
    *,
    fps: int = 30,
    format: str | None = None,
    rotation: int = 0,
    options: dict[str, str] | None = None,
    sound: str | Path | None = None,
    sound_codec: str = "aac",
) -> None:
    """Encode RGB ``images`` as H.264 into ``target`` (a path, or a buffer with ``format``)
    with libx264's OPTIONS (default: the veryfast preset); with the first seconds of SOUND's
    audio, as long as the images last, encoded with SOUND_CODEC."""
    with av.open(target, "w", format=format) as container:
        stream = container.add_stream("libx264", rate=fps,
                                      options=options or {"preset": "veryfast"})
        stream.height, stream.width = images[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        if sound:
            _encode_sound(container, sound, sound_codec, len(images) / fps)
        for image in images:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def _encode_sound(container: av.container.OutputContainer, sound: str | Path, codec: str,
                  seconds: float) -> None:
    with av.open(str(sound)) as source:
        track = source.streams.audio[0]
        stream = container.add_stream(codec, rate=track.rate, layout=track.layout)
        samples = 0
        for frame in source.decode(track):
            if samples >= seconds * track.rate:
                break
            frame.pts = samples  # from 0, in samples: the source's may start below 0
            frame.time_base = Fraction(1, track.rate)
            samples += frame.samples
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def mpegts(images: list[np.ndarray], options: dict[str, str] | None = None,
           sound: str | Path | None = None) -> bytes:
    """RGB ``images`` as an H.264 MPEG-TS stream, the format live network sources send (with
    SOUND's audio as AAC, as `write_video`)."""
    buffer = io.BytesIO()
    write_video(buffer, images, format="mpegts", options=options, sound=sound)
    return buffer.getvalue()


def decoded(path: str | Path, count: int | None = None) -> list[np.ndarray]:
    """The first COUNT frames of the video at PATH (all of them by default), as RGB arrays."""
    with av.open(str(path)) as container:
        frames = islice(container.decode(video=0), count)
        return [frame.to_ndarray(format="rgb24") for frame in frames]


def sound(path: str | Path) -> tuple[str, float, float, list[bytes]] | None:
    """The first audio track of the video at PATH: its codec, when it starts and ends in
    seconds, and its packets; None without one."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        track = container.streams.audio[0]
        packets = [p for p in container.demux(track) if p.pts is not None]
        start = float(packets[0].pts * track.time_base)
        end = float((packets[-1].pts + packets[-1].duration) * track.time_base)
        return track.codec.name, start, end, [bytes(p) for p in packets]


def video_end(path: str | Path) -> float:
    """When the last frame of the video at PATH ends, in seconds."""
    with av.open(str(path)) as container:
        track = container.streams.video[0]
        return float(max(p.pts + p.duration for p in container.demux(track) if p.pts is not None)
                     * track.time_base)


@contextmanager
def paced_tcp_stream(data: bytes, seconds: float, cut: float | None = None,
                     late: float = 0.0) -> Iterator[str]:
    """Send ``data`` to one client over TCP, spread evenly over ``seconds``: a live stream.
    With ``cut``, the first client gets only that share of it before the connection drops, and
    the next one all of it: a stream that broke off and came back. With ``late``, connections
    are refused for that many seconds first: a camera still booting."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))  # the port is ours; until listen(), connecting is refused
    sends = [data] if cut is None else [data[: int(len(data) * cut)], data]

    if not late:
        listener.listen()  # before the address is handed out, or a quick client is refused

    def send() -> None:
        if late:
            time.sleep(late)
            listener.listen()
        for part in sends:
            connection, _ = listener.accept()
            with connection, suppress(OSError):  # the client may hang up first
                chunks = round(48 * len(part) / len(data))
                for k in range(chunks):
                    connection.sendall(
                        part[k * len(part) // chunks : (k + 1) * len(part) // chunks])
                    time.sleep(seconds / 48)

    with _running(send, listener.close, late + seconds * len(sends) + 5):
        yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"


@contextmanager
def paced_udp_stream(data: bytes, seconds: float) -> Iterator[str]:
    """Send ``data`` over UDP to a port of 127.0.0.1 in datagrams of seven MPEG-TS packets,
    spread evenly over ``seconds``, again and again until the block ends: a camera or encoder
    that streams whether anyone listens or not, so a receiver joins it mid-way."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    size = 7 * 188
    datagrams = [data[k:k + size] for k in range(0, len(data), size)]
    stop = threading.Event()

    def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            while not stop.is_set():
                started = time.monotonic()
                for k, datagram in enumerate(datagrams):
                    sender.sendto(datagram, ("127.0.0.1", port))
                    time.sleep(max(0.0, started + seconds * k / len(datagrams)
                                   - time.monotonic()))

    with _running(send, stop.set, seconds + 5):
        yield f"udp://127.0.0.1:{port}"


@contextmanager
def mjpeg_http_stream(images: list[np.ndarray], fps: float) -> Iterator[str]:
    """Serve RGB ``images`` as JPEGs in one multipart HTTP response, at FPS, as phone IP-camera
    apps and small network cameras stream (``multipart/x-mixed-replace``)."""
    jpegs = [cv2.imencode(".jpg", image[:, :, ::-1])[1].tobytes() for image in images]

    class Camera(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            with suppress(OSError):  # the client may hang up first
                for jpeg in jpegs:
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                     + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                    time.sleep(1 / fps)

        def log_message(self, *args: object) -> None:
            """Quiet: a test's output is its own."""

    with ThreadingHTTPServer(("127.0.0.1", 0), Camera) as server, _running(
            server.serve_forever, server.shutdown, 5):
        yield f"http://127.0.0.1:{server.server_address[1]}/stream"


@contextmanager
def _running(work: Callable[[], None], stop: Callable[[], None], wait: float) -> Iterator[None]:
    """WORK on a thread of its own while the block runs; then STOP, and WAIT seconds at most
    for the thread to end."""
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop()
        thread.join(wait)
