"""``facetrack run``: wires a source through the tracker into the sinks the user asked for,
and ends cleanly (every processed frame on disk) on end of input, Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from collections.abc import Iterator

from tqdm import tqdm

from calibrate.intrinsics import Intrinsics, load_camera
from calibrate.profile import FaceProfile
from streams.errors import FacetrackError
from streams.frame import Frame
from streams.sinks import Sinks, open_sinks
from streams.sources import Source, open_source
from streams.video_writer import VideoWriter
from streams.window import Window, display_available
from tracker.face_model import FaceModel
from tracker.overlay import Overlay
from tracker.pipeline import FaceTracker, frames_ahead
from tracker.records import frame_record, header
from tracker.refine import Refiner
from tracker.regressor import Regressor
from tracker.render import Renderer
from tracker.smoothing import Smoother
from tracker.tracks import TRACKING, TrackedFace


class RunStats:
    """Frame rate and latency for the status line and the closing summary."""

    def __init__(self) -> None:
        self.frames = 0
        self.frames_with_faces = 0
        self.fps = 0.0
        self.latency = 0.0
        self._started = time.perf_counter()
        self._last = self._started

    def add(self, faces: list[TrackedFace], latency: float) -> None:
        now = time.perf_counter()
        rate = 1.0 / max(now - self._last, 1e-6)
        # Exponential averages: readable on screen, yet follow a change within a second.
        self.fps = rate if self.frames == 0 else 0.9 * self.fps + 0.1 * rate
        self.latency = latency if self.frames == 0 else 0.9 * self.latency + 0.1 * latency
        self._last = now
        self.frames += 1
        self.frames_with_faces += any(f.status == TRACKING for f in faces)

    def status(self, faces: list[TrackedFace]) -> str:
        tracked = sum(f.status == TRACKING for f in faces)
        return f"fps {self.fps:.1f}  latency {self.latency * 1e3:.0f} ms  faces {tracked}"

    def summary(self) -> str:
        seconds = time.perf_counter() - self._started
        share = 100.0 * self.frames_with_faces / max(self.frames, 1)
        frames = f"{self.frames} frame{'s' if self.frames != 1 else ''}"
        return (f"{frames} in {seconds:.1f} s ({self.frames / max(seconds, 1e-9):.1f} fps), "
                f"a face in {self.frames_with_faces} ({share:.1f}%)")


def run(args: argparse.Namespace) -> int:
    camera = load_camera(args.camera) if args.camera else None
    profile = FaceProfile.load(args.profile) if args.profile else None
    smoother = _smoother(args)
    source = open_source(args.source, realtime=args.realtime)
    stats = RunStats()
    interrupted = False
    with contextlib.ExitStack() as stack:
        stack.callback(source.close)
        sinks = stack.enter_context(open_sinks(args))
        writer = (stack.enter_context(VideoWriter(args.output, source.fps, block=not source.live))
                  if args.output else None)
        window = _open_window(stack) if args.show else None
        face_model = _face_model(args)
        overlay = (Overlay(mesh=Renderer(face_model, "face") if args.mesh else None)
                   if writer or window else None)
        regressor = Regressor(args.regressor, args.engine, args.precision, args.model)
        if profile and profile.info.get("regressor") != regressor.manifest.model_version:
            print(f"facetrack: warning: {args.profile} was made with regressor "
                  f"{profile.info.get('regressor')}, this is {regressor.manifest.model_version}: "
                  "its resting face may be off, calibrate again", file=sys.stderr)
        tracker = stack.enter_context(FaceTracker(args.max_faces, camera=camera,
                                                  regressor=regressor, focal=args.focal,
                                                  refiner=(Refiner.load(face_model, args.refine)
                                                           if args.refine else None),
                                                  smoother=smoother, profile=profile))
        # Closed before the tracker: its landmark thread stops before MediaPipe's graph does.
        processed = stack.enter_context(contextlib.closing(tracker.stream(
            source, frames_ahead(source.live or args.realtime))))
        progress = stack.enter_context(tqdm(
            total=source.length, unit="frame", disable=args.quiet, file=sys.stderr,
            dynamic_ncols=True, desc=_short(args.source)))
        try:
            with _sigterm_as_interrupt():
                for frame, faces, started in processed:
                    if sinks:
                        if not sinks.header_sent:
                            sinks.send_header(_header(args, source, frame, tracker))
                        sinks.send_frame(frame_record(frame, faces,
                                                      landmarks=args.record_landmarks))
                    latency = (time.monotonic() - frame.time if source.live
                               else time.perf_counter() - started)
                    stats.add(faces, latency)
                    if overlay and not _annotate(overlay, frame, faces, stats, writer, window,
                                                 tracker.intrinsics(*frame.size)):
                        break
                    progress.update()
                    if stats.frames % 10 == 0:
                        progress.set_postfix_str(_postfix(stats, faces, source, writer, sinks),
                                                 refresh=False)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if sinks and not sinks.header_sent:
                sinks.send_header(_header(args, source, None, tracker))
    return _finish(args, source, stats, interrupted)


def _smoother(args: argparse.Namespace) -> Smoother | None:
    if args.no_smooth:
        if args.predict_ms:
            raise FacetrackError("--predict-ms needs the smoother: drop --no-smooth")
        return None
    return Smoother(predict_ms=args.predict_ms)


def _face_model(args: argparse.Namespace) -> FaceModel | None:
    """The face model, loaded once, when refinement or the mesh overlay needs it."""
    return FaceModel.load(args.model) if args.refine or args.mesh else None


def _annotate(overlay: Overlay, frame: Frame, faces: list[TrackedFace], stats: RunStats,
              writer: VideoWriter | None, window: Window | None, camera: Intrinsics) -> bool:
    """Draw and hand the frame to the video and the window; False when the window was closed."""
    image = frame.image if frame.image.flags.writeable else frame.image.copy()
    overlay.draw(image, faces, stats.status(faces), camera)
    if writer:
        writer.write(image, frame.time)
    return window.show(image) if window else True


def _header(args: argparse.Namespace, source: Source, frame: Frame | None,
            tracker: FaceTracker) -> dict:
    intrinsics = tracker.intrinsics(*frame.size) if frame is not None else None
    version = tracker.regressor.manifest.model_version if tracker.regressor else None
    return header(args.source, intrinsics, fps=source.fps, frame_count=source.length,
                  landmarks=args.record_landmarks, landmarks_undistorted=tracker.undistorts,
                  regressor=version,
                  predict_ms=None if tracker.smoother is None else tracker.smoother.predict_ms,
                  profile=tracker.profile.header(args.profile) if tracker.profile else None)


def _open_window(stack: contextlib.ExitStack) -> Window | None:
    if not display_available():
        print("facetrack: warning: no display found, --show ignored", file=sys.stderr)
        return None
    window = Window()
    stack.callback(window.close)
    return window


def _postfix(stats: RunStats, faces: list[TrackedFace], source: Source,
             writer: VideoWriter | None, sinks: Sinks) -> str:
    text = stats.status(faces)
    if source.live:
        text += f"  dropped {source.dropped}"
    if writer and writer.dropped:
        text += f"  video dropped {writer.dropped}"
    if sinks.dropped:
        text += f"  publish dropped {sinks.dropped}"
    return text


def _finish(args: argparse.Namespace, source: Source, stats: RunStats, interrupted: bool) -> int:
    if not args.quiet:
        print(f"facetrack: {stats.summary()}", file=sys.stderr)
    for warning in source.warnings:
        print(f"facetrack: warning: {warning}", file=sys.stderr)
    if interrupted:
        kept = f", all recorded in {args.record}" if args.record else ""
        print(f"facetrack: interrupted after {stats.frames} frames{kept}", file=sys.stderr)
        return 130
    return 1 if source.warnings else 0


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the run the way Ctrl-C does: sinks flushed and closed, exit 130."""
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _short(text: str, width: int = 24) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1):]
