"""Frame sources: video files and network streams (PyAV), cameras (OpenCV), still images.

``open_source(spec)`` picks the kind from the spec and every kind yields ``Frame`` objects the
same way: read in a background thread (``Prefetch``), so decoding overlaps tracking. Files hand
over every frame; live sources (cameras, network streams) hand over the newest one and count the
frames they had to drop. ``facetrack sources`` lists the cameras that open.
"""

from __future__ import annotations

import argparse
import glob
import logging
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

import av
import cv2
import numpy as np

from streams.errors import SourceError
from streams.frame import Frame
from streams.prefetch import Prefetch
from tracker.arguments import positive

RETRY_SECONDS = 0.5  # between tries to reopen a live stream that dropped
log = logging.getLogger("facetrack.sources")
URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
Opened = TypeVar("Opened")
GLOB = re.compile(r"[*?[]")
# Video files a folder or glob may hold for a batch (`video_batch`); any one FFmpeg reads works
# as a single --source.
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".ts", ".mts",
                            ".m2ts", ".flv", ".wmv", ".mpg", ".mpeg", ".3gp", ".ogv"})
# What cv2.imread reads; anything else in a folder is not an image of the sequence.
IMAGE_SUFFIXES = frozenset(
    {".bmp", ".dib", ".jpg", ".jpeg", ".jpe", ".jp2", ".png", ".webp", ".avif", ".pbm", ".pgm"}
    | {".ppm", ".pxm", ".pnm", ".pfm", ".sr", ".ras", ".tif", ".tiff", ".exr", ".hdr", ".pic"}
)


class Source(ABC):
    """Frames from one input, read in a background thread; iterate once, then close.

    Subclasses set the metadata and implement ``_read`` and ``_release``; the base runs both in
    the background thread and paces files for ``realtime``.
    """

    def __init__(
        self,
        name: str,
        *,
        live: bool = False,
        fps: float | None = None,
        length: int | None = None,
        size: tuple[int, int] | None = None,
        realtime: bool = False,
        stills: bool = False,
    ) -> None:
        self.name = name
        self.live = live
        self.stills = stills  # unrelated photos, not a moving picture: nothing carries over
        self.fps = fps
        self.length = length
        self.size = size
        self.warnings: list[str] = []
        self._realtime = realtime
        self._prefetch: Prefetch[Frame] | None = None
        self._closed = False

    @property
    def dropped(self) -> int:
        """Frames replaced by a newer one before the consumer took them (live sources only)."""
        return self._prefetch.dropped if self._prefetch else 0

    @abstractmethod
    def _read(self) -> Iterator[Frame]:
        """Yield the frames; runs in the background thread."""

    @abstractmethod
    def _release(self) -> None:
        """Let go of the input (container, device); called once, by the thread that read it."""

    def _produce(self) -> Generator[Frame, None, None]:
        try:
            yield from self._read()
        finally:
            self._release()

    def __iter__(self) -> Iterator[Frame]:
        if self._closed:
            raise ValueError(f"source {self.name} is closed")
        if self._prefetch is None:
            self._prefetch = Prefetch(self._produce(), newest_wins=self.live)
        start = None  # wall-clock time at which frame.time is 0, for realtime pacing
        for frame in self._prefetch:
            if self._realtime:
                start = time.monotonic() - frame.time if start is None else start
                time.sleep(max(0.0, start + frame.time - time.monotonic()))
            yield frame

    def close(self) -> None:
        """Stop reading and release the input; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        if self._prefetch is None:
            self._release()
        else:
            self._prefetch.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class VideoSource(Source):
    """A video file or network stream, decoded by FFmpeg through PyAV.

    A network stream whose container reports a duration (a file on a web server, a recorded
    stream) is read like a file: every frame, times from its pts. Without a duration it is
    live: newest frame wins and ``time`` is the monotonic clock when the frame was decoded.
    A network stream that does not open is tried again for up to ``reconnect`` seconds; a live
    one that ends or breaks off is opened again for as long, and its frame numbers go on from
    where they stopped.
    The first frame is decoded on open, so an undecodable input fails here, not mid-run, and
    ``size`` is the displayed size (after any rotation the container asks for).
    """

    def __init__(self, spec: str, *, url: bool, realtime: bool, timeout: float,
                 reconnect: float = 0.0, start: float = 0.0, end: float | None = None,
                 max_size: int | None = None) -> None:
        self._timeout = timeout
        self._max_size = max_size
        self._start, self._end = start, end  # the section read, in seconds of the file's clock
        self._reconnect = reconnect
        self._lost_at: float | None = None  # when the live stream last dropped, until a frame
        self._last_time: float | None = None  # a file's: of the frame before
        self._shift = 0.0  # seconds added to a file's pts since its clock went back
        try:
            container = _open_container(spec, url=url, timeout=timeout)
        except SourceError as error:
            if not (url and reconnect):
                raise
            # A camera still booting, a server started after the tracker: wait for it.
            log.warning("%s; trying again for %g s", error, reconnect)
            try:
                container = _open_live(spec, timeout, time.monotonic() + reconnect)
            except SourceError as again:
                raise SourceError(f"{again}, still after {reconnect:g} s of tries") from None
        live = url and container.duration is None
        if live and (start or end is not None):
            container.close()
            raise SourceError(f"--start and --end need a video file; {spec} is a live stream")
        self._attach(container, spec, live)
        rate = self._stream.average_rate or self._stream.guessed_rate
        super().__init__(
            spec,
            live=live,
            fps=float(rate) if rate else None,
            length=None if live else self._section_length(rate),
            realtime=realtime and not live,
        )
        if start:
            self._seek(start)
        try:
            self._first = self._frame(*next(self._decoded), 0)
        except (StopIteration, av.FFmpegError) as error:
            self._container.close()
            reason = (self._reason(error) if isinstance(error, av.FFmpegError)
                      else f"no frames from {start:g} s on" if start else "no frames")
            raise SourceError(f"cannot decode {spec}: {reason}") from None
        self.size = self._first.size
        # The file's clock at time 0: where the sound of the annotated video starts.
        self.origin = float((self._stream.start_time or 0) * self._stream.time_base) + start

    def _attach(self, container: av.container.InputContainer, spec: str, live: bool) -> None:
        """Read CONTAINER's first video stream from now on."""
        try:
            self._stream = container.streams.video[0]
        except IndexError:
            container.close()
            raise SourceError(f"no video stream in {spec}") from None
        self._container = container
        # Frame threading holds back a frame per thread: fine for files, latency for live.
        self._stream.thread_type = "SLICE" if live else "AUTO"
        self._decoded = self._timed(container.decode(self._stream))

    def _seek(self, start: float) -> None:
        """Go to the keyframe at or before START; `_timed` drops the frames before it."""
        offset = round(start / self._stream.time_base) + (self._stream.start_time or 0)
        try:
            self._container.seek(offset, stream=self._stream, backward=True)
        except av.FFmpegError as error:
            self._container.close()
            raise SourceError(f"cannot go to {start:g} s of {self.name}: "
                              f"{_ffmpeg_message(error)}") from None

    @property
    def _sectioned(self) -> bool:
        """Whether --start or --end reads only part of the file."""
        return bool(self._start) or self._end is not None

    def _timed(self, decoded: Iterator[av.VideoFrame]
               ) -> Iterator[tuple[av.VideoFrame, float | None]]:
        """Each frame of DECODED with its time on the file's clock (None without a pts); of a
        section, only the frames from --start up to --end."""
        first = self._stream.start_time or 0
        for frame in decoded:
            at = None if frame.pts is None else float((frame.pts - first) * self._stream.time_base)
            if self._sectioned and at is not None:
                if at < self._start - 1e-6:
                    continue
                if self._end is not None and at >= self._end - 1e-6:
                    return
            yield frame, at

    def _section_length(self, rate: Fraction | None) -> int | None:
        """How many frames the file shows, or about how many its section holds."""
        if not self._sectioned:
            return _frame_count(self._stream)
        if not (rate and self._stream.duration):
            return None
        duration = float(self._stream.duration * self._stream.time_base)
        end = duration if self._end is None else min(self._end, duration)
        return max(round((end - self._start) * rate), 0)

    def _read(self) -> Iterator[Frame]:
        yield self._first
        index = 1
        while True:
            lost = None
            try:
                for decoded, at in self._decoded:
                    yield self._frame(decoded, at, index)
                    index += 1
                    self._lost_at = None
            except av.FFmpegError as error:
                lost = self._reason(error)
            if not (self.live and self._reconnect):
                break
            lost = lost or "the stream ended"
            log.warning("%s: %s at frame %d; trying to reconnect for %g s", self.name, lost,
                        index, self._reconnect)
            if not self._reopen():
                self.warnings.append(f"{lost} at frame {index}, and it did not come back "
                                     f"within {self._reconnect:g} s")
                return
            log.warning("%s: reconnected", self.name)
        if lost:
            self.warnings.append(f"decoding stopped at frame {index}: {lost}")
        elif self.length and index < self.length and not self._sectioned:
            self.warnings.append(
                f"decoding stopped at frame {index} of {self.length}: the file ends early"
            )

    def _reopen(self) -> bool:
        """Open the live stream again (a camera rebooting, a network that dropped), trying
        until `reconnect` seconds have passed since it was lost or the source is closed; True
        once it is back. The time runs on over reopenings that bring no frame."""
        self._container.close()
        self._lost_at = self._lost_at or time.monotonic()
        try:
            container = _open_live(self.name, self._timeout, self._lost_at + self._reconnect,
                                   lambda: self._closed)
        except SourceError:
            return False
        self._attach(container, self.name, live=True)
        return True

    def _frame(self, decoded: av.VideoFrame, at: float | None, index: int) -> Frame:
        """The frame with its time (AT on the file's clock, from `_timed`), and its image as a
        player shows it: turned upright by the container's display rotation (phone videos are
        stored sideways)."""
        if self.live:
            captured = time.monotonic()
        elif at is None:
            captured = index / self.fps if self.fps else float(index)
        else:
            captured = self._onward(at - self._start, index)
        size = _within(decoded.width, decoded.height, self._max_size)
        # Scaled as it is converted, by FFmpeg: a 4K frame in 10 ms where converting it whole
        # takes 15 and shrinking that 4 more.
        image = (decoded.to_ndarray(format="rgb24") if size is None else
                 decoded.to_ndarray(format="rgb24", width=size[0], height=size[1],
                                    interpolation="AREA"))
        turns = decoded.rotation // 90  # counterclockwise; other angles are left alone
        if turns:
            image = np.ascontiguousarray(np.rot90(image, turns))
        return Frame(self.name, index, captured, image)

    def _onward(self, captured: float, index: int) -> float:
        """A file's frame time CAPTURED, run on by a frame past the frame before where the
        file's clock goes back (MPEG-TS clips joined, a recorder's clock reset): the tracker's
        filters, the record and the annotated video need time that runs on."""
        captured += self._shift
        if self._last_time is not None and captured <= self._last_time:
            onward = self._last_time + 1 / (self.fps or 30.0)
            if not self._shift:
                log.warning("%s: its timestamps go back at frame %d (clips joined?): times run "
                            "on from the frame before", self.name, index)
            self._shift += onward - captured
            captured = onward
        self._last_time = captured
        return captured

    def _reason(self, error: av.FFmpegError) -> str:
        if isinstance(error, av.ExitError):  # PyAV's timeout interrupted a read
            return f"no data for {self._timeout:g} s"
        return _ffmpeg_message(error)

    def _release(self) -> None:
        self._container.close()


@dataclass(frozen=True)
class CaptureMode:
    """The frame size and rate asked of a camera (``--capture 1280x720@60``); None: its own."""

    width: int | None = None
    height: int | None = None
    fps: float | None = None

    @classmethod
    def parse(cls, text: str) -> CaptureMode:
        """WIDTHxHEIGHT, WIDTHxHEIGHT@FPS or @FPS, for argparse."""
        match = re.fullmatch(r"(?:(\d+)x(\d+))?(?:@(\d+(?:\.\d+)?))?", text.strip())
        valid = (match and text.strip() and (not match[1] or int(match[1]) * int(match[2]))
                 and (not match[3] or float(match[3])))
        if not valid:
            raise argparse.ArgumentTypeError(f"{text!r} is not a capture mode: use WIDTHxHEIGHT, "
                                             "WIDTHxHEIGHT@FPS or @FPS (1280x720@60)")
        return cls(int(match[1]) if match[1] else None, int(match[2]) if match[2] else None,
                   float(match[3]) if match[3] else None)

    def __str__(self) -> str:
        size = f"{self.width}x{self.height}" if self.width else ""
        return size + (f"@{self.fps:g}" if self.fps else "")


class CameraSource(Source):
    """A camera opened by OpenCV, by index ("0") or device path; live, newest frame wins.
    With a MODE, the camera is asked for that size and rate (a webcam opens at 640x480 and
    30 fps whatever it can do), and a warning says what it gives when it gives another. A
    camera that stops delivering (unplugged, its USB reset) is opened again for up to
    RECONNECT seconds, its frame numbers going on."""

    def __init__(self, spec: str, mode: CaptureMode | None = None,
                 reconnect: float = 0.0, max_size: int | None = None) -> None:
        self._max_size = max_size
        self._mode = mode
        self._reconnect = reconnect
        self._capture = self._open(spec)
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        width = int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        super().__init__(
            spec,
            live=True,
            fps=fps if fps > 0 else None,
            size=(_within(width, height, max_size) or (width, height)) if width and height
            else None,
        )

    def _open(self, spec: str) -> cv2.VideoCapture:
        with _quiet_opencv():
            capture = cv2.VideoCapture(int(spec) if spec.isdigit() else spec)
        if not capture.isOpened():
            raise SourceError(f"cannot open camera {spec}")
        if self._mode:
            _ask(capture, spec, self._mode)
        return capture

    def _read(self) -> Iterator[Frame]:
        index = 0
        while True:
            ok, bgr = self._capture.read()
            captured = time.monotonic()
            if ok:
                yield Frame(self.name, index, captured,
                            cv2.cvtColor(_shrunk(bgr, self._max_size), cv2.COLOR_BGR2RGB))
                index += 1
                continue
            lost = f"camera {self.name} stopped delivering at frame {index}"
            if not self._reconnect:
                self.warnings.append(lost)
                return
            log.warning("%s; trying to open it again for %g s", lost, self._reconnect)
            self._capture.release()
            try:
                self._capture = _tried(lambda: self._open(self.name),
                                       time.monotonic() + self._reconnect, lambda: self._closed)
            except SourceError:
                self.warnings.append(f"{lost}, and it did not come back within "
                                     f"{self._reconnect:g} s")
                return
            log.warning("camera %s: reopened", self.name)

    def _release(self) -> None:
        self._capture.release()


def _ask(capture: cv2.VideoCapture, spec: str, mode: CaptureMode) -> None:
    """Ask CAPTURE for MODE as the camera sends it, then as MJPEG: over USB 2 a webcam sends
    uncompressed frames above 640x480 at only a few frames a second."""
    for fourcc in (None, "MJPG"):
        if fourcc:
            capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*fourcc))
        if mode.width:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, mode.width)
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, mode.height)
        if mode.fps:
            capture.set(cv2.CAP_PROP_FPS, mode.fps)
        given = CaptureMode(int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                            int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                            capture.get(cv2.CAP_PROP_FPS))
        if ((not mode.width or (given.width, given.height) == (mode.width, mode.height))
                and (not mode.fps or abs(given.fps - mode.fps) < 0.5)):
            return
    log.warning("camera %s gives %s, not the %s asked for", spec, given, mode)


class ImageSource(Source):
    """Still images in order.

    Stills have no clock: ``fps`` is None and ``time`` is the image's position in seconds, so
    time steps stay positive and large (unrelated stills should not look like smooth motion).
    ``index`` is the position in the list too, so an unreadable image (skipped, with a warning)
    leaves a gap rather than shifting the numbering of the images after it. A frame's
    ``source`` is its image's path, which records name it by.
    """

    def __init__(self, spec: str, paths: list[Path], max_size: int | None = None) -> None:
        super().__init__(spec, length=len(paths), stills=True)
        self.paths = paths
        self._max_size = max_size

    def _read(self) -> Iterator[Frame]:
        for index, path in enumerate(self.paths):
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                self.warnings.append(f"skipped unreadable image {path}")
                continue
            yield Frame(str(path), index, float(index),
                        cv2.cvtColor(_shrunk(bgr, self._max_size), cv2.COLOR_BGR2RGB))

    def _release(self) -> None:
        """Nothing stays open between images."""


def open_source(spec: str, *, realtime: bool = False, timeout: float = 10.0,
                reconnect: float = 0.0, start: float = 0.0, end: float | None = None,
                capture: CaptureMode | None = None, max_size: int | None = None) -> Source:
    """Open what ``spec`` names: a URL, a camera ("0", /dev/video0), an image, folder or glob
    of images, or a video file.

    ``realtime`` paces a file at its own frame rate (live sources already are); ``timeout`` is
    how long a network stream may stay silent, on open and while reading; ``reconnect`` is how
    long to keep trying to open a network stream that is not up yet, or a live one again when
    it ends or breaks off (0: the error, or the source's end, at once). ``start`` and ``end``
    (seconds of a video file's clock) read only that section, its times counted from ``start``.
    ``capture`` is the size and rate asked of a camera. Frames whose longer side is over
    ``max_size`` pixels are scaled down to it, as they are read.
    """
    if not spec:
        raise SourceError("no source given")
    camera = spec.isdigit() or spec.startswith("/dev/video")
    if capture and not camera:
        raise SourceError(f"--capture asks a camera for a mode; {spec} is not a camera")
    if URL.match(spec):
        return VideoSource(spec, url=True, realtime=realtime, timeout=timeout,
                           reconnect=reconnect, start=start, end=end, max_size=max_size)
    path = Path(spec)
    if not camera and path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES:
        return VideoSource(spec, url=False, realtime=realtime, timeout=timeout, start=start,
                           end=end, max_size=max_size)
    if start or end is not None:
        raise SourceError(f"--start and --end need a video file, not {spec}")
    if camera:
        return CameraSource(spec, capture, reconnect, max_size)
    listed = _listed(spec)
    if listed is not None:
        paths = _images(spec, listed)
        if not paths:
            raise SourceError(f"no images in folder {spec}" if Path(spec).is_dir()
                              else f"no images match {spec}")
        return ImageSource(spec, paths, max_size)
    if path.is_file():
        return ImageSource(spec, [path], max_size)
    raise SourceError(f"no such file: {spec}")


def _within(width: int, height: int, max_size: int | None) -> tuple[int, int] | None:
    """The size a WIDTH x HEIGHT frame is scaled down to for its longer side to be MAX_SIZE,
    its shape kept; None when it is no larger."""
    if max_size is None or max(width, height) <= max_size:
        return None
    scale = max_size / max(width, height)
    return max(round(width * scale), 1), max(round(height * scale), 1)


def _shrunk(image: np.ndarray, max_size: int | None) -> np.ndarray:
    """IMAGE scaled down as `_within` says (by pixel area, which keeps fine detail)."""
    size = _within(image.shape[1], image.shape[0], max_size)
    return image if size is None else cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _listed(spec: str) -> list[Path] | None:
    """What a folder or a glob SPEC names; None when SPEC is neither (a file whose name holds
    a glob's characters is a file)."""
    path = Path(spec)
    if path.is_dir():
        return list(path.iterdir())
    if GLOB.search(spec) and not path.is_file():
        return [Path(match) for match in glob.glob(spec)]
    return None


def _images(spec: str, paths: list[Path]) -> list[Path]:
    """The images among the PATHS a folder or glob SPEC names; videos beside them (a phone's
    camera folder) are left out with a warning, not in silence."""
    images = _image_paths(paths)
    videos = len(_video_paths(paths))
    if images and videos:
        folder = Path(spec) if Path(spec).is_dir() else Path(spec).parent
        log.warning("%s: running its images (%d); %d video%s there left out (--source '%s' "
                    "runs those)", spec, len(images), videos, "s" * (videos > 1),
                    folder / "*.mp4")
    return images


def video_batch(spec: str) -> list[Path] | None:
    """The videos a folder or glob SPEC names, in natural order, when it names no images (those
    make one image sequence, `open_source`); None when SPEC is anything else."""
    listed = None if URL.match(spec) else _listed(spec)
    if not listed or _image_paths(listed):
        return None
    return _video_paths(listed) or None


def list_cameras(max_index: int = 10) -> list[str]:
    """One line per camera index below ``max_index`` that opens and delivers a frame."""
    lines = []
    with _quiet_opencv():
        for index in range(max_index):
            capture = cv2.VideoCapture(index)
            ok, bgr = capture.read() if capture.isOpened() else (False, None)
            if ok:
                fps = capture.get(cv2.CAP_PROP_FPS)
                rate = f" at {fps:g} fps" if fps > 0 else ""
                height, width = bgr.shape[:2]
                lines.append(f"{index}: {width}x{height}{rate} ({capture.getBackendName()})")
            capture.release()
    return lines


def _open_container(spec: str, *, url: bool, timeout: float) -> av.container.InputContainer:
    """``av.open`` with its errors as one-line ``SourceError``s that say what went wrong."""
    started = time.monotonic()
    try:
        return av.open(spec, timeout=timeout if url else None)
    except av.FFmpegError as error:
        if not url:
            raise SourceError(f"cannot open {spec} as video: {_ffmpeg_message(error)}") from None
        # An interrupted read shows up as ExitError, or for RTSP as whatever that made of it.
        if isinstance(error, av.ExitError) or time.monotonic() - started >= timeout:
            raise SourceError(f"no answer from {spec} within {timeout:g} s") from None
        raise SourceError(f"cannot open {spec}: {_ffmpeg_message(error)}") from None


def _open_live(spec: str, timeout: float, deadline: float,
               stopped: Callable[[], bool] = lambda: False) -> av.container.InputContainer:
    """The network stream SPEC, tried as `_tried` tries."""
    return _tried(lambda: _open_container(
        spec, url=True, timeout=max(min(timeout, deadline - time.monotonic()), 0.1)),
        deadline, stopped)


def _tried(attempt: Callable[[], Opened], deadline: float,
           stopped: Callable[[], bool] = lambda: False) -> Opened:
    """What ATTEMPT opens, tried every RETRY_SECONDS until the monotonic DEADLINE or until
    STOPPED(); raises the last try's SourceError."""
    while True:
        try:
            return attempt()
        except SourceError:
            left = deadline - time.monotonic()
            if stopped() or left <= 0:
                raise
            time.sleep(min(RETRY_SECONDS, left))


def _ffmpeg_message(error: av.FFmpegError) -> str:
    """FFmpeg's description of the error, with its last log line when logging is on."""
    if error.log:
        return f"{error.strerror} ({error.log[1]}: {error.log[2].strip()})"
    return error.strerror


def _frame_count(stream: av.video.stream.VideoStream) -> int | None:
    """Frames a player shows: the container's count less those an MP4 edit list hides.

    FFmpeg applies edit lists while decoding and marks the hidden samples as discarded in the
    stream's index; e.g. no_face.mp4 stores 98 frames, its edit list hides 3, FFmpeg decodes 95
    and players show 95. Containers whose index is not one entry per frame keep their count.
    """
    if stream.frames <= 0:
        return None
    entries = stream.index_entries
    if len(entries) != stream.frames:
        return stream.frames
    return stream.frames - sum(entry.is_discard for entry in entries)


def _image_paths(paths: Iterable[Path]) -> list[Path]:
    """Image files among ``paths`` in natural order: frame_2 before frame_10, as people number."""
    return _files(paths, IMAGE_SUFFIXES)


def _video_paths(paths: Iterable[Path]) -> list[Path]:
    """Video files among ``paths`` (by VIDEO_SUFFIXES), in natural order."""
    return _files(paths, VIDEO_SUFFIXES)


def _files(paths: Iterable[Path], suffixes: frozenset[str]) -> list[Path]:
    found = [path for path in paths if path.suffix.lower() in suffixes and path.is_file()]
    return sorted(found, key=_natural_key)


def _natural_key(path: Path) -> list[str | int]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


@contextmanager
def _quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's log while probing cameras: each missing one prints several lines."""
    level = cv2.getLogLevel()
    cv2.setLogLevel(0)
    try:
        yield
    finally:
        cv2.setLogLevel(level)


def add_capture_argument(parser: argparse.ArgumentParser) -> None:
    """``--capture``, for every command that may read a camera."""
    parser.add_argument("--capture", type=CaptureMode.parse, metavar="WxH[@FPS]",
                        help="ask a camera for this frame size and rate (1280x720@60); it opens "
                             "at its default (often 640x480 at 30), and a warning says what it "
                             "gives when it cannot")


def add_sources_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sources",
                       description="Probe camera devices and list those that deliver frames.")
    p.add_argument("--max-index", type=positive(int), default=10,
                   help="probe camera indices 0..N-1 (default 10)")
    p.set_defaults(func=_sources)


def _sources(args: argparse.Namespace) -> int:
    cameras = list_cameras(args.max_index)
    if not cameras:
        print("no camera found")
        return 1
    for cam in cameras:
        print(cam)
    return 0
