"""Annotated video output: H.264 in any container FFmpeg writes, with the source's sound,
encoded on its own thread so the tracking loop only pays for a queue put."""

from __future__ import annotations

import queue
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from streams.audio import AudioCopy
from streams.errors import SinkError
from tracker.arguments import check_writable

TIME_BASE = Fraction(1, 1000)  # pts in milliseconds: frame times come from the source


class VideoWriter:
    """Encodes RGB frames with libx264 at their own timestamps.

    ``block=True`` (files) waits when the encoder falls behind, so no frame is missing;
    ``block=False`` (live sources) drops the frame instead and counts it in ``dropped``.
    The source's sound (`add_audio`) is muxed in as far as the frames written go.
    """

    def __init__(self, path: str | Path, fps: float | None = None, *, block: bool = True,
                 crf: int = 23, preset: str = "veryfast") -> None:
        self.path = Path(path)
        self.fps = fps or 30.0
        self.block = block
        self.dropped = 0
        self.written = 0
        self._queue: queue.Queue = queue.Queue(maxsize=16)
        self._error: Exception | None = None
        # FFmpeg opens (and empties) the file only at the first packet: find out now whether
        # it can, not mid-run, and leave an earlier video of that name whole until then.
        check_writable(self.path)
        try:
            self._container = av.open(str(self.path), "w")
        except (av.FFmpegError, ValueError) as error:  # ValueError: an unknown extension
            reason = ("FFmpeg tells the container from the name's end: use .mp4, .mkv, .mov "
                      "or .avi" if isinstance(error, ValueError) else error)
            raise SinkError(f"cannot write video {self.path}: {reason}") from None
        try:  # the size is set by the first frame
            self._stream = self._container.add_stream(
                "libx264", rate=Fraction(self.fps).limit_denominator(1001),
                options={"crf": str(crf), "preset": preset})
        except ValueError as error:  # a container without H.264: .webm, .gif
            self._container.close()
            raise SinkError(f"cannot write video {self.path}: {error}; use .mp4, .mkv, .mov "
                            "or .avi") from None
        self._stream.pix_fmt = "yuv420p"
        self._stream.codec_context.time_base = TIME_BASE
        self._audio: AudioCopy | None = None
        self._last_pts = -1
        self._thread = threading.Thread(target=self._encode_loop, name="video-writer",
                                        daemon=True)
        self._thread.start()

    def add_audio(self, audio: AudioCopy) -> None:
        """Carry AUDIO into the video; before the first frame is written."""
        audio.add_to(self._container)
        self._audio = audio

    def write(self, image: np.ndarray, time: float) -> None:
        """Queue one RGB frame shown at ``time`` seconds; raises if encoding has failed."""
        if self._error:
            raise SinkError(f"cannot write video {self.path}: {self._error}")
        try:
            self._queue.put((image, time), block=self.block)
        except queue.Full:
            self.dropped += 1

    def close(self) -> None:
        """Encode what is queued, flush the encoder and finish the file (idempotent)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._container is not None:
            try:
                if self.written:
                    self._container.mux(self._stream.encode(None))
                    if self._audio:  # up to the end of the last frame
                        self._audio.finish(float(self._last_pts * TIME_BASE) + 1 / self.fps)
                self._container.close()
            except (OSError, av.FFmpegError) as error:
                self._error = self._error or error
            finally:
                self._container = None
                if self._audio:
                    self._audio.close()
        if self._error:
            raise SinkError(f"cannot write video {self.path}: {self._error}")

    def _encode_loop(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error:
                continue  # keep draining so a blocked producer never hangs
            try:
                self._encode(*item)
            except (OSError, av.FFmpegError, ValueError) as error:
                self._error = error

    def _encode(self, image: np.ndarray, time: float) -> None:
        # yuv420p needs even sizes: drop a trailing odd row or column.
        image = image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2]
        if not self.written:
            self._stream.width, self._stream.height = image.shape[1], image.shape[0]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        self._last_pts = max(round(time / TIME_BASE), self._last_pts + 1)
        frame.pts, frame.time_base = self._last_pts, TIME_BASE
        self._container.mux(self._stream.encode(frame))
        if self._audio:
            self._audio.until(time)
        self.written += 1

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
