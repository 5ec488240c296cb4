"""``facetrack export``: a recording as files other tools import (docs/exports.md): a CSV in
Live Link Face's layout (Unreal's LiveLinkFaceImporter, Blender and Maya add-ons read it) and a
glTF binary of the ICT head with the clip as morph-target and head animation."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from streams.errors import FacetrackError, SinkError
from streams.recording import STDOUT, output_file, read_records, tracked_face
from tracker.arguments import check_distinct
from tracker.cli import warn
from tracker.expressions import ARKIT_NAMES, to_arkit
from tracker.pose import angles

# Live Link Face's CSV: its blendshape order (Unreal's ARKit curve order, which differs from
# Apple's documentation in JawRight/JawLeft and MouthRight/MouthLeft), then 9 rotations.
LLF_BLENDSHAPES: tuple[str, ...] = (
    "EyeBlinkLeft", "EyeLookDownLeft", "EyeLookInLeft", "EyeLookOutLeft", "EyeLookUpLeft",
    "EyeSquintLeft", "EyeWideLeft", "EyeBlinkRight", "EyeLookDownRight", "EyeLookInRight",
    "EyeLookOutRight", "EyeLookUpRight", "EyeSquintRight", "EyeWideRight",
    "JawForward", "JawRight", "JawLeft", "JawOpen", "MouthClose", "MouthFunnel", "MouthPucker",
    "MouthRight", "MouthLeft", "MouthSmileLeft", "MouthSmileRight", "MouthFrownLeft",
    "MouthFrownRight", "MouthDimpleLeft", "MouthDimpleRight", "MouthStretchLeft",
    "MouthStretchRight", "MouthRollLower", "MouthRollUpper", "MouthShrugLower", "MouthShrugUpper",
    "MouthPressLeft", "MouthPressRight", "MouthLowerDownLeft", "MouthLowerDownRight",
    "MouthUpperUpLeft", "MouthUpperUpRight", "BrowDownLeft", "BrowDownRight", "BrowInnerUp",
    "BrowOuterUpLeft", "BrowOuterUpRight", "CheekPuff", "CheekSquintLeft", "CheekSquintRight",
    "NoseSneerLeft", "NoseSneerRight", "TongueOut",
)
LLF_ROTATIONS = ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
                 "RightEyeYaw", "RightEyePitch", "RightEyeRoll")
LLF_COLUMNS = ("Timecode", "BlendShapeCount", *LLF_BLENDSHAPES, *LLF_ROTATIONS)
# LLF records at 60 fps (or 30); Epic's importer infers which from the largest frame number in
# the timecodes, so frames are counted at 60 whatever the source's rate, with the sub-frame
# after the point: the time stays exact.
TIMECODE_FPS = 60
EYE_LOOK_RADIANS = np.radians(30.0)  # an eyeLook value of 1 taken as a 30° eye turn

_LLF_FROM_ARKIT = np.array([[name.lower() for name in ARKIT_NAMES].index(column.lower())
                            for column in LLF_BLENDSHAPES])


def add_export_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export",
                       description="Export one track of a recording: a CSV in Live Link Face's "
                                   "layout and/or a glTF binary (.glb) of the ICT head animated "
                                   "by it (docs/exports.md).")
    p.add_argument("recording", metavar="FILE.jsonl", help="a recording from 'facetrack run'")
    p.add_argument("--csv", metavar="OUT.csv", help="Live Link Face CSV (-: standard output)")
    p.add_argument("--gltf", metavar="OUT.glb", help="glTF binary: head mesh, 53 morph targets, "
                                                     "the clip as an animation (-: standard "
                                                     "output)")
    p.add_argument("--track", type=int, metavar="N",
                   help="the track to export (default: the first tracked face of each frame)")
    p.add_argument("--model", metavar="PATH",
                   help="ICT model file for --gltf (default: the installed model)")
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    if not (args.csv or args.gltf):
        raise FacetrackError("nothing to export: add --csv OUT.csv and/or --gltf OUT.glb")
    check_distinct({"the recording": args.recording, "--csv": args.csv, "--gltf": args.gltf})
    warnings: list[str] = []
    header, records = read_records(args.recording, warnings)
    frames = [(record, face) for record in records
              if (face := tracked_face(record, args.track)) is not None]
    if not frames:
        which = "" if args.track is None else f" of track {args.track}"
        raise FacetrackError(f"{args.recording} has no tracked face{which} with a pose and "
                             "expression to export")
    if args.csv:
        write_llf_csv(args.csv, frames)
        print(f"facetrack: {len(frames)} frames to {_named(args.csv)}", file=sys.stderr)
    if args.gltf:
        # pygltflib costs 0.2 s to import: only glTF exports pay for it, not every command.
        from streams.gltf_export import write_glb

        write_glb(args.gltf, header, frames, args.model)
        print(f"facetrack: {len(frames)} frames to {_named(args.gltf)}", file=sys.stderr)
    return warn(warnings)


def _named(output: str) -> str:
    return "standard output" if output == STDOUT else output


def timecode(seconds: float) -> str:
    """HH:MM:SS:FF.fff with FF.fff the frame and its fraction at `TIMECODE_FPS`."""
    whole, fraction = divmod(max(seconds, 0.0), 1.0)
    frames = round(fraction * TIMECODE_FPS, 3)
    if frames >= TIMECODE_FPS:  # rounding reached the next second
        whole, frames = whole + 1, 0.0
    minutes, second = divmod(int(whole), 60)
    hours, minute = divmod(minutes, 60)
    return f"{hours:02d}:{minute:02d}:{second:02d}:{frames:06.3f}"


def eye_rotations(expression: dict[str, float]) -> list[float]:
    """LLF's LeftEye/RightEye yaw, pitch, roll in radians, approximated from the eyeLook
    expressions (Facetrack tracks no eyeball): yaw is look-toward-the-subject's-left minus
    toward-their-right, pitch is down minus up, each scaled by `EYE_LOOK_RADIANS`; roll is 0."""
    rows = []
    for side, toward_left, toward_right in (("_L", "Out", "In"), ("_R", "In", "Out")):
        look = {d: expression[f"eyeLook{d}{side}"] for d in ("Out", "In", "Up", "Down")}
        rows += [(look[toward_left] - look[toward_right]) * EYE_LOOK_RADIANS,
                 (look["Down"] - look["Up"]) * EYE_LOOK_RADIANS, 0.0]
    return rows


def llf_values(face: dict) -> list[float]:
    """Live Link Face's 61 values of FACE: 52 blendshapes in its order, head and eye rotations
    (radians); as its CSV has them and its app streams them (`streams.livelink`)."""
    expression = face["expression"]
    arkit = to_arkit(expression)[_LLF_FROM_ARKIT]
    head = np.radians(angles(np.asarray(face["rotation"], dtype=float)))
    return [*arkit.tolist(), *head.tolist(), *eye_rotations(expression)]


def llf_row(time: float, face: dict) -> list:
    """One CSV row: timecode, count, then `llf_values`."""
    values = llf_values(face)
    return [timecode(time), len(values), *(round(float(v), 6) for v in values)]


def write_llf_csv(path: str | Path, frames: list[tuple[dict, dict]]) -> None:
    """The frames (record, face) as a Live Link Face CSV; times count from the first frame."""
    start = frames[0][0]["time"]
    try:
        with output_file(path) as file:
            writer = csv.writer(file)
            writer.writerow(LLF_COLUMNS)
            writer.writerows(llf_row(record["time"] - start, face) for record, face in frames)
    except OSError as error:
        raise SinkError(f"cannot write {path}: {error.strerror}") from None
