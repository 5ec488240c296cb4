"""How far MediaPipe moves its landmarks for each expression shape, against how far the landmark
embedding says the face's surface moves them: a gain per shape, 1 where MediaPipe follows the
surface, under 1 where it moves less (its landmark model keeps a face nearer a neutral shape
than the face is). The refinement models the landmarks with the embedding, so without these
gains it reads a shape MediaPipe under-moves at the size of its landmarks' motion: a full smile
as three quarters of one (`tracker.refine.RESPONSE_SHAPES`, docs/regressor.md).

    .venv/bin/python -m tracker.landmark_response [--renders 6000] [--seed 901]

Renders random faces (identity, expression, pose to ±45° yaw, camera, look;
`tracker.embedding_fit.random_renders`) and runs MediaPipe on each in static mode. Per render,
the embedding's landmarks of the true face are projected, and so are those of the true face with
each active shape taken out; the difference is what that shape moves. MediaPipe's landmarks,
moved by the 2D similarity that best fits them to the true face's (MediaPipe's whole mesh sits
a few pixels off, which is not expression), minus the true face's, are then regressed on those
moves, all renders at once, in inter-ocular distances (the face oval weighted as the refinement
weights it). A left and a right shape share one gain, as the face model's halves mirror each
other. Odd and even renders are also fitted apart: where the two halves disagree, the shape
moves too few landmarks for its gain to be known.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calibrate.files import load_versioned
from streams.errors import FacetrackError
from tracker.embedding import LandmarkEmbedding
from tracker.embedding_fit import random_renders, remove_similarity
from tracker.expressions import ICT_EXPRESSION_NAMES
from tracker.face_model import FaceModel, posed
from tracker.landmarks import fit_weights
from tracker.native_log import filter_native_stderr
from tracker.render import project
from tracker.sampling import PoseRange

FORMAT = "facetrack-landmark-response"
VERSION = 1
DEFAULT_PATH = Path(__file__).with_name("data") / "landmark_response.json"
HINT = "regenerate it with python -m tracker.landmark_response"
ACTIVE = 0.05  # a shape counts as active in a render above this value
EYES = (33, 263)  # outer eye corners: the inter-ocular distance
POSES = PoseRange(yaw=45.0)


def pair_name(shape: str) -> str:
    """The name a left and a right shape share: mouthSmile for mouthSmile_L and _R."""
    return shape.removesuffix("_L").removesuffix("_R")


PAIRS = list(dict.fromkeys(pair_name(name) for name in ICT_EXPRESSION_NAMES))
# (53, pairs): shape i belongs to pair j
PAIRING = np.array([[pair_name(name) == pair for pair in PAIRS] for name in ICT_EXPRESSION_NAMES],
                   np.float64)


@dataclass(frozen=True)
class LandmarkResponse:
    """Per shape pair: its gain, the gains of the two halves of the renders, and its support
    (the summed squares of its moves, in inter-ocular distances: how much evidence there was)."""

    gain: np.ndarray  # (pairs,)
    halves: np.ndarray  # (2, pairs)
    support: np.ndarray  # (pairs,)

    @classmethod
    def load(cls, path: str | Path = DEFAULT_PATH) -> LandmarkResponse:
        data = load_versioned(path, "landmark response file", FORMAT, VERSION, HINT)
        try:
            rows = [data["pairs"][pair] for pair in PAIRS]
            return cls(np.array([row["gain"] for row in rows], np.float64),
                       np.array([row["halves"] for row in rows], np.float64).T,
                       np.array([row["support"] for row in rows], np.float64))
        except (KeyError, TypeError) as error:
            raise FacetrackError(f"{path}: no gain for the shape pair {error}: {HINT}") from None

    def save(self, path: str | Path, **provenance: object) -> None:
        pairs = {pair: {"gain": round(float(self.gain[k]), 4),
                        "halves": [round(float(h), 4) for h in self.halves[:, k]],
                        "support": round(float(self.support[k]), 2)}
                 for k, pair in enumerate(PAIRS)}
        data = {"format": FORMAT, "version": VERSION, **provenance, "pairs": pairs}
        Path(path).write_text(json.dumps(data, indent=1) + "\n")

    def of(self, pairs: tuple[str, ...]) -> np.ndarray:
        """(53,) gains in ICT order: each shape of PAIRS its pair's gain, every other shape 1."""
        chosen = np.array([pair in pairs for pair in PAIRS])
        return PAIRING @ np.where(chosen, self.gain, 1.0)


class Accumulator:
    """The normal equations of the regression, summed render by render, for each half."""

    def __init__(self) -> None:
        self.normal = np.zeros((2, len(PAIRS), len(PAIRS)))
        self.moved = np.zeros((2, len(PAIRS)))
        self._weight = np.sqrt(fit_weights().astype(np.float64))[:, None]
        self.count = 0

    def add(self, residual: np.ndarray, moves: np.ndarray) -> None:
        """RESIDUAL (478, 2): MediaPipe's landmarks less the true face's; MOVES (53, 478, 2):
        what each shape moves; both in inter-ocular distances."""
        design = (moves * self._weight).reshape(len(moves), -1).T @ PAIRING  # (956, pairs)
        half = self.count % 2
        self.normal[half] += design.T @ design
        self.moved[half] += design.T @ (residual * self._weight).reshape(-1)
        self.count += 1

    def response(self) -> LandmarkResponse:
        both = _solve(self.normal.sum(0), self.moved.sum(0))
        halves = np.stack([_solve(n, m) for n, m in zip(self.normal, self.moved, strict=True)])
        return LandmarkResponse(both, halves, np.diag(self.normal.sum(0)))


def _solve(normal: np.ndarray, moved: np.ndarray) -> np.ndarray:
    # a whisper of ridge, so a pair no render moved gets gain 1 rather than no answer
    ridge = 1e-3 * np.trace(normal) / len(normal) * np.eye(len(normal))
    return 1.0 + np.linalg.solve(normal + ridge, moved)


def measure(model: FaceModel, embedding: LandmarkEmbedding, count: int,
            seed: int) -> tuple[LandmarkResponse, int]:
    """The response over COUNT renders, and how many of them MediaPipe found a face in."""
    sums = Accumulator()
    for face in random_renders(model, count, seed, POSES, neutral_share=0.0):
        active = np.nonzero(face.expression > ACTIVE)[0]
        without = np.repeat(face.expression[None], 1 + len(active), axis=0)
        without[np.arange(1, 1 + len(active)), active] = 0.0  # row 0: the whole face
        points = embedding.points(model.vertices(face.identity, without), face.yaw)
        pixels = project(posed(points, face.rotation, face.translation), face.camera)
        size = np.linalg.norm(pixels[0, EYES[0]] - pixels[0, EYES[1]])
        shown = remove_similarity(face.landmarks[None].astype(np.float64), pixels[:1])[0]
        moves = np.zeros((len(ICT_EXPRESSION_NAMES), 478, 2))
        moves[active] = pixels[0] - pixels[1:]
        sums.add((shown - pixels[0]) / size, moves / size)
    return sums.response(), sums.count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--renders", type=int, default=6000, help="renders in all")
    parser.add_argument("--seed", type=int, default=901)
    parser.add_argument("--model", help="face model file (default: the installed one)")
    parser.add_argument("--out", default=str(DEFAULT_PATH), help="response file to write")
    args = parser.parse_args(argv)
    filter_native_stderr()
    model = FaceModel.load(args.model)
    response, faces = measure(model, LandmarkEmbedding.load(model.triangles), args.renders,
                              args.seed)
    given = sys.argv[1:] if argv is None else argv
    response.save(args.out, seed=args.seed, renders=args.renders, faces=faces,
                  command=" ".join(["python -m tracker.landmark_response", *given]))
    print(f"wrote {args.out}: {faces} renders with a face of {args.renders}\n")
    print("| shapes | gain | one half of the renders | the other | support |")
    print("|---|---:|---:|---:|---:|")
    for k in np.argsort(-response.support):
        print(f"| {PAIRS[k]} | {response.gain[k]:.2f} | {response.halves[0, k]:.2f} | "
              f"{response.halves[1, k]:.2f} | {response.support[k]:.3g} |")


if __name__ == "__main__":
    main()
