"""Regressors side by side on one fixed set of renders that no training run draws: the single-frame
answer (no refinement, no smoothing) on faces as varied as training's (yaw to ±60°, random looks,
cameras and expressions), given to MediaPipe in static mode.

    .venv/bin/python benchmarks/unseen_renders.py [--regressor FILE ...] [--faces N] [--seed S]

Training holds out the last of its own renders, so its validation faces change with the config's
`rendered` count and its held-out numbers compare no two such configs; these faces stay the same
(a training config's shards draw seeds 1000 × its seed + shard). The renders are cached beside
training's, named by the digest of the code that renders them. Per regressor: the rotation
error's median over all faces and over those turned more than 30°, the translation error's
median in % of the distance, the identity's neutral shape error (mm, after a similarity
alignment, narrow face: the harness's "neutral" for one frame), and the correlation with the
truth of the harness's expression channels.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np

from engines.base import cache_dir
from engines.onnxruntime_engine import OnnxRuntimeEngine
from engines.train import rendering_digest, save_whole
from engines.training_data import FaceSamples, rendered
from streams.errors import FacetrackError
from tracker.expressions import ICT_EXPRESSION_NAMES
from tracker.face_model import FaceModel
from tracker.native_log import filter_native_stderr
from tracker.pose import angles
from tracker.regressor import DEFAULT_MODEL, model_inputs
from tracker.scoring import CHANNELS, REGION, correlation, posed_error_mm, rotation_error_deg

TURNED = 30.0  # degrees of yaw beyond which a face counts as turned


class Unseen(NamedTuple):
    """The renders and what every regressor is scored against, made once."""

    faces: FaceSamples
    turned: np.ndarray  # (N,) bool: yaw beyond TURNED
    neutral: np.ndarray  # (N, n, 3) the true identities' neutral faces, float64


def unseen_faces(model: FaceModel, count: int, seed: int) -> Unseen:
    """COUNT renders of SEED (fewer: those MediaPipe found), rendered once and cached."""
    path = cache_dir() / "benchmarks" / f"unseen-{rendering_digest()}-seed{seed}-n{count}.npz"
    if not path.exists():
        print(f"rendering {count} faces into {path}", file=sys.stderr)
        save_whole(rendered(model, count, seed, progress=False), path)
    faces = FaceSamples.load(path)
    return Unseen(faces, np.abs(angles(faces.rotation)[:, 0]) > TURNED,
                  model.vertices(faces.identity, region=REGION).astype(np.float64))


def scores(regressor: Path, unseen: Unseen, model: FaceModel) -> dict[str, float]:
    """REGRESSOR's single-frame errors on the UNSEEN faces."""
    faces = unseen.faces
    engine = OnnxRuntimeEngine(regressor)
    out = engine.infer(model_inputs(faces.landmarks, faces.shading,
                                    faces.camera).astype(np.float32))
    turn = rotation_error_deg(out["rotation"].astype(np.float64), faces.rotation)
    distance = np.linalg.norm(faces.translation, axis=1)
    shift = np.linalg.norm(out["translation"] - faces.translation, axis=1)
    shape = posed_error_mm(model.vertices(out["identity"], region=REGION).astype(np.float64),
                           unseen.neutral, align=True)
    result = {"rotation": np.median(turn), "rotation_turned": np.median(turn[unseen.turned]),
              "translation": np.median(shift / distance) * 100, "neutral": shape.mean()}
    for channel, names in CHANNELS.items():
        columns = [ICT_EXPRESSION_NAMES.index(name) for name in names]
        result[channel] = np.mean([correlation(faces.expression[:, c].astype(float),
                                               out["expression"][:, c]) for c in columns])
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--regressor", type=Path, action="append", metavar="FILE.onnx",
                   help=f"a regressor to score; repeat to compare (default: {DEFAULT_MODEL})")
    p.add_argument("--faces", type=int, default=1500, help="renders (default 1500)")
    p.add_argument("--seed", type=int, default=777001, help="their seed (default 777001)")
    args = p.parse_args()
    filter_native_stderr()
    try:
        model = FaceModel.load()
        unseen = unseen_faces(model, args.faces, args.seed)
        rows = [(path, scores(path, unseen, model)) for path in args.regressor or [DEFAULT_MODEL]]
    except FacetrackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{len(unseen.faces)} faces found of {args.faces} (seed {args.seed}), "
          f"{int(unseen.turned.sum())} turned over {TURNED:g}°")
    print(f"| regressor | rotation ° (median) | turned > {TURNED:g}° | translation % | "
          f"neutral mm | " + " | ".join(f"r {name}" for name in CHANNELS) + " |")
    print("|---" * (5 + len(CHANNELS)) + "|")
    for path, row in rows:
        print(f"| {path.name} | " + " | ".join(f"{value:.2f}" for value in row.values()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
