"""Accuracy of ``facetrack run`` on synthetic clips with ground truth (issue 3, item 6): the
yardstick for the regressor, next to the mean face posed with the true head pose.

    .venv/bin/python benchmarks/accuracy.py [--clips NAMES] [--frames N] [--seed S]
        [--one-person] [--profile-from NAME] [--clips-dir DIR] [--keep DIR] [--json OUT]
        [--run-args 'OPTIONS'] [--model PATH]

It makes the clips with ``facetrack synth`` (or reuses DIR's), runs the real command on each,
``facetrack run --source NAME.mp4 --record NAME.jsonl --record-landmarks --camera CAMERA`` with
a camera file of the clip's true intrinsics, and prints a markdown table of `tracker.scoring`'s
metrics per clip and over all of them. ``--run-args=--no-smooth`` scores the raw regressor.
``--one-person --profile-from still`` makes every clip of one face, a face profile of it from the
still clip (``facetrack calibrate face``), and scores the other clips with and without it.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from streams.errors import FacetrackError
from tracker.face_model import FaceModel
from tracker.scoring import CHANNELS, baseline, overall, read_predictions, score_clip
from tracker.synth import CLIP_NAMES, clip_names, load_truth, write_camera_file

FACETRACK = str(Path(sys.executable).parent / "facetrack")
PROFILE_SECONDS = "2"  # the still stretch a profile averages: fits a clip of 90 frames
# Table columns: summary key, heading, decimals.
COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("tracked", "tracked %", 1), ("posed_aligned_mm", "posed aligned mm", 2),
    ("posed_camera_mm", "posed camera mm", 2), ("neutral_mm", "neutral mm", 2),
    ("rotation_deg", "rotation °", 2), ("translation_pct", "translation %", 2),
    ("motion_mm", "extra motion mm/frame", 2), ("lag_yaw", "yaw lag", 0),
    ("lag_jawOpen", "jawOpen lag", 0),
    *((f"{key}_{channel}", f"{key} {channel}", 2) for key in ("r", "gain") for channel in CHANNELS),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", help="comma-separated clip names (default: all; with --clips-dir, "
                                   "all that DIR holds)")
    p.add_argument("--frames", type=int, default=90, metavar="N",
                   help="frames per generated clip (default 90)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated clips (default 0)")
    p.add_argument("--one-person", action="store_true",
                   help="generate every clip of the same face (facetrack synth --one-person)")
    p.add_argument("--profile-from", metavar="NAME",
                   help="make a face profile from clip NAME and score the other clips with it "
                        "as well (the clips should show one person: --one-person)")
    p.add_argument("--clips-dir", type=Path, metavar="DIR",
                   help="score the clips (NAME.mp4, NAME.json) already in DIR instead of making "
                        "new ones (--frames and --seed are then unused)")
    p.add_argument("--keep", type=Path, metavar="DIR",
                   help="keep the clips, camera files and records in DIR (default: a temporary "
                        "folder, removed)")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON")
    p.add_argument("--run-args", default="", metavar="'OPTIONS'",
                   help="more options for facetrack run, e.g. '--no-smooth' (the raw regressor) "
                        "or '--refine 2'")
    p.add_argument("--model", metavar="PATH",
                   help="model file (default: $FACETRACK_MODEL, else the installed one)")
    return p.parse_args(argv)


def facetrack(*args: str) -> None:
    """Run the real command; its last line of complaint becomes ours."""
    result = subprocess.run([FACETRACK, *args], capture_output=True, text=True)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
        raise FacetrackError(f"facetrack {args[0]} failed: "
                             f"{lines[-1].removeprefix('facetrack: error: ')}")


def clips(args: argparse.Namespace, workdir: Path) -> tuple[Path, list[str]]:
    """The folder of the clips to score and their names, made by ``facetrack synth`` unless
    --clips-dir names one."""
    if args.clips_dir is None:
        names = clip_names(args.clips or "all")
        model = ["--model", args.model] if args.model else []
        person = ["--one-person"] if args.one_person else []
        facetrack("synth", str(workdir), "--clips", ",".join(names), "--frames",
                  str(args.frames), "--seed", str(args.seed), *person, *model)
        return workdir, names
    if args.clips is None:
        names = [name for name in CLIP_NAMES if _has_clip(args.clips_dir, name)]
        if not names:
            raise FacetrackError(f"no clips (NAME.mp4 with NAME.json) in {args.clips_dir}")
        return args.clips_dir, names
    names = clip_names(args.clips)
    missing = [name for name in names if not _has_clip(args.clips_dir, name)]
    if missing:
        raise FacetrackError(f"{args.clips_dir} lacks {', '.join(missing)} (.mp4 and .json)")
    return args.clips_dir, names


def _has_clip(folder: Path, name: str) -> bool:
    return all((folder / f"{name}{suffix}").is_file() for suffix in (".mp4", ".json"))


def table(rows: dict[str, dict[str, float]]) -> str:
    """A markdown table, one row per clip; NaN (undefined) shows as a dash."""
    def cell(key: str, value: float, decimals: int) -> str:
        if not math.isfinite(value):
            return "—"
        return f"{value * 100 if key == 'tracked' else value:.{decimals}f}"
    lines = ["| clip | " + " | ".join(heading for _, heading, _ in COLUMNS) + " |",
             "|---|" + "---:|" * len(COLUMNS)]
    lines += [f"| {name} | " + " | ".join(cell(key, row[key], decimals)
                                          for key, heading, decimals in COLUMNS) + " |"
              for name, row in rows.items()]
    return "\n".join(lines)


def profile(folder: Path, name: str, workdir: Path) -> Path:
    """The face profile `facetrack calibrate face` makes of clip NAME, with its true camera."""
    out = workdir / f"{name}.profile.json"
    camera = write_camera_file(load_truth(folder / f"{name}.json"),
                               workdir / f"{name}.camera.json")
    facetrack("calibrate", "face", "--source", str(folder / f"{name}.mp4"), "--camera",
              str(camera), "--seconds", PROFILE_SECONDS, "--out", str(out))
    return out


def evaluate(args: argparse.Namespace, workdir: Path) -> dict:
    """Make or find the clips, track each (and with --profile-from, each other clip with the
    profile too), score the tracker and the baseline."""
    folder, names = clips(args, workdir)
    model = FaceModel.load(args.model)
    runs = {"tracker": shlex.split(args.run_args)}
    if args.profile_from:
        if args.profile_from not in names:
            raise FacetrackError(f"--profile-from {args.profile_from}: no such clip among "
                                 f"{', '.join(names)}")
        names = [name for name in names if name != args.profile_from]
        runs["profiled"] = [*runs["tracker"], "--profile",
                            str(profile(folder, args.profile_from, workdir))]
    scores: dict[str, list[dict]] = {predictor: [] for predictor in (*runs, "baseline")}
    for name in names:
        truth = load_truth(folder / f"{name}.json")
        camera = str(write_camera_file(truth, workdir / f"{name}.camera.json"))
        for predictor, options in runs.items():
            record = workdir / (f"{name}.jsonl" if predictor == "tracker"
                                else f"{name}.{predictor}.jsonl")
            facetrack("run", "--source", str(folder / f"{name}.mp4"), "--record", str(record),
                      "--record-landmarks", "--quiet", "--camera", camera, *options)
            scores[predictor].append(score_clip(truth, read_predictions(record, truth), model))
        scores["baseline"].append(score_clip(truth, baseline(truth), model))
    return {"clips": names, "run_args": args.run_args, "profile_from": args.profile_from, **{
        predictor: {**dict(zip(names, (s["summary"] for s in clip_scores), strict=True)),
                    "all": overall(clip_scores)}
        for predictor, clip_scores in scores.items()}}


def report(results: dict) -> str:
    options = f" {results['run_args']}" if results["run_args"] else ""
    profiled = (f"## tracker with the face profile of clip {results['profile_from']} (facetrack "
                f"run{options} --profile)\n\n{table(results['profiled'])}\n\n"
                if results["profile_from"] else "")
    return (f"## tracker (facetrack run{options})\n\n{table(results['tracker'])}\n\n"
            f"{profiled}## baseline: mean face, neutral, true head pose\n\n"
            f"{table(results['baseline'])}\n\n"
            "Per-frame errors: median over frames (extra motion: mean); 'all': pooled over "
            "every frame of every clip, per-clip numbers (neutral, lags, r) averaged.")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            results = evaluate(args, args.keep)
        else:
            with tempfile.TemporaryDirectory(prefix="facetrack-accuracy-") as workdir:
                results = evaluate(args, Path(workdir))
        print(report(results))
        if args.json:
            # NaN is not JSON: undefined numbers become null.
            args.json.write_text(json.dumps(_nulls(results), indent=1) + "\n")
    except (FacetrackError, OSError) as error:
        print(f"accuracy: error: {error}", file=sys.stderr)
        return 2
    return 0


def _nulls(value: object) -> object:
    if isinstance(value, dict):
        return {key: _nulls(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_nulls(item) for item in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


if __name__ == "__main__":
    sys.exit(main())
