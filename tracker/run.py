"""``facetrack run``: wires a source through the tracker into the sinks the user asked for,
and ends cleanly (every processed frame on disk) on end of input, Ctrl-C, SIGTERM or SIGHUP."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from calibrate.intrinsics import Intrinsics
from engines.select import KINDS
from engines.tensorrt_engine import PRECISIONS
from streams.audio import open_audio
from streams.errors import FacetrackError, SourceError
from streams.frame import Frame
from streams.image_writer import ImageWriter, PhotoWriter, is_image_name
from streams.recording import STDOUT
from streams.sinks import Sinks, add_sink_arguments, open_sinks
from streams.sources import (
    IMAGE_SUFFIXES,
    ImageSource,
    Source,
    add_capture_argument,
    open_source,
    video_batch,
)
from streams.video_writer import VideoWriter
from streams.window import Window, display_available
from tracker.arguments import (
    check_distinct,
    in_range,
    make_folder,
    names_folder,
    positive,
    seconds,
)
from tracker.cli import stop_signals_as_interrupt, warn
from tracker.landmarks import DETECTORS
from tracker.overlay import LAYERS, Overlay, layers
from tracker.pipeline import FaceTracker, frames_ahead
from tracker.records import frame_record, header
from tracker.refine import DEFAULT_STEPS, MAX_STEPS
from tracker.regressor import DEFAULT_MODEL
from tracker.smoothing import MAX_PREDICT_MS, Smoother
from tracker.solution import Models
from tracker.tracks import TRACKING, TrackedFace

Output = VideoWriter | ImageWriter | PhotoWriter  # what --output writes: the annotated frames
# --max-faces for images: a group photo's. MediaPipe's mesh runs on the faces found, so a
# portrait costs the same as with 1 (15-17 ms); the group photo's 5 faces 35 against 26 ms.
PHOTO_FACES = 20

RUN_EXAMPLES = """\
examples:
  facetrack run --source video.mp4 --record faces.jsonl
  facetrack run --source video.mp4 --output annotated.mp4 --max-faces 2
  facetrack run --source 0 --show                       # first camera, live window
  facetrack run --source 0 --capture 1280x720@60 --vmc  # its 720p mode at 60 fps, to VSeeFace
  facetrack run --source /dev/video2 --record live.jsonl --record-landmarks
  facetrack run --source 'photos/*.jpg' --record photos.jsonl
  facetrack run --source takes/ --record records/ --output annotated/   # each video of a folder
  facetrack run --source group.jpg --output annotated.jpg   # every face of a photo
  facetrack run --source photos/ --output annotated/    # each photo's copy, by its name
  facetrack run --source rtsp://127.0.0.1:8554/cam --show
  facetrack run --source clip.mp4 --realtime --show     # paced at the clip's own frame rate
  facetrack run --source talk.mp4 --start 1:30 --end 2:00 --output part.mp4   # half a minute
  facetrack run --source 0 --publish                    # faces on tcp://127.0.0.1:5570
"""


def add_run_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        description="Track faces frame by frame and record, display or encode the result.",
        epilog=RUN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--source", required=True,
                   help="video file, image, folder or glob of images, camera index or device "
                        "(0, /dev/video2), or URL (rtsp://, http(s)://, udp://, tcp://); a "
                        "folder or glob of videos runs each in turn, --record and --output "
                        "then naming folders")
    add_capture_argument(p)
    p.add_argument("--record", metavar="FILE.jsonl",
                   help="write one JSON line per frame (FILE.jsonl.gz: compressed; -: to "
                        "standard output)")
    p.add_argument("--record-landmarks", action="store_true",
                   help="include the 478 landmarks of each face in the record")
    p.add_argument("--output", metavar="FILE.mp4",
                   help="write an annotated H.264 video, with a video file's sound, or images "
                        "by the name's end: a photo's as FILE.jpg, one per frame as "
                        "FILE_%%04d.png, photos' into a folder (DIR/) under their own names")
    p.add_argument("--no-audio", dest="audio", action="store_false",
                   help="leave the source's sound out of the annotated video")
    p.add_argument("--show", action="store_true", help="open a window with the annotated frames")
    p.add_argument("--max-faces", type=positive(int), metavar="N",
                   help=f"track up to N faces (default 1; for images {PHOTO_FACES}, every "
                        "face of a group photo)")
    p.add_argument("--detector", default="auto", choices=("auto", *DETECTORS),
                   help="MediaPipe's face detector: short-range finds faces within about 2 m, "
                        "full-range to about 5 m and the small faces of a group photo, for "
                        "about 5 ms more a frame while fewer than N faces are in view "
                        "(default auto: full-range for images, short-range for video; "
                        "benchmarks/detectors.py)")
    p.add_argument("--start", type=seconds, default=0.0, metavar="TIME",
                   help="begin this far into a video file (seconds, or [HH:]MM:SS[.fff]); "
                        "frames, times and the annotated video then count from there")
    p.add_argument("--end", type=seconds, metavar="TIME",
                   help="stop at this time of the video file (its own clock, as --start)")
    p.add_argument("--max-size", type=positive(int), metavar="PIXELS",
                   help="scale frames whose longer side is over PIXELS down to it as they are "
                        "read (a 4K phone video at 1280: the same faces for less time a frame); "
                        "records and --output are at that size")
    p.add_argument("--realtime", action="store_true",
                   help="pace a file at its own frame rate instead of as fast as possible")
    p.add_argument("--reconnect", type=in_range(float, 0, 86400), default=30.0,
                   metavar="SECONDS",
                   help="how long to keep trying to open a network stream that is not up yet, "
                        "or to reopen a live one or a camera that drops (default 30; 0: fail "
                        "or end at once)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or status line")
    p.add_argument("--focal", type=positive(float), metavar="PIXELS",
                   help="the camera's focal length in pixels, when known but not calibrated")
    p.add_argument("--engine", default="auto",
                   choices=("auto", *KINDS),
                   help="where the regressor runs (default auto: TensorRT or CUDA when they "
                        "work here, else ONNX Runtime on one CPU thread)")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="TensorRT's precision (int8 calibrates on synthetic faces the first "
                        "time; the engine is cached); the other engines run fp32")
    p.add_argument("--regressor", default=str(DEFAULT_MODEL), metavar="FILE.onnx",
                   help="regressor model, with its manifest beside it (default: the built-in)")
    p.add_argument("--refine", type=in_range(int, 0, MAX_STEPS), default=DEFAULT_STEPS,
                   metavar="STEPS",
                   help=f"Levenberg-Marquardt steps on pose and expression against the "
                        f"landmarks after the regressor (default {DEFAULT_STEPS}, about 0.9 ms a "
                        "face each; 0: the regressor alone, which needs no face model)")
    p.add_argument("--mesh", action="store_true",
                   help="draw each fitted face's shaded mesh in --output and --show "
                        "(needs the face model)")
    p.add_argument("--hide", type=_layers, default=frozenset(), metavar="LAYER[,LAYER]",
                   help=f"leave layers out of --output and --show: {', '.join(LAYERS)} (a clean "
                        "video of the mesh alone: --mesh --hide landmarks,axes,ids,status)")
    p.add_argument("--model", metavar="PATH",
                   help="face model file for --refine and --mesh (default: $FACETRACK_MODEL, "
                        "else the installed one)")
    p.add_argument("--camera", metavar="FILE.json",
                   help="calibrated intrinsics and lens distortion from 'facetrack calibrate "
                        "camera' (default: assume a 60° horizontal field of view, no distortion)")
    p.add_argument("--profile", metavar="FILE.json",
                   help="a face profile from 'facetrack calibrate face': hold the identity to "
                        "it and read expressions from its resting face to its ranges")
    p.add_argument("--no-smooth", action="store_true",
                   help="publish the regressor's raw per-frame output instead of the smoothed "
                        "face states (no velocities or variances)")
    p.add_argument("--predict-ms", type=in_range(float, 0, MAX_PREDICT_MS), default=0.0,
                   metavar="MS",
                   help="publish the smoothed state predicted MS milliseconds past each frame's "
                        "capture time, to hide latency (default 0)")
    add_sink_arguments(p)
    p.set_defaults(func=run)


def _layers(text: str) -> frozenset[str]:
    """A comma-separated list of overlay `LAYERS`, for argparse (`tracker.overlay.layers`)."""
    try:
        chosen = layers(filter(None, text.split(",")))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if not chosen:
        raise argparse.ArgumentTypeError(f"no layer in {text!r}: the layers are "
                                         f"{', '.join(LAYERS)}")
    return chosen


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

    def status(self, faces: list[TrackedFace], timing: bool = True) -> str:
        """The status line; without TIMING only the faces (a photo has no frame rate)."""
        tracked = f"faces {sum(f.status == TRACKING for f in faces)}"
        if not timing:
            return tracked
        return f"fps {self.fps:.1f}  latency {self.latency * 1e3:.0f} ms  {tracked}"

    def summary(self) -> str:
        seconds = time.perf_counter() - self._started
        share = 100.0 * self.frames_with_faces / max(self.frames, 1)
        frames = f"{self.frames} frame{'s' if self.frames != 1 else ''}"
        return (f"{frames} in {seconds:.1f} s ({self.frames / max(seconds, 1e-9):.1f} fps), "
                f"a face in {self.frames_with_faces} ({share:.1f}%)")


def run(args: argparse.Namespace) -> int:
    if args.end is not None and args.end <= args.start:
        raise FacetrackError(f"--end {args.end:g} s is not after --start {args.start:g} s")
    if args.max_size and args.focal:
        raise FacetrackError("--focal is in the source's pixels, which --max-size scales: give "
                             "a camera file (--camera, scaled with the frames) or leave one out")
    videos = video_batch(args.source)
    if videos:
        _check_batch(args, videos)
    models = Models.load(camera=args.camera, profile=args.profile, refine=args.refine,
                         mesh=args.mesh, model=args.model, regressor=args.regressor,
                         engine=args.engine, precision=args.precision)
    try:
        return (_run_batch(args, videos, models) if videos
                else _run_one(_named_in_folders(args), models))
    finally:
        models.close()


def _check_batch(args: argparse.Namespace, videos: list[Path]) -> None:
    """What a batch cannot do, refused before anything loads."""
    count = _count(videos)
    if args.publish or args.vmc or args.livelink:
        raise FacetrackError(f"--publish, --vmc and --livelink send one source's faces: record "
                             f"the {count} (--record DIR) and send each with 'facetrack replay'")
    stems = [video.stem for video in videos]
    if len(set(stems)) < len(stems):
        twice = sorted({stem for stem in stems if stems.count(stem) > 1})
        raise FacetrackError(f"{count} would share output names ({', '.join(twice)}): give "
                             "them different names, or run them apart")


def _count(videos: list[Path]) -> str:
    return f"{len(videos)} video{'s' if len(videos) > 1 else ''}"


def _run_batch(args: argparse.Namespace, videos: list[Path], models: Models) -> int:
    """Each video of a folder or glob, in turn, as a run of its own: its record and annotated
    video are named after it, in the folders --record and --output name. A video that cannot
    be opened or decoded is a warning and the batch goes on; Ctrl-C stops the batch."""
    count = _count(videos)
    # "-": every video's record, header first, one after the other on standard output
    records = None if args.record == STDOUT else _batch_folder(args.record, "--record", count)
    outputs = _batch_folder(args.output, "--output", count)
    status, unread = 0, 0
    for number, video in enumerate(videos, 1):
        if not args.quiet:
            print(f"facetrack: video {number} of {len(videos)}: {video}", file=sys.stderr)
        one = _named_after(args, video, records, outputs)
        try:
            code = _run_one(one, models)
        except SourceError as error:  # this video's own problem: the others may be fine
            print(f"facetrack: warning: {error}", file=sys.stderr)
            code, unread = 1, unread + 1
        if code == 130:
            return code
        status = max(status, code)
    if unread or not args.quiet:  # the batch's last line, after each video's own
        unreadable = f", {unread} could not be read" if unread else ""
        print(f"facetrack: {count}: {len(videos) - unread} tracked{unreadable}", file=sys.stderr)
    return status


def _named_after(args: argparse.Namespace, video: Path, records: Path | None,
                 outputs: Path | None) -> argparse.Namespace:
    """ARGS for VIDEO alone, its record and annotated video named after it in the folders
    RECORDS and OUTPUTS; without a folder, the option as it is (none, a file, "-")."""
    return argparse.Namespace(**{
        **vars(args), "source": str(video),
        "record": str(records / f"{video.stem}.jsonl") if records else args.record,
        "output": str(outputs / f"{video.stem}.mp4") if outputs else args.output})


def _named_in_folders(args: argparse.Namespace) -> argparse.Namespace:
    """A single video's --record and --output that name a folder ('records/', one there is)
    named as a batch's: DIR/<video>.jsonl and DIR/<video>.mp4; ARGS as they are otherwise."""
    video = Path(args.source)
    if not video.is_file() or video.suffix.lower() in IMAGE_SUFFIXES:
        return args
    folders = [_batch_folder(name, option, "1 video") if name and names_folder(name) else None
               for name, option in ((args.record, "--record"), (args.output, "--output"))]
    return args if folders == [None, None] else _named_after(args, video, *folders)


def _batch_folder(name: str | None, option: str, count: str) -> Path | None:
    """The folder a batch writes one file per video into, made if missing."""
    if name is None:
        return None
    folder = Path(name)
    if folder.suffix and not folder.is_dir():
        raise FacetrackError(f"{option} {name}: {count} write one file each into a folder; name "
                             f"one, as in {option} {folder.with_suffix('')}/")
    return make_folder(name)


def _run_one(args: argparse.Namespace, models: Models) -> int:
    check_distinct({"--source": args.source if Path(args.source).is_file() else None,
                    "--output": args.output, "--record": args.record})
    smoother = _smoother(args)
    source = open_source(args.source, realtime=args.realtime, reconnect=args.reconnect,
                         start=args.start, end=args.end, capture=args.capture,
                         max_size=args.max_size)
    stats = RunStats()
    interrupted = False
    header_size = None  # of the frame the record's header describes
    with contextlib.ExitStack() as stack:
        stack.callback(source.close)
        sinks = stack.enter_context(open_sinks(args))
        writer = (stack.enter_context(_writer(args.output, source, args.audio)) if args.output
                  else None)
        window = _open_window(stack) if args.show else None
        overlay = Overlay(mesh=models.mesh, hide=args.hide) if writer or window else None
        max_faces = args.max_faces or (PHOTO_FACES if source.stills else 1)
        tracker = stack.enter_context(FaceTracker(max_faces, camera=models.camera,
                                                  stills=source.stills,
                                                  detector=(None if args.detector == "auto"
                                                            else args.detector),
                                                  regressor=models.regressor, focal=args.focal,
                                                  refiner=models.refiner, smoother=smoother,
                                                  profile=models.profile))
        # Closed before the tracker: its landmark thread stops before MediaPipe's graph does.
        processed = stack.enter_context(contextlib.closing(tracker.stream(
            source, frames_ahead(source.live or args.realtime))))
        progress = stack.enter_context(tqdm(
            total=source.length, unit="frame", disable=args.quiet, file=sys.stderr,
            dynamic_ncols=True, desc=_short(args.source)))
        stack.enter_context(logging_redirect_tqdm())  # a warning mid-run, above the bar
        try:
            with stop_signals_as_interrupt():  # sinks flushed and closed, exit 130
                for frame, faces, started in processed:
                    camera = tracker.intrinsics(*frame.size)
                    if sinks:
                        if not sinks.header_sent:
                            sinks.send_header(_header(args, source, frame, tracker))
                            header_size = frame.size
                        # A photo's, or a stream's after its size changed: not the header's
                        own = source.stills or frame.size != header_size
                        sinks.send_frame(frame_record(
                            frame, faces, landmarks=args.record_landmarks,
                            camera=camera if own else None,
                            image=frame.source if source.stills else None))
                    latency = (time.monotonic() - frame.time if source.live
                               else time.perf_counter() - started)
                    stats.add(faces, latency)
                    if overlay and not _annotate(
                            overlay, frame, faces, stats.status(faces, timing=not source.stills),
                            writer, window, camera, source.stills):
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


def _writer(output: str, source: Source, audio: bool) -> Output:
    """The annotated output its name asks for: images (.jpg, .png, ...), photos' annotated
    copies in a folder, or a video, with the source's sound unless AUDIO is False."""
    if isinstance(source, ImageSource) and names_folder(output):
        return PhotoWriter(output, source.paths)
    if is_image_name(output):
        return ImageWriter(output, source.length)
    writer = VideoWriter(output, source.fps, block=not source.live)
    if audio and (sound := open_audio(source)):
        writer.add_audio(sound)
    return writer


def _annotate(overlay: Overlay, frame: Frame, faces: list[TrackedFace], status: str,
              writer: Output | None, window: Window | None,
              camera: Intrinsics, still: bool) -> bool:
    """Draw and hand the frame to the output and the window, which holds a STILL until a key;
    False when the window was closed."""
    image = frame.image if frame.image.flags.writeable else frame.image.copy()
    overlay.draw(image, faces, status, camera)
    if writer:
        writer.write(image, frame.time)
    return window.show(image, wait=still) if window else True


def _header(args: argparse.Namespace, source: Source, frame: Frame | None,
            tracker: FaceTracker) -> dict:
    intrinsics = tracker.intrinsics(*frame.size) if frame is not None else None
    version = tracker.regressor.manifest.model_version if tracker.regressor else None
    return header(args.source, intrinsics, fps=source.fps, frame_count=source.length,
                  start=args.start,
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
             writer: Output | None, sinks: Sinks) -> str:
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
    status = warn(source.warnings)
    if interrupted:
        kept = f", all recorded in {args.record}" if args.record else ""
        print(f"facetrack: interrupted after {stats.frames} frames{kept}", file=sys.stderr)
        return 130
    return status


def _short(text: str, width: int = 24) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1):]
