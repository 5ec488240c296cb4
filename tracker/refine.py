"""Refinement: a few Levenberg-Marquardt steps on head pose and expression (identity held) that
bring the landmark embedding's projection onto MediaPipe's landmarks.

The regressor answers in one shot from what it learned; refinement checks that answer against
this face's own landmarks. The expression and the head's rotation stay near the regressor's
(priors, so the few landmarks of a shape, or MediaPipe's own pull on them all, cannot push them
anywhere), and expressions within [0, 1].
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from calibrate.intrinsics import Intrinsics
from tracker.embedding import LandmarkEmbedding
from tracker.expressions import ICT_EXPRESSION_NAMES
from tracker.face_model import FaceModel
from tracker.landmark_response import LandmarkResponse
from tracker.landmarks import fit_weights
from tracker.pose import yaw
from tracker.regressor import FaceFit

# Pixels of landmark error that moving a shape by 1 must beat: how far the refinement may take
# a shape from the regressor's reading. Strong by default (brows, eye looks, nose): there the
# landmarks confuse shape with identity and pose, and the regressor reads better; strongest for
# browDown, which the landmarks confuse with the brows' height, and for the mouth's and jaw's
# other shapes (sideways, rolls, shrugs, presses, stretches, ...): on a face that does not make
# them, one step read MediaPipe's pull on the lips as up to 0.13 of them (seed 0's harness
# clips, regressor 0c47511c), and where they are made the regressor follows them as well or
# better on its own (docs/regressor.md, "Refinement"). Weaker for the jaw's opening, the lips'
# rounding and the cheeks, and weakest where MediaPipe's dense lip and eyelid landmarks show a
# shape plainly (smiles, blinks) and for browInnerUp, which lifts the inner brow landmarks clear
# of the rest of the face. Chosen on the harness clips of seeds 0, 1 and 2 (the mouth's and
# jaw's with regressor 0c47511c, browInnerUp's 15 (from 20) with feb20f8b, the rest with the
# first regressor that reads shading) and checked on seeds 3, 4 and 10-19, which no prior was
# chosen on. The first prefix that names a shape gives its prior.
EXPRESSION_PRIOR = 60.0
SHAPE_PRIORS = (("eyeBlink", 10.0), ("browInnerUp", 15.0), ("browDown", 120.0),
                ("mouthSmile", 20.0), ("jawOpen", 40.0), ("mouthPucker", 40.0),
                ("mouthFunnel", 40.0), ("mouth", 120.0), ("jaw", 120.0), ("cheek", 40.0))
# The shapes whose landmark offsets are scaled by how far MediaPipe moves its landmarks for them
# (`tracker.landmark_response`): the jaw's opening and the smiles, which MediaPipe moves about
# two thirds and three quarters as far as the face's surface moves, and which the refinement
# would otherwise read at that size. Their gains are the best measured (the most support, the
# two halves of the renders within 0.06). Scaling more shapes this way, on the harness clips of
# seeds 10-14 with the landmark embedding before its eyelids were fixed: the lips' rounding
# (mouthPucker, mouthFunnel) lost up to 0.08 of mouthPucker's r; mouthClose, the jaw's and the
# mouth's sideways shapes, cheekPuff and noseSneer, which those clips hardly move, were read
# where the truth was 0 (a resting mouthClose 0.095 to 0.111) and added up to 0.06 mm of posed
# shape error. The brows' gains are not known (the halves disagree); eyeBlink's is about 1.
RESPONSE_SHAPES = ("jawOpen", "mouthSmile")
# Pixels of landmark error that turning the head 1° from the regressor's answer must beat. The
# regressor reads the head's rotation from the shading as well as the landmarks, and better
# than a fit to the landmarks alone, which MediaPipe's look-dependent placement pulls off by
# about 2°: the refinement leaves rotation to it unless the landmarks disagree plainly (on the
# harness clips of seeds 0 and 1, mean rotation error 1.77° at 10 px, 1.70° at 30, 2.02° at 5).
ROTATION_PRIOR = 20.0
DAMPING = 1e-3
DEFAULT_STEPS = 1  # what `facetrack run` does unless told: most of the gain, 0.9 ms a face
MAX_STEPS = 10


class Refiner:
    """Refines `FaceFit`s against the landmarks they came from."""

    def __init__(self, model: FaceModel, embedding: LandmarkEmbedding,
                 steps: int = DEFAULT_STEPS, rotation_prior: float = ROTATION_PRIOR,
                 response: np.ndarray | None = None) -> None:
        """RESPONSE (53,) scales each expression shape's landmark offsets: how far MediaPipe
        moves its landmarks for it (default: the committed measurement for RESPONSE_SHAPES,
        1 for the rest)."""
        if response is None:
            response = LandmarkResponse.load().of(RESPONSE_SHAPES)
        self.embedding = embedding
        self.steps = steps
        # ROTATION_PRIOR's pixels per degree, squared per radian; 0: the landmarks decide
        self._turn_prior = np.degrees(rotation_prior) ** 2
        # The landmarks of the neutral mean face and the landmark offsets of every identity
        # and expression shape (the latter as far as MediaPipe moves them: RESPONSE), in every
        # yaw bin (B, 1 + 100 + 53, 478, 3), made once: the embedding is linear in the mesh, so
        # per frame a face's landmarks are two small products and a blend of the two bins
        # around its yaw.
        index = embedding.vertex_index
        shapes = np.concatenate([model.neutral[None, index], model.identity_deltas[:, index],
                                 model.expression_deltas[:, index]])
        self._bins = np.stack([embedding.points(shapes, yaw, index)
                               for yaw in embedding.yaw_bins]).astype(np.float32)
        self._identities = model.identity_count
        self._bins[:, 1 + self._identities:] *= np.asarray(response, np.float32)[:, None, None]
        self._weights = np.repeat(np.sqrt(fit_weights()), 2)
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
        rotation = prior_rotation = fit.rotation.astype(np.float64)  # rebound, not changed
        translation = fit.translation.astype(np.float64)
        expression = prior = fit.expression.astype(np.float32)
        for _ in range(self.steps):
            below, above = (np.tensordot(expression, b, axes=1) for b in (lower, upper))
            points = rest + below + share * (above - below)  # (478, 3)
            turned = (points @ rotation.T).astype(np.float32)
            camera_points = turned + translation.astype(np.float32)
            # How the camera points move with each parameter (6 + 53, 478, 3): a small turn
            # w moves a point p by w x p; a shift moves it along its axis; a shape by its
            # landmark offsets, turned with the head.
            # (OpenCV's transform turns the 53 x 478 offsets ten times faster than matmul.)
            moves = np.concatenate([np.cross(np.eye(3, dtype=np.float32)[:, None], turned[None]),
                                    np.broadcast_to(np.eye(3, dtype=np.float32)[:, None],
                                                    (3, *turned.shape)),
                                    cv2.transform(basis.reshape(-1, 1, 3),
                                                  rotation.astype(np.float32)
                                                  ).reshape(basis.shape)])
            pixels, gradients = _project(camera_points, moves, camera)
            gradients = gradients * self._weights  # the Jacobian, transposed: (6 + 53, 956)
            residual = (pixels - target) * self._weights
            normal = (gradients @ gradients.T).astype(np.float64)
            gradient = (gradients @ residual).astype(np.float64)
            normal[6:, 6:] += np.diag(self._prior)
            gradient[6:] += self._prior * (expression - prior)
            normal[:3, :3] += self._turn_prior * np.eye(3)
            gradient[:3] += self._turn_prior * cv2.Rodrigues(rotation @ prior_rotation.T)[0].ravel()
            normal += DAMPING * np.diag(np.diag(normal))
            step = -np.linalg.solve(normal, gradient)
            rotation = cv2.Rodrigues(step[:3])[0] @ rotation  # scipy's costs 10x more
            translation = translation + step[3:6]
            expression = np.clip(expression + step[6:], 0.0, 1.0).astype(np.float32)
        return replace(fit, rotation=rotation, translation=translation, expression=expression)


def _project(points: np.ndarray, moves: np.ndarray,
             camera: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of camera-space POINTS (n, 3), flattened (2n,) as u0 v0 u1 v1 ..., and their
    derivatives (k, 2n) for point motions MOVES (k, n, 3): the Jacobian, transposed, which is
    the layout the motions come in."""
    x, y, z = points.T
    pixels = np.stack([camera.fx * x / z + camera.cx, camera.fy * y / z + camera.cy], axis=1)
    u_per_z, v_per_z = camera.fx / z, camera.fy / z
    du = u_per_z * moves[..., 0] - (u_per_z * x / z) * moves[..., 2]  # (k, n)
    dv = v_per_z * moves[..., 1] - (v_per_z * y / z) * moves[..., 2]
    return pixels.reshape(-1), np.stack([du, dv], axis=-1).reshape(len(moves), -1)
