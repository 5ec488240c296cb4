"""How far MediaPipe moves its landmarks for each expression shape, against how far the landmark
embedding says the face's surface moves them: a gain per shape, 1 where MediaPipe follows the
surface, under 1 where it moves less (its landmark model keeps a face nearer a neutral shape
than the face is).

    .venv/bin/python benchmarks/landmark_response.py [--renders 1000] [--seed 777]

Renders random faces (identity, expression, pose to ±45° yaw, camera, look;
`tracker.embedding_fit.random_renders`) and runs MediaPipe on each in static mode. Per render, the
embedding's landmarks of the true face are projected, and so are those of the true face with
each active shape taken out; the difference is what that shape moves. MediaPipe's landmarks,
moved by the 2D similarity that best fits them to the true face's (MediaPipe's whole mesh sits
a few pixels off, which is not expression), minus the true face's, are then regressed on those
moves, all renders at once, in inter-ocular distances (the face oval weighted as the
refinement weights it). The renders are split in two halves, fitted apart: where the halves
disagree, the shape moves too few landmarks for its gain to be known.
"""

from __future__ import annotations

import argparse

import numpy as np

from tracker.embedding import LandmarkEmbedding
from tracker.embedding_fit import random_renders, remove_similarity
from tracker.expressions import ICT_EXPRESSION_NAMES
from tracker.face_model import FaceModel, posed
from tracker.landmarks import CONTOUR
from tracker.native_log import filter_native_stderr
from tracker.refine import CONTOUR_WEIGHT
from tracker.render import project
from tracker.sampling import PoseRange

ACTIVE = 0.05  # a shape counts as active in a render above this value
EYES = (33, 263)  # outer eye corners: the inter-ocular distance


def renders(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(residuals (N, 478, 2), moves (N, 53, 478, 2)) in inter-ocular distances, over the
    renders where MediaPipe finds the face."""
    model = FaceModel.load()
    embedding = LandmarkEmbedding.load(model.triangles)
    residuals, moves = [], []
    for face in random_renders(model, count, seed, PoseRange(yaw=45.0), neutral_share=0.0):
        active = np.nonzero(face.expression > ACTIVE)[0]
        without = np.repeat(face.expression[None], 1 + len(active), axis=0)
        without[np.arange(1, 1 + len(active)), active] = 0.0  # row 0: the whole face
        points = embedding.points(model.vertices(face.identity, without), face.yaw)
        pixels = project(posed(points, face.rotation, face.translation), face.camera)
        size = np.linalg.norm(pixels[0, EYES[0]] - pixels[0, EYES[1]])
        shown = remove_similarity(face.landmarks[None].astype(np.float64), pixels[:1])[0]
        move = np.zeros((len(ICT_EXPRESSION_NAMES), 478, 2))
        move[active] = pixels[0] - pixels[1:]
        residuals.append((shown - pixels[0]) / size)
        moves.append(move / size)
    return np.stack(residuals), np.stack(moves)


def gains(residuals: np.ndarray, moves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(gain per shape (53,), its support: the summed squares of its moves)."""
    weight = np.ones(478)
    weight[CONTOUR] = CONTOUR_WEIGHT
    weight = np.sqrt(weight)[:, None]
    design = (moves * weight).transpose(0, 2, 3, 1).reshape(-1, moves.shape[1])
    normal = design.T @ design
    # a whisper of ridge, so a shape no render moved gets gain 1 rather than no answer
    ridge = 1e-3 * np.trace(normal) / len(normal) * np.eye(len(normal))
    extra = np.linalg.solve(normal + ridge, design.T @ (residuals * weight).reshape(-1))
    return 1.0 + extra, np.diag(normal)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--renders", type=int, default=1000, help="renders in all")
    parser.add_argument("--seed", type=int, default=777)
    args = parser.parse_args()
    filter_native_stderr()
    residuals, moves = renders(args.renders, args.seed)
    half = len(residuals) // 2
    first, support = gains(residuals[:half], moves[:half])
    second, _ = gains(residuals[half:], moves[half:])
    both, _ = gains(residuals, moves)
    print(f"{len(residuals)} renders with a face of {args.renders} (seed {args.seed})\n")
    print("| shape | gain | first half | second half | support |")
    print("|---|---:|---:|---:|---:|")
    for index in np.argsort(-support):
        print(f"| {ICT_EXPRESSION_NAMES[index]} | {both[index]:.2f} | {first[index]:.2f} | "
              f"{second[index]:.2f} | {support[index]:.3g} |")


if __name__ == "__main__":
    main()
