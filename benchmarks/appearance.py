"""How far MediaPipe's landmarks, and what the regressor reads from them, move when only the look
of a face changes: the floor under shape and pose accuracy from landmarks alone.

    .venv/bin/python benchmarks/appearance.py [--faces N] [--looks K] [--seed S] [--refine STEPS]

Each of N random faces (identity, expression, head pose and camera drawn as for training,
`engines.training_data.random_faces`) is rendered K times with nothing changed but its look
(skin, brow and lip colours, light, background), and MediaPipe reads each render in static mode.
Per face, over its looks, the table gives:

- how far the landmarks move with the look (RMS distance from their mean over the looks), next to
  how far they move with the identity (the same render with the mean face's identity, same look):
  what the regressor must tell apart;
- the rotation's spread (RMS angle from the looks' mean rotation) and error, as `facetrack run`
  fits it (the regressor, then refinement);
- the neutral shape error of each look's identity, and of the identity averaged over the looks.

Medians and p95 are over the faces.
"""

from __future__ import annotations

import argparse

import numpy as np

from engines.training_data import random_faces
from tracker.embedding import LandmarkEmbedding
from tracker.face_model import FaceModel
from tracker.landmarks import FaceMesh
from tracker.native_log import filter_native_stderr
from tracker.refine import DEFAULT_STEPS, Refiner
from tracker.regressor import Regressor
from tracker.render import Appearance, SyntheticFace, random_background
from tracker.sampling import PoseRange
from tracker.scoring import REGION, posed_error_mm, rotation_error_deg
from tracker.shading import shading
from tracker.smoothing import nearest_rotation

# Faces within the range users mostly show (the harness's clips turn to about 40°).
POSES = PoseRange(yaw=40.0)
ROWS = (("landmarks: moved by the look, RMS px", "look_px"),
        ("landmarks: moved by the identity (vs mean face), RMS px", "identity_px"),
        ("rotation: spread over the looks, °", "rotation_spread"),
        ("rotation: error, °", "rotation_error"),
        ("neutral shape error, one look, mm", "neutral_one"),
        ("neutral shape error, identity averaged over the looks, mm", "neutral_mean"),
        ("neutral shape error of the mean face, mm", "neutral_zero"))


def measure(face: tuple, model: FaceModel, synthetic: SyntheticFace, mesh: FaceMesh,
            regressor: Regressor, refiner: Refiner, looks: int,
            rng: np.random.Generator) -> dict[str, float] | None:
    """ROWS' numbers for one FACE (identity, expression, rotation, translation, camera) over
    LOOKS renders; None when MediaPipe missed any."""
    true_identity, expression, true_rotation, translation, camera = face
    seen, seen_mean_face, shadings = [], [], []
    for _ in range(looks):
        look = Appearance.random(rng)
        background = random_background(rng, camera.width, camera.height)
        pair = []  # (landmarks, shading) of the face, then of the mean face in its place
        for identity in (true_identity, np.zeros_like(true_identity)):
            image, _ = synthetic.render(identity, expression, true_rotation, translation,
                                        camera, look, background)
            found = mesh.process(image)
            if not found:
                return None
            pair.append((found[0].landmarks[:, :2], shading(image, found[0].landmarks)))
        seen.append(pair[0][0])
        shadings.append(pair[0][1])
        seen_mean_face.append(pair[1][0])
    landmarks = np.array(seen)
    fits = regressor.fit(landmarks, np.array(shadings), camera)
    fits = [refiner.refine(fits.face(i), landmarks[i], camera) for i in range(looks)]
    rotations = np.array([fit.rotation for fit in fits])
    identities = np.array([fit.identity for fit in fits])
    true = model.vertices(true_identity, region=REGION).astype(np.float64)
    middle = nearest_rotation(rotations.mean(axis=0))

    def neutral(identity: np.ndarray) -> np.ndarray:
        shape = model.vertices(identity.astype(np.float32), region=REGION).astype(np.float64)
        return posed_error_mm(shape, np.broadcast_to(true, shape.shape), align=True)

    return {
        "look_px": _rms(landmarks - landmarks.mean(axis=0)),
        "identity_px": _rms(landmarks - np.array(seen_mean_face)),
        "rotation_spread": _rms(rotation_error_deg(rotations, middle)),
        "rotation_error": float(np.median(rotation_error_deg(rotations, true_rotation))),
        "neutral_one": float(np.median(neutral(identities))),
        "neutral_mean": float(neutral(identities.mean(axis=0))),
        "neutral_zero": float(neutral(np.zeros(model.identity_count))),
    }


def _rms(values: np.ndarray) -> float:
    """RMS length of the last axis' vectors (or of scalars)."""
    values = np.asarray(values)
    squares = (values ** 2).sum(axis=-1) if values.ndim > 1 else values ** 2
    return float(np.sqrt(squares.mean()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=24, help="random faces (default 24)")
    parser.add_argument("--looks", type=int, default=8, help="looks per face (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--refine", type=int, default=DEFAULT_STEPS,
                        help="refinement steps (default: facetrack run's)")
    parser.add_argument("--model", help="face model file (default: the installed one)")
    args = parser.parse_args()
    filter_native_stderr()
    model = FaceModel.load(args.model)
    refiner = Refiner(model, LandmarkEmbedding.load(model.triangles), steps=args.refine)
    regressor = Regressor(engine="onnxruntime")
    rng = np.random.default_rng(args.seed)
    results = []
    with FaceMesh(1, static_image_mode=True) as mesh:
        synthetic = SyntheticFace(model)
        identity, expression, rotation, translation, _, cameras = random_faces(
            model, rng, args.faces, POSES)
        for face in zip(identity, expression, rotation, translation, cameras, strict=True):
            result = measure(face, model, synthetic, mesh, regressor, refiner, args.looks, rng)
            if result is not None:
                results.append(result)
    print(f"{len(results)} of {args.faces} faces found in all {args.looks} looks; regressor "
          f"{regressor.manifest.model_version}, {args.refine} refinement step(s)\n")
    print("| per face, over its looks | median | p95 |")
    print("|---|---:|---:|")
    for label, key in ROWS:
        values = np.array([r[key] for r in results])
        print(f"| {label} | {np.median(values):.2f} | {np.percentile(values, 95):.2f} |")


if __name__ == "__main__":
    main()
