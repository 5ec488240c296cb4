"""Refinement: a few Levenberg-Marquardt steps on head pose and expression (identity held) that
bring the landmark embedding's projection onto MediaPipe's landmarks.

The regressor answers in one shot from what it learned; refinement checks that answer against
this face's own landmarks. The expression stays near the regressor's (a prior, so the few
landmarks of a shape cannot push it anywhere), and within [0, 1].
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
from mediapipe.python.solutions import face_mesh

from calibrate.intrinsics import Intrinsics
from tracker.embedding import LandmarkEmbedding
from tracker.expressions import ICT_EXPRESSION_NAMES
from tracker.face_model import FaceModel
from tracker.pose import yaw
from tracker.regressor import FaceFit

CONTOUR = np.array(sorted({i for edge in face_mesh.FACEMESH_FACE_OVAL for i in edge}))
CONTOUR_WEIGHT = 0.3  # the jaw line is a silhouette: MediaPipe places it least surely
# Pixels of landmark error that moving a shape by 1 must beat: how far the refinement may take
# a shape from the regressor's reading. Strong by default (brows, eye looks, nose): there the
# landmarks confuse shape with identity and pose, and the regressor reads better; strongest for
# browDown, which the landmarks confuse with the brows' height (r 0.95 alone, 0.82 refined at
# 60 px, 0.93 at 120 on the harness clips of seed 0). Weaker where MediaPipe's dense lip and
# eyelid landmarks show a shape plainly, and for browInnerUp, which lifts the inner brow
# landmarks clear of the rest of the face (r 0.79 alone, 0.92 refined; the clips of seed 1:
# 0.49, 0.85). Chosen on the harness clips of seeds 0 and 1 with regressor 2026.11.25-e2a6e8b8.
EXPRESSION_PRIOR = 60.0
SHAPE_PRIORS = (("eyeBlink", 10.0), ("browInnerUp", 20.0), ("browDown", 120.0), ("mouth", 20.0),
                ("jaw", 20.0), ("cheek", 20.0))
DAMPING = 1e-3
DEFAULT_STEPS = 1  # what `facetrack run` does unless told: most of the gain, 0.8 ms a face


class Refiner:
    """Refines `FaceFit`s against the landmarks they came from."""

    def __init__(self, model: FaceModel, embedding: LandmarkEmbedding,
                 steps: int = DEFAULT_STEPS) -> None:
        self.embedding = embedding
        self.steps = steps
        # The landmarks of the neutral mean face and the landmark offsets of every identity
        # and expression shape, in every yaw bin (B, 1 + 100 + 53, 478, 3), made once: the
        # embedding is linear in the mesh, so per frame a face's landmarks are two small
        # products and a blend of the two bins around its yaw.
        index = embedding.vertex_index
        shapes = np.concatenate([model.neutral[None, index], model.identity_deltas[:, index],
                                 model.expression_deltas[:, index]])
        self._bins = np.stack([embedding.points(shapes, yaw, index)
                               for yaw in embedding.yaw_bins]).astype(np.float32)
        self._identities = model.identity_count
        weights = np.ones(478, np.float32)
        weights[CONTOUR] = CONTOUR_WEIGHT
        self._weights = np.repeat(np.sqrt(weights), 2)
        self._prior = np.array([next((p for prefix, p in SHAPE_PRIORS if name.startswith(prefix)),
                                     EXPRESSION_PRIOR) ** 2 for name in ICT_EXPRESSION_NAMES])

    @classmethod
    def load(cls, model: FaceModel | None = None, steps: int = DEFAULT_STEPS) -> Refiner:
        """A refiner on MODEL (default: the installed face model) and the committed
        embedding."""
        model = model or FaceModel.load()
        return cls(model, LandmarkEmbedding.load(model.triangles), steps)

    def refine(self, fit: FaceFit, landmarks: np.ndarray, camera: Intrinsics) -> FaceFit:
        """FIT moved to explain LANDMARKS (478, >=2 pixels) better."""
        low, high, share = self.embedding.blend(np.float32(yaw(fit.rotation)))
        low, high, share = int(low), int(high), float(share)
        split = 1 + self._identities
        identity = np.concatenate([[1.0], fit.identity]).astype(np.float32)
        below, above = (np.tensordot(identity, self._bins[b, :split], axes=1)
                        for b in (low, high))
        rest = below + share * (above - below)  # (478, 3) this face, neutral expression
        # Expression offsets blended for the landmarks, the nearer bin's for the Jacobian
        # (Gauss-Newton needs only a close one).
        lower, upper = self._bins[low, split:], self._bins[high, split:]
        basis = upper if share > 0.5 else lower
        target = np.asarray(landmarks, np.float32)[:, :2].reshape(-1)
        rotation, translation = fit.rotation.astype(np.float64), fit.translation.astype(
            np.float64)
        expression = prior = fit.expression.astype(np.float32)  # expression is rebound, not changed
        for _ in range(self.steps):
            below, above = (np.tensordot(expression, b, axes=1) for b in (lower, upper))
            points = rest + below + share * (above - below)  # (478, 3)
            turned = (points @ rotation.T).astype(np.float32)
            camera_points = turned + translation.astype(np.float32)
            # How the camera points move with each parameter (6 + 53, 478, 3): a small turn
            # w moves a point p by w x p; a shift moves it along its axis; a shape by its
            # landmark offsets, turned with the head.
            moves = np.concatenate([np.cross(np.eye(3, dtype=np.float32)[:, None], turned[None]),
                                    np.broadcast_to(np.eye(3, dtype=np.float32)[:, None],
                                                    (3, *turned.shape)),
                                    basis @ rotation.T.astype(np.float32)])
            pixels, jacobian = _project(camera_points, moves, camera)
            jacobian = jacobian * self._weights[:, None]
            residual = (pixels - target) * self._weights
            normal = (jacobian.T @ jacobian).astype(np.float64)
            gradient = (jacobian.T @ residual).astype(np.float64)
            normal[6:, 6:] += np.diag(self._prior)
            gradient[6:] += self._prior * (expression - prior)
            normal += DAMPING * np.diag(np.diag(normal))
            step = -np.linalg.solve(normal, gradient)
            rotation = cv2.Rodrigues(step[:3])[0] @ rotation  # scipy's costs 10x more
            translation = translation + step[3:6]
            expression = np.clip(expression + step[6:], 0.0, 1.0).astype(np.float32)
        return replace(fit, rotation=rotation, translation=translation, expression=expression)


def _project(points: np.ndarray, moves: np.ndarray,
             camera: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of camera-space POINTS (n, 3), flattened (2n,) as u0 v0 u1 v1 ..., and their
    derivatives (2n, k) for point motions MOVES (k, n, 3)."""
    x, y, z = points.T
    pixels = np.stack([camera.fx * x / z + camera.cx, camera.fy * y / z + camera.cy], axis=1)
    du = camera.fx * (moves[..., 0] - moves[..., 2] * (x / z)) / z  # (k, n)
    dv = camera.fy * (moves[..., 1] - moves[..., 2] * (y / z)) / z
    return pixels.reshape(-1), np.stack([du.T, dv.T], axis=1).reshape(len(x) * 2, -1)
