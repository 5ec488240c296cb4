"""How well the fitted face explains real faces: the landmark reprojection error of the fitted
mesh on ../shared/footage, where synthetic training can fail.

    .venv/bin/python benchmarks/footage.py [--refine STEPS] [--frames N] [--regressor FILE]

For every frame with a face, the fitted mesh (identity, expression, pose) is put through the
landmark embedding and projected, with the shapes MediaPipe under-moves
(`tracker.refine.RESPONSE_SHAPES`) at the size of its landmarks' motion, as the refinement
models them. The table gives, per clip, the mean distance to MediaPipe's 478 landmarks in % of
the inter-ocular distance (iris centres), median and p95 over frames, for the regressor alone
and after refinement. The same number on renders, where the truth is known,
is the embedding's own floor (tracker/data/landmark_embedding.json: metrics).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from streams.errors import FacetrackError
from streams.sources import open_source
from tracker.embedding import LandmarkEmbedding
from tracker.embedding_fit import IRIS_CENTRES
from tracker.face_model import FaceModel, posed
from tracker.landmark_response import LandmarkResponse
from tracker.native_log import filter_native_stderr
from tracker.pipeline import FaceTracker
from tracker.pose import angles
from tracker.refine import DEFAULT_STEPS, RESPONSE_SHAPES, Refiner
from tracker.regressor import DEFAULT_MODEL, Regressor
from tracker.render import project
from tracker.tracks import TRACKING

FOOTAGE = Path(__file__).resolve().parents[2] / "shared" / "footage"
CLIPS = ("WolfgangLanger_Pexels.mp4", "single_face.mp4", "face_noface.mov", "noface_face.mov")


def errors(clip: Path, frames: int, model: FaceModel, embedding: LandmarkEmbedding,
           response: np.ndarray, refiner: Refiner | None, regressor: Path) -> np.ndarray:
    """Per frame with a face: the mean landmark error in % of the inter-ocular distance, the
    expressions scaled by RESPONSE (53,) as the refinement models them, the faces fitted by
    the REGRESSOR file."""
    index = embedding.vertex_index
    model.add_region("embedding", index)
    out = []
    with open_source(str(clip)) as source, \
            FaceTracker(1, regressor=Regressor(regressor, engine="onnxruntime"),
                        refiner=refiner) as tracker:
        for frame in source:
            if frame.index == frames:
                break
            camera = tracker.intrinsics(*frame.size)
            for face in tracker.process(frame):
                if face.status != TRACKING:
                    continue
                fit, seen = face.fit, face.observation.landmarks[:, :2]
                shown = fit.expression * response
                mesh = posed(model.vertices(fit.identity, shown, "embedding"),
                             fit.rotation, fit.translation)
                points = embedding.points(mesh, float(angles(fit.rotation)[0]), index)
                miss = np.linalg.norm(project(points, camera) - seen, axis=-1).mean()
                iod = np.linalg.norm(seen[IRIS_CENTRES[0]] - seen[IRIS_CENTRES[1]])
                out.append(100 * miss / iod)
    return np.array(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--refine", type=int, default=DEFAULT_STEPS,
                        help="refinement steps to compare (default: facetrack run's)")
    parser.add_argument("--frames", type=int, default=300, help="frames per clip at most")
    parser.add_argument("--model", help="face model file (default: the installed one)")
    parser.add_argument("--regressor", type=Path, default=DEFAULT_MODEL,
                        help="regressor ONNX file, its manifest beside it (default: the "
                             "committed one)")
    args = parser.parse_args()
    filter_native_stderr()
    try:
        table(args)
    except (FacetrackError, OSError) as error:
        print(f"footage: error: {error}", file=sys.stderr)
        return 2
    return 0


def table(args: argparse.Namespace) -> None:
    """Print the table of ARGS' regressor and refinement on every clip of the footage."""
    model = FaceModel.load(args.model)
    embedding = LandmarkEmbedding.load(model.triangles)
    response = LandmarkResponse.load().of(RESPONSE_SHAPES)
    refiner = Refiner(model, embedding, steps=args.refine, response=response)
    Regressor(args.regressor, engine="onnxruntime").close()  # a bad file: an error, no table
    print("| clip | frames with a face | regressor median % IOD | p95 | "
          f"refined ({args.refine} steps) median | p95 |")
    print("|---|---:|---:|---:|---:|---:|")
    pooled: dict[str, list[np.ndarray]] = {"raw": [], "refined": []}
    for name in CLIPS:
        raw = errors(FOOTAGE / name, args.frames, model, embedding, response, None,
                     args.regressor)
        refined = errors(FOOTAGE / name, args.frames, model, embedding, response, refiner,
                         args.regressor)
        pooled["raw"].append(raw)
        pooled["refined"].append(refined)
        print(f"| {name} | {len(raw)} | {_cells(raw)} | {_cells(refined)} |")
    print(f"| all | {sum(map(len, pooled['raw']))} | {_cells(np.concatenate(pooled['raw']))} | "
          f"{_cells(np.concatenate(pooled['refined']))} |")


def _cells(values: np.ndarray) -> str:
    if not len(values):
        return "— | —"
    return f"{np.median(values):.2f} | {np.percentile(values, 95):.2f}"


if __name__ == "__main__":
    sys.exit(main())
