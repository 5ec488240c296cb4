"""Training pairs for the regressor: landmarks as MediaPipe reports them, and the coefficients
and pose that made them.

Two kinds, as DESIGN.md asks:
- rendered: random faces rendered and given to MediaPipe (static mode). Slow (about 40 a second
  on one core), but they are MediaPipe's real behaviour, eyes and contours included.
- projected: the landmark embedding of random faces projected through random cameras, plus
  MediaPipe's own error, borrowed from the rendered pairs: each projected face gets a random
  blend of the residuals MediaPipe left on renders at a similar yaw (after its per-image
  similarity offset, which is drawn too). Cheap and unlimited.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tracker.embedding import LandmarkEmbedding
from tracker.embedding_fit import complex_points, similarity
from tracker.face_model import FaceModel, posed
from tracker.landmarks import FaceMesh
from tracker.pose import angles
from tracker.render import Appearance, SyntheticFace, random_background
from tracker.sampling import (
    DEFAULT_POSES,
    PoseRange,
    random_camera,
    random_expressions,
    random_identities,
    random_rotations,
    random_translation,
)
from tracker.shading import shading

NEUTRAL_SHARE = 0.15  # faces with a neutral expression
BLEND_ROWS = 6  # residuals mixed per projected face
YAW_NEIGHBOURHOOD = 10.0  # degrees: residuals are borrowed from renders this close in yaw


@dataclass(frozen=True)
class FaceSamples:
    """N training faces: MediaPipe-like landmarks and the truth behind them."""

    landmarks: np.ndarray  # (N, 478, 2) pixels
    shading: np.ndarray  # (N, 478) the image's at the landmarks (`tracker.shading`); 0: none
    camera: np.ndarray  # (N, 4) fx, fy, cx, cy
    identity: np.ndarray  # (N, 100)
    expression: np.ndarray  # (N, 53)
    rotation: np.ndarray  # (N, 3, 3)
    translation: np.ndarray  # (N, 3) cm

    def __len__(self) -> int:
        return len(self.landmarks)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **{f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def load(cls, path: Path) -> FaceSamples:
        with np.load(path) as data:
            return cls(**{f.name: data[f.name] for f in fields(cls)})

    @classmethod
    def concatenate(cls, parts: list[FaceSamples]) -> FaceSamples:
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])
                      for f in fields(cls)})

    def subset(self, rows: np.ndarray | slice) -> FaceSamples:
        return FaceSamples(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})


def random_faces(model: FaceModel, rng: np.random.Generator, count: int,
                 poses: PoseRange) -> tuple:
    """COUNT random faces as training sees them: identity, expression (a share neutral),
    rotation, translation (cm), camera (COUNT, 4) fx, fy, cx, cy, and the cameras as
    `Intrinsics`."""
    identity = random_identities(rng, count, model.identity_count)
    expression = random_expressions(rng, count)
    expression[rng.random(count) < NEUTRAL_SHARE] = 0.0
    rotation, _ = random_rotations(rng, count, poses)
    cameras = [random_camera(rng) for _ in range(count)]
    translation = np.array([random_translation(rng, c) for c in cameras])
    camera = np.array([[c.fx, c.fy, c.cx, c.cy] for c in cameras])
    return identity, expression, rotation, translation, camera, cameras


def rendered(model: FaceModel, count: int, seed: int, poses: PoseRange = DEFAULT_POSES,
             progress: bool = True) -> FaceSamples:
    """COUNT renders given to MediaPipe; those where it finds no face are left out."""
    rng = np.random.default_rng(seed)
    identity, expression, rotation, translation, camera, cameras = random_faces(
        model, rng, count, poses)
    face = SyntheticFace(model)
    kept, landmarks, shadings = [], [], []
    with FaceMesh(1, static_image_mode=True) as mesh:
        for i in tqdm(range(count), desc="rendered faces", unit="face", disable=not progress):
            image, _ = face.render(identity[i], expression[i], rotation[i], translation[i],
                                   cameras[i], Appearance.random(rng),
                                   random_background(rng, cameras[i].width, cameras[i].height))
            found = mesh.process(image)
            if found:
                kept.append(i)
                landmarks.append(found[0].landmarks[:, :2])
                shadings.append(shading(image, found[0].landmarks))
    rows = np.array(kept, int)
    return FaceSamples(np.array(landmarks, np.float32).reshape(-1, 478, 2),
                       np.array(shadings, np.float32).reshape(-1, 478), camera[rows],
                       identity[rows], expression[rows], rotation[rows], translation[rows])


def embedded_landmarks(model: FaceModel, embedding: LandmarkEmbedding,
                       samples: FaceSamples) -> np.ndarray:
    """(N, 478, 2) where the embedding puts the landmarks of SAMPLES' true faces, in pixels."""
    index = embedding.vertex_index
    model.add_region("embedding", index)
    yaw = angles(samples.rotation)[:, 0]
    points = np.concatenate([
        embedding.points(posed(model.vertices(samples.identity[rows], samples.expression[rows],
                                              region="embedding"),
                               samples.rotation[rows], samples.translation[rows]),
                         yaw[rows], index)
        for rows in np.array_split(np.arange(len(samples)), max(len(samples) // 5000, 1))])
    fx, fy, cx, cy = (samples.camera[:, k, None] for k in range(4))
    return np.stack([fx * points[..., 0] / points[..., 2] + cx,
                     fy * points[..., 1] / points[..., 2] + cy], axis=-1).astype(np.float32)


@dataclass(frozen=True)
class Residuals:
    """MediaPipe's error on renders, in face sizes, after each render's similarity offset."""

    shapes: np.ndarray  # (M, 478, 2) per-landmark residual over the face's RMS size
    yaw: np.ndarray  # (M,) degrees
    shift: np.ndarray  # (M, 2) similarity shift over the face's size
    log_scale: np.ndarray  # (M,)
    angle: np.ndarray  # (M,) radians

    @classmethod
    def measure(cls, model: FaceModel, embedding: LandmarkEmbedding,
                samples: FaceSamples) -> Residuals:
        predicted = embedded_landmarks(model, embedding, samples)
        fit = similarity(samples.landmarks, predicted)
        a = complex_points(predicted) - fit.centre
        b = complex_points(samples.landmarks) - fit.centre - fit.shift
        residual = (b - fit.scale * a) / (fit.scale * fit.size)  # prediction's frame, face sizes
        shift = (fit.shift / fit.size)[:, 0]
        return cls(np.stack([residual.real, residual.imag], -1).astype(np.float32),
                   angles(samples.rotation)[:, 0], np.stack([shift.real, shift.imag], -1),
                   np.log(np.abs(fit.scale[:, 0])), np.angle(fit.scale[:, 0]))

    def draw(self, rng: np.random.Generator, yaw: np.ndarray) -> tuple[np.ndarray, ...]:
        """For faces at YAW (N,): residual shapes (N, 478, 2) and similarity offsets (shift
        (N, 2), log scale (N,), angle (N,)), each a random blend of measured ones nearby in
        yaw (weights normal, summing in variance to one, so the spread is MediaPipe's)."""
        count = len(yaw)
        order = np.argsort(self.yaw)
        sorted_yaw = self.yaw[order]
        low = np.searchsorted(sorted_yaw, yaw - YAW_NEIGHBOURHOOD)
        high = np.maximum(np.searchsorted(sorted_yaw, yaw + YAW_NEIGHBOURHOOD), low + 1)
        high = np.minimum(high, len(order))
        low = np.minimum(low, high - 1)
        picks = order[low[:, None] + (rng.random((count, BLEND_ROWS))
                                      * (high - low)[:, None]).astype(int)]
        weights = rng.standard_normal((count, BLEND_ROWS)) / np.sqrt(BLEND_ROWS)
        shapes = np.einsum("nk,nkld->nld", weights, self.shapes[picks])
        pick = picks[:, 0]  # the similarity offset is one render's, as it is all of a piece
        return shapes, self.shift[pick], self.log_scale[pick], self.angle[pick]


def projected(model: FaceModel, embedding: LandmarkEmbedding, residuals: Residuals,
              count: int, seed: int, poses: PoseRange = DEFAULT_POSES) -> FaceSamples:
    """COUNT random faces through the embedding, with MediaPipe-like error added. They have
    no image, so their shading is 0 (a rendered face's is never 0 everywhere): the network
    learns their shapes from positions alone."""
    rng = np.random.default_rng(seed)
    truth = unseen_faces(model, rng, count, poses)
    clean = embedded_landmarks(model, embedding, truth)
    shapes, shift, log_scale, angle = residuals.draw(rng, angles(truth.rotation)[:, 0])
    z = clean[..., 0] + 1j * clean[..., 1]
    centre = z.mean(1, keepdims=True)
    size = np.sqrt((np.abs(z - centre) ** 2).mean(1, keepdims=True))
    s = np.exp(log_scale + 1j * angle)[:, None]
    noisy = centre + shift[:, 0:1] * size + 1j * shift[:, 1:2] * size + s * (
        z - centre + (shapes[..., 0] + 1j * shapes[..., 1]) * size)
    return replace(truth, landmarks=np.stack([noisy.real, noisy.imag], -1).astype(np.float32))


def unseen_faces(model: FaceModel, rng: np.random.Generator, count: int,
                 poses: PoseRange) -> FaceSamples:
    """COUNT random faces (`random_faces`) with no image yet: landmarks and shading 0."""
    identity, expression, rotation, translation, camera, _ = random_faces(
        model, rng, count, poses)
    return FaceSamples(np.zeros((count, 478, 2), np.float32), np.zeros((count, 478), np.float32),
                       camera, identity, expression, rotation, translation)


def calibration_inputs(model: FaceModel, embedding: LandmarkEmbedding, count: int,
                       seed: int = 0) -> np.ndarray:
    """(COUNT, 478, 3) float32 model inputs (`tracker.regressor.model_inputs`) of random faces
    through the embedding and random cameras: what TensorRT's int8 calibration measures
    activation ranges on. Their shading is drawn standard normal, the spread a real face's
    standardised shading has."""
    from tracker.regressor import model_inputs  # the runtime's own input, not a copy

    rng = np.random.default_rng(seed)
    faces = unseen_faces(model, rng, count, DEFAULT_POSES)
    return model_inputs(embedded_landmarks(model, embedding, faces),
                        rng.standard_normal((count, 478)), faces.camera).astype(np.float32)
