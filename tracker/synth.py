"""Synthetic clips with ground truth: scripted expressions and head motion of a random ICT face,
rendered by `tracker.render` into an H.264 video beside a JSON file of what was rendered.

    facetrack synth OUTDIR --clips talking,head_turns --frames 150 --seed 0

Everything random about a clip (identity, skin, light, background, focal length, where the head
sits) comes from the seed and the clip's name alone, so a clip is the same whichever others are
made with it. The file format and the scripts are in docs/synthetic-clips.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from calibrate.files import load_versioned
from calibrate.intrinsics import CAMERA_FORMAT, CAMERA_VERSION, Intrinsics
from streams.errors import FacetrackError
from streams.video_writer import VideoWriter
from tracker.cli import stop_signals_as_interrupt
from tracker.expressions import ICT_EXPRESSION_NAMES
from tracker.face_model import FaceModel
from tracker.pose import rotation
from tracker.render import Appearance, SyntheticFace, random_background

TRUTH_FORMAT = "facetrack-synthetic-truth"
TRUTH_VERSION = 1
WIDTH, HEIGHT, FPS = 640, 480, 30.0
IDENTITY_SCALE = 0.8  # identities a little closer to the mean than a standard normal draw
FOV_DEGREES = (50.0, 70.0)  # horizontal field of view, drawn per clip
FACE_PIXELS = (150.0, 230.0)  # forehead-to-chin height on screen, drawn per clip
SENSOR_NOISE = 1.5  # grey levels, per pixel and frame
CRF = 18  # near-transparent H.264: the truth should not be blurred away
PERSON_STREAM = 1000  # the random stream of --one-person's face, apart from every clip's

Channels = dict[str, float]  # expression names, and "yaw", "pitch", "roll" (degrees) and "scale"
Keyframes = tuple[tuple[float, Channels], ...]  # (phase in [0, 1], channel values), in order


@dataclass(frozen=True)
class Truth:
    """What a synthetic clip shows, frame by frame, in DESIGN.md's conventions."""

    clip: str
    seed: int
    fps: float
    intrinsics: Intrinsics
    identity: np.ndarray  # (100,)
    expression_names: tuple[str, ...]
    expressions: np.ndarray  # (N, 53) in [0, 1]
    rotations: np.ndarray  # (N, 3, 3), p_camera = R @ p_model + t
    translations: np.ndarray  # (N, 3) cm

    def __len__(self) -> int:
        return len(self.expressions)

    def to_dict(self) -> dict:
        camera = self.intrinsics
        return {
            "format": TRUTH_FORMAT, "version": TRUTH_VERSION, "clip": self.clip,
            "seed": self.seed, "fps": self.fps, "image_size": [camera.width, camera.height],
            "intrinsics": {"fx": camera.fx, "fy": camera.fy, "cx": camera.cx, "cy": camera.cy},
            "identity": _rounded(self.identity),
            "expression_names": list(self.expression_names),
            "frames": [{"frame": i, "time": round(i / self.fps, 6), "expression": _rounded(e),
                        "rotation": _rounded(r), "translation": _rounded(t)}
                       for i, (e, r, t) in enumerate(zip(self.expressions, self.rotations,
                                                         self.translations, strict=True))],
        }


def write_camera_file(truth: Truth, path: Path) -> Path:
    """A camera file (calibrate.intrinsics.load_camera's format) of the clip's exact intrinsics,
    so the tracker is told the true focal length instead of assuming one."""
    camera = truth.intrinsics
    path.write_text(json.dumps({
        "format": CAMERA_FORMAT, "version": CAMERA_VERSION,
        "image_size": [camera.width, camera.height], "fx": camera.fx, "fy": camera.fy,
        "cx": camera.cx, "cy": camera.cy, "distortion": [0.0, 0.0, 0.0, 0.0],
        "source": f"ground truth of synthetic clip {truth.clip}"}, indent=2) + "\n")
    return path


def load_truth(path: str | Path) -> Truth:
    """Read a ground-truth file; anything but one is a one-line error."""
    data = load_versioned(path, "ground-truth file", TRUTH_FORMAT, TRUTH_VERSION)
    try:
        width, height = data["image_size"]
        camera = data["intrinsics"]
        frames = data["frames"]
        return Truth(
            clip=data["clip"], seed=data["seed"], fps=float(data["fps"]),
            intrinsics=Intrinsics(camera["fx"], camera["fy"], camera["cx"], camera["cy"],
                                  width, height),
            identity=np.array(data["identity"], np.float32),
            expression_names=tuple(data["expression_names"]),
            expressions=np.array([f["expression"] for f in frames], np.float32).reshape(
                len(frames), len(data["expression_names"])),
            rotations=np.array([f["rotation"] for f in frames], np.float64).reshape(-1, 3, 3),
            translations=np.array([f["translation"] for f in frames],
                                  np.float64).reshape(-1, 3))
    except (KeyError, TypeError, ValueError) as error:
        raise FacetrackError(f"{path} is not a complete ground-truth file: {error}") from None


RESTING = {"mouthSmile_L": 0.3, "mouthSmile_R": 0.3, "browInnerUp_L": 0.2, "browInnerUp_R": 0.2}
# Scripts: keyframes over the clip's length (phase 0 to 1), eased between; all channels not
# named in a keyframe are 0 there (scale: 1).
SCRIPTS: dict[str, Keyframes] = {
    "still": ((0.0, {}), (1.0, {})),
    "talking": (
        (0.0, {}), (0.1, {"jawOpen": 0.5}), (0.2, {"jawOpen": 0.15, "mouthFunnel": 0.7}),
        (0.3, {"jawOpen": 0.4, "mouthLowerDown_L": 0.3, "mouthLowerDown_R": 0.3}),
        (0.4, {"mouthPucker": 0.8}), (0.5, {"jawOpen": 0.7}),
        (0.6, {"jawOpen": 0.3, "mouthFunnel": 0.5}), (0.7, {"mouthPucker": 0.6}),
        (0.8, {"jawOpen": 0.45, "mouthStretch_L": 0.3, "mouthStretch_R": 0.3}),
        (0.9, {"mouthClose": 0.3, "mouthPress_L": 0.4, "mouthPress_R": 0.4}), (1.0, {}),
    ),
    "blinks_smile": (
        (0.0, {}), (0.08, {"eyeBlink_L": 1.0, "eyeBlink_R": 1.0}), (0.16, {}),
        (0.35, {"mouthSmile_L": 0.8, "mouthSmile_R": 0.8, "cheekSquint_L": 0.4,
                "cheekSquint_R": 0.4}),
        (0.43, {"mouthSmile_L": 0.8, "mouthSmile_R": 0.8, "cheekSquint_L": 0.4,
                "cheekSquint_R": 0.4, "eyeBlink_L": 1.0, "eyeBlink_R": 1.0}),
        (0.51, {"mouthSmile_L": 0.8, "mouthSmile_R": 0.8, "cheekSquint_L": 0.4,
                "cheekSquint_R": 0.4}),
        (0.7, {}), (0.78, {"eyeBlink_L": 1.0, "eyeBlink_R": 1.0}), (0.86, {}),
        (0.93, {"eyeSquint_L": 0.6, "eyeSquint_R": 0.6}), (1.0, {}),
    ),
    "brows": (
        (0.0, {}), (0.2, {"browInnerUp_L": 1.0, "browInnerUp_R": 1.0, "browOuterUp_L": 0.9,
                          "browOuterUp_R": 0.9, "eyeWide_L": 0.4, "eyeWide_R": 0.4}),
        (0.4, {}), (0.6, {"browDown_L": 1.0, "browDown_R": 1.0, "noseSneer_L": 0.3,
                          "noseSneer_R": 0.3}),
        (0.8, {"browInnerUp_L": 0.8, "browInnerUp_R": 0.8}), (1.0, {}),
    ),
    "head_turns": (
        (0.0, {}), (0.12, {"yaw": 45.0}), (0.3, {"yaw": -45.0}), (0.4, {}),
        (0.5, {"pitch": 20.0}), (0.62, {"pitch": -20.0}), (0.7, {}), (0.78, {"roll": 20.0}),
        (0.9, {"roll": -20.0}), (1.0, {}),
    ),
    "distance": (
        (0.0, {}), (0.25, {"scale": 1.6}), (0.6, {"scale": 0.5}), (0.8, {"scale": 0.8}),
        (1.0, {}),
    ),
    "asymmetric": (
        (0.0, {}), (0.08, {"eyeBlink_L": 1.0}), (0.16, {"eyeBlink_R": 1.0}),
        (0.26, {"mouthSmile_L": 0.9}), (0.36, {"mouthSmile_R": 0.9}),
        (0.46, {"browOuterUp_L": 1.0, "browInnerUp_L": 0.6}),
        (0.56, {"browOuterUp_R": 1.0, "browInnerUp_R": 0.6}),
        (0.66, {"jawLeft": 0.7, "mouthLeft": 0.6}), (0.76, {"jawRight": 0.7, "mouthRight": 0.6}),
        (0.86, {"eyeSquint_L": 0.8, "mouthFrown_R": 0.7}), (1.0, {}),
    ),
    # Fast: 2.5 shakes a second whatever the length (the keyframes only set the envelope).
    "head_shake": ((0.0, {}), (0.1, {"yaw": 30.0}), (0.55, {"yaw": 30.0}),
                   (0.65, {"pitch": 15.0}), (0.95, {"pitch": 15.0}), (1.0, {})),
    # A face whose resting expression is not the model's neutral, held throughout.
    "resting": ((0.0, RESTING), (1.0, RESTING)),
}
SHAKE_HZ = {"yaw": 2.5, "pitch": 2.0}
CLIP_NAMES = tuple(SCRIPTS)


def clip_names(text: str) -> list[str]:
    """The clips a comma-separated list names (`all`: every clip), in the order given."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in (*CLIP_NAMES, "all")]
    if unknown or not names:
        raise FacetrackError(f"unknown clip {', '.join(map(repr, unknown)) or repr(text)}; "
                             f"known: {', '.join(CLIP_NAMES)}, all")
    expanded = [clip for name in names for clip in (CLIP_NAMES if name == "all" else [name])]
    return list(dict.fromkeys(expanded))


def scripted(name: str, frames: int, fps: float = FPS) -> tuple[np.ndarray, np.ndarray]:
    """(expressions (N, 53), yaw-pitch-roll degrees and distance scale (N, 4)) of clip NAME."""
    keyframes = SCRIPTS[name]
    phases = np.linspace(0.0, 1.0, frames)
    channels = {key for _, values in keyframes for key in values}
    tracks = {key: _eased(keyframes, key, phases) for key in channels}
    expressions = np.zeros((frames, len(ICT_EXPRESSION_NAMES)), np.float32)
    for key, track in tracks.items():
        if key in ICT_EXPRESSION_NAMES:
            expressions[:, ICT_EXPRESSION_NAMES.index(key)] = track
    motion = np.zeros((frames, 4))
    motion[:, 3] = 1.0
    for column, key in enumerate(("yaw", "pitch", "roll", "scale")):
        if key in tracks:
            motion[:, column] = tracks[key]
    if name == "head_shake":
        time = np.arange(frames) / fps
        for column, key in enumerate(("yaw", "pitch")):
            motion[:, column] *= np.sin(2 * np.pi * SHAKE_HZ[key] * time)
    return np.clip(expressions, 0.0, 1.0), motion


class ClipMaker:
    """Renders clips of FRAMES frames of random faces, the randomness drawn from SEED. With
    ONE_PERSON every clip shows the same face (identity and look): a face profile made from one
    clip can then be scored on the others."""

    def __init__(self, model: FaceModel, frames: int, seed: int = 0,
                 one_person: bool = False) -> None:
        if frames < 1:
            raise FacetrackError(f"--frames must be at least 1, got {frames}")
        self.model = model
        self.frames = frames
        self.seed = seed
        self.face = SyntheticFace(model)
        self.person: tuple[np.ndarray, Appearance] | None = None
        if one_person:
            rng = np.random.default_rng([seed, PERSON_STREAM])
            self.person = self._identity(rng), Appearance.random(rng)
        face_region = model.vertices(region="narrow_face")
        self._face_height_cm = float(np.ptp(face_region[:, 1]))

    def truth(self, name: str) -> tuple[Truth, np.random.Generator]:
        """The ground truth of clip NAME, and the generator that goes on to draw its looks."""
        rng = np.random.default_rng([self.seed, CLIP_NAMES.index(name)])
        camera = replace(Intrinsics.from_fov(WIDTH, HEIGHT, rng.uniform(*FOV_DEGREES)),
                         assumed=False)
        identity = self._identity(rng)  # drawn either way: the clip's other draws stay the same
        if self.person is not None:
            identity = self.person[0]
        distance = camera.fy * self._face_height_cm / rng.uniform(*FACE_PIXELS)
        # The model origin (mid-nose, the middle of the face) sits near the image centre: up to
        # a tenth of the width and 8% of the height away, along this line of sight.
        shift = rng.uniform(-1, 1, 2) * [0.1 * WIDTH / camera.fx, 0.08 * HEIGHT / camera.fy]
        centre = np.array([*shift, 1.0])
        expressions, motion = scripted(name, self.frames)
        if name != "still":  # still stays exactly still
            motion[:, :3] += _micro_motion(rng, self.frames, 0.6)
        rotations = np.array([rotation(*angles) for angles in motion[:, :3]])
        # "scale" is the face's size on screen: the head moves along its line of sight.
        translations = centre * (distance / motion[:, 3:])
        if name != "still":
            translations += _micro_motion(rng, self.frames, 0.15)
        truth = Truth(name, self.seed, FPS, camera, identity, ICT_EXPRESSION_NAMES,
                      expressions, rotations, translations)
        return truth, rng

    def _identity(self, rng: np.random.Generator) -> np.ndarray:
        return (rng.standard_normal(self.model.identity_count) * IDENTITY_SCALE).astype(
            np.float32)

    def make(self, name: str, outdir: Path) -> tuple[Path, Path]:
        """Write NAME.mp4 and NAME.json into OUTDIR; returns their paths."""
        truth, rng = self.truth(name)
        appearance = Appearance.random(rng)
        if self.person is not None:
            appearance = self.person[1]
        background = random_background(rng, WIDTH, HEIGHT)
        video, truth_path = outdir / f"{name}.mp4", outdir / f"{name}.json"
        try:
            # An earlier clip's truth must never stand beside this clip's video.
            truth_path.unlink(missing_ok=True)
            with VideoWriter(video, truth.fps, crf=CRF) as writer:
                for i in range(len(truth)):
                    image, _ = self.face.render(truth.identity, truth.expressions[i],
                                                truth.rotations[i], truth.translations[i],
                                                truth.intrinsics, appearance, background)
                    noise = rng.normal(0.0, SENSOR_NOISE, image.shape).astype(np.float32)
                    writer.write(np.clip(image + noise, 0, 255).astype(np.uint8), i / truth.fps)
            truth_path.write_text(json.dumps(truth.to_dict()) + "\n")
        except OSError as error:
            raise FacetrackError(f"cannot write {error.filename}: {error.strerror}") from None
        except KeyboardInterrupt:
            video.unlink(missing_ok=True)  # a clip without its truth is no clip
            raise
        return video, truth_path


def _eased(keyframes: Keyframes, key: str, phases: np.ndarray) -> np.ndarray:
    """Channel KEY through the keyframes at PHASES, eased in and out between keyframes."""
    rest = 1.0 if key == "scale" else 0.0
    times = np.array([phase for phase, _ in keyframes])
    values = np.array([channels.get(key, rest) for _, channels in keyframes])
    segment = np.clip(np.searchsorted(times, phases, side="right") - 1, 0, len(times) - 2)
    start, end = times[segment], times[segment + 1]
    fraction = np.clip((phases - start) / np.maximum(end - start, 1e-9), 0.0, 1.0)
    ease = (1 - np.cos(np.pi * fraction)) / 2
    return values[segment] + ease * (values[segment + 1] - values[segment])


def _micro_motion(rng: np.random.Generator, frames: int, size: float) -> np.ndarray:
    """(N, 3) slow wandering of about SIZE, a new direction about every half second: a head's
    sway while it holds a pose."""
    knots = max(frames // 15, 1) + 2
    values = rng.normal(0.0, size, (knots, 3))
    positions = np.linspace(0, knots - 1, frames)
    return np.stack([np.interp(positions, np.arange(knots), values[:, k]) for k in range(3)],
                    axis=1)


def _rounded(values: np.ndarray) -> list:
    return np.round(np.asarray(values, np.float64), 6).tolist()


def add_synth_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        description="Render scripted clips of random ICT faces: NAME.mp4 (H.264, "
                    f"{WIDTH}x{HEIGHT}, {FPS:.0f} fps) and NAME.json (identity, per-frame "
                    "expression, head pose and camera) for each clip. Clips: "
                    f"{', '.join(CLIP_NAMES)}, or all.")
    p.add_argument("outdir", metavar="OUTDIR", type=Path, help="folder to write the clips into")
    p.add_argument("--clips", default="all", help="comma-separated clip names (default: all)")
    p.add_argument("--frames", type=int, default=150, metavar="N",
                   help="frames per clip (default 150: 5 s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--one-person", action="store_true",
                   help="every clip shows the same face (identity, skin, light): one person's "
                        "clips, e.g. to make a face profile from one and score it on the others")
    p.add_argument("--model", metavar="PATH",
                   help="model file (default: $FACETRACK_MODEL, else the installed one)")
    p.set_defaults(func=_synth)


def _synth(args: argparse.Namespace) -> int:
    names = clip_names(args.clips)
    maker = ClipMaker(FaceModel.load(args.model), args.frames, args.seed, args.one_person)
    try:
        args.outdir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FacetrackError(f"cannot write to {args.outdir}: {error.strerror}") from None
    with stop_signals_as_interrupt():
        for done, name in enumerate(names):
            try:
                video, truth = maker.make(name, args.outdir)
            except KeyboardInterrupt:
                made = "1 clip was" if done == 1 else f"{done} clips were"
                print(f"facetrack: interrupted in {name}, which is not written; {made} made "
                      "before it", file=sys.stderr)
                return 130
            print(f"{name}: {video} and {truth.name} ({args.frames} frames)", flush=True)
    return 0
