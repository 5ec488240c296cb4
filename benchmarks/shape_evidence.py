"""How strongly MediaPipe's landmarks call for one expression shape, on a synthetic clip with
ground truth: per frame, the landmark residual of the true face (the embedding's landmarks of
the true identity, expression and pose, projected) against MediaPipe's, with the shape swept
from 0 to 1 and everything else held at the truth; and where the refinement (`tracker.refine`,
its committed priors, three steps) takes the shape from 0, given the true pose, identity and
other shapes. A shape the landmarks show plainly has its smallest residual near the truth and
is refined to it; one they do not can only come from the regressor's reading of the image.

    .venv/bin/python benchmarks/shape_evidence.py CLIP.mp4 [--shape mouthPucker] [--every 3]

CLIP.json, the truth, lies beside CLIP.mp4 (`facetrack synth`). MediaPipe runs as `facetrack
run` runs it (tracking mode); the regressor does not run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from streams.sources import open_source
from tracker.embedding import LandmarkEmbedding
from tracker.face_model import FaceModel, posed
from tracker.landmarks import FaceMesh
from tracker.native_log import filter_native_stderr
from tracker.pose import yaw
from tracker.refine import Refiner
from tracker.regressor import FaceFit
from tracker.render import project
from tracker.synth import load_truth

SWEEP = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clip", type=Path)
    parser.add_argument("--shape", default="mouthPucker", help="an ICT expression name")
    parser.add_argument("--every", type=int, default=3, help="show every Nth frame (default 3)")
    args = parser.parse_args()
    filter_native_stderr()
    truth = load_truth(args.clip.with_suffix(".json"))
    shape = truth.expression_names.index(args.shape)
    model = FaceModel.load()
    embedding = LandmarkEmbedding.load(model.triangles)
    refiner = Refiner(model, embedding, steps=3)
    camera = truth.intrinsics
    print(f"{args.clip.name}, {args.shape}: RMS px between MediaPipe's landmarks and the true "
          f"face's with the shape at each value (the least in bold)\n")
    print("| frame | truth | " + " | ".join(f"at {value:.1f}" for value in SWEEP)
          + " | refined from 0 |")
    print("|---:|---:|" + "---:|" * (len(SWEEP) + 1))
    with open_source(str(args.clip)) as source, FaceMesh() as mesh:
        for frame in source:
            faces = mesh.process(frame.image)
            if frame.index % args.every or not faces:
                continue
            index = frame.index
            rotation, translation = truth.rotations[index], truth.translations[index]
            swept = np.repeat(truth.expressions[index][None], len(SWEEP), axis=0)
            swept[:, shape] = SWEEP
            points = embedding.points(model.vertices(truth.identity, swept),
                                      float(yaw(rotation)))
            pixels = project(posed(points, rotation, translation), camera)
            rms = np.sqrt(((pixels - faces[0].landmarks[:, :2]) ** 2).sum(-1).mean(-1))
            cells = [f"**{r:.3f}**" if r == rms.min() else f"{r:.3f}" for r in rms]
            start = FaceFit(truth.identity.astype(np.float32), swept[0].astype(np.float32),
                            rotation, translation)
            refined = refiner.refine(start, faces[0].landmarks, camera).expression[shape]
            print(f"| {index} | {truth.expressions[index, shape]:.2f} | " + " | ".join(cells)
                  + f" | {refined:.2f} |")


if __name__ == "__main__":
    main()
