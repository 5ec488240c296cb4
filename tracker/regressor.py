"""Landmarks to ICT coefficients: the regressor's inputs and outputs around the network.

The network sees each face as if it sat in the middle of the picture: its landmarks' rays are
rotated so the face's centre lies on the optical axis (which undoes the perspective skew of a
face near the edge of a wide-angle frame), then centred and scaled to unit size. It answers in
that frame: the head's rotation as seen along that ray (6-D), where the model's origin sits
relative to the landmarks (in face sizes), and how far away a face of this size is. `decode`
turns that back into DESIGN.md's head pose with the real camera, so one network serves every
focal length and position.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calibrate.files import load_versioned
from calibrate.intrinsics import Intrinsics
from tracker.pose import FRONTAL

MANIFEST_FORMAT = "facetrack-regressor"
MANIFEST_VERSION = 1
MODEL_DIR = Path(__file__).resolve().parents[1] / "engines" / "models"
DEFAULT_MODEL = MODEL_DIR / "regressor.onnx"
INPUT = "landmarks"
OUTPUTS = ("rotation6d", "offset", "log_depth", "identity", "expression")


@dataclass(frozen=True)
class Frames:
    """What `normalise` removed from each face, to put back in `decode`."""

    rays: np.ndarray  # (N, 3, 3) camera-from-centred rotations
    centre: np.ndarray  # (N, 2) landmark centroid, rectified normalised image coordinates
    scale: np.ndarray  # (N,) RMS landmark spread, same units


@dataclass(frozen=True)
class FaceFit:
    """One face's coefficients and head pose."""

    identity: np.ndarray  # (100,)
    expression: np.ndarray  # (53,) in [0, 1], ICT order
    rotation: np.ndarray  # (3, 3)
    translation: np.ndarray  # (3,) cm


@dataclass(frozen=True)
class Fits:
    """Coefficients and head pose of N faces (DESIGN.md conventions)."""

    identity: np.ndarray  # (N, 100)
    expression: np.ndarray  # (N, 53) in [0, 1]
    rotation: np.ndarray  # (N, 3, 3), p_camera = R @ p_model + t
    translation: np.ndarray  # (N, 3) cm

    def __len__(self) -> int:
        return len(self.identity)

    def face(self, index: int) -> FaceFit:
        return FaceFit(self.identity[index], self.expression[index], self.rotation[index],
                       self.translation[index])


def ray_rotations(directions: np.ndarray) -> np.ndarray:
    """(N, 3, 3) the smallest rotations taking the optical axis (+z) onto DIRECTIONS (N, 3),
    in closed form: for a unit d = (a, b, c), ``I + [k]x + [k]x² / (1 + c)`` with k = z × d,
    which needs c > -1 (a direction in front of the camera, where every face is)."""
    unit = directions / np.linalg.norm(directions, axis=-1, keepdims=True)
    a, b, c = unit.T
    turn = np.empty((len(unit), 3, 3))
    turn[:, :, 2] = unit
    turn[:, 2, :2] = -unit[:, :2]
    turn[:, 0, 1] = turn[:, 1, 0] = -a * b / (1.0 + c)
    turn[:, 0, 0] = 1.0 - a * a / (1.0 + c)
    turn[:, 1, 1] = 1.0 - b * b / (1.0 + c)
    return turn


def normalise(landmarks: np.ndarray, camera: Intrinsics | np.ndarray) -> tuple[np.ndarray, Frames]:
    """Network inputs (N, 478, 2) float32 for landmarks (N, 478, >=2) in pixels.

    CAMERA is one `Intrinsics` for all faces or an (N, 4) array of fx, fy, cx, cy per face.
    Written in few, whole-array steps: it runs every frame between MediaPipe's calls, where
    each numpy call costs several microseconds of cold cache."""
    intrinsics = _camera_array(camera, len(landmarks))
    xy = (landmarks[..., :2] - intrinsics[:, None, 2:]) / intrinsics[:, None, :2]  # rays, z = 1
    mean = xy.mean(axis=1)
    turn = ray_rotations(np.concatenate([mean, np.ones((len(mean), 1))], axis=1))
    # Each ray (x, y, 1) in the centred frame, turn.T @ ray: x turn[0] + y turn[1] + turn[2].
    local = xy @ turn[:, :2] + turn[:, 2:]
    points = local[..., :2] / local[..., 2:]
    centre = points.mean(axis=1, keepdims=True)
    spread = points - centre
    scale = np.sqrt(2.0 * np.square(spread).mean(axis=(1, 2)))  # RMS distance from the centre
    inputs = (spread / scale[:, None, None]).astype(np.float32)
    return inputs, Frames(turn, centre[:, 0], scale)


def targets(frames: Frames, rotation: np.ndarray, translation: np.ndarray) -> dict[str, np.ndarray]:
    """What the network should answer for faces of known pose: the inverse of `decode`."""
    local_rotation = np.swapaxes(frames.rays, 1, 2) @ rotation
    local = np.einsum("nji,nj->ni", frames.rays, translation)
    origin = local[:, :2] / local[:, 2:]
    return {"head_rotation": FRONTAL @ local_rotation,
            "offset": ((origin - frames.centre) / frames.scale[:, None]).astype(np.float32),
            "log_depth": np.log(local[:, 2] * frames.scale)[:, None].astype(np.float32)}


def rotation_from_6d(values: np.ndarray) -> np.ndarray:
    """(N, 3, 3) rotations from the continuous 6-D representation (two columns,
    Gram-Schmidt), as the network's graph does it."""
    a, b = values[:, :3], values[:, 3:]
    x = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b - (x * b).sum(-1, keepdims=True) * x
    y = b / np.linalg.norm(b, axis=-1, keepdims=True)
    columns = np.empty((len(values), 3, 3))
    columns[:, :, 0], columns[:, :, 1] = x, y
    columns[:, :, 2] = np.cross(x, y)
    return columns


def decode(outputs: dict[str, np.ndarray], frames: Frames) -> Fits:
    """The network's outputs back in the camera: DESIGN.md's head pose."""
    head = rotation_from_6d(outputs["rotation6d"].astype(np.float64))
    rotation = frames.rays @ FRONTAL @ head
    origin = frames.centre + outputs["offset"] * frames.scale[:, None]
    depth = np.exp(outputs["log_depth"].astype(np.float64)) / frames.scale[:, None]
    local = np.concatenate([origin, np.ones_like(depth)], axis=1) * depth  # (N, 3)
    translation = (frames.rays @ local[..., None])[..., 0]
    return Fits(outputs["identity"].astype(np.float32, copy=False),
                np.clip(outputs["expression"], 0.0, 1.0).astype(np.float32, copy=False),
                rotation, translation)


@dataclass(frozen=True)
class Manifest:
    """What the committed model is and how to feed it (the JSON beside the ONNX file)."""

    path: Path
    data: dict

    @classmethod
    def load(cls, onnx_path: str | Path) -> Manifest:
        path = Path(onnx_path).with_suffix(".json")
        data = load_versioned(path, "regressor manifest", MANIFEST_FORMAT, MANIFEST_VERSION,
                              "it lies beside the ONNX file that facetrack train wrote")
        return cls(path, data)

    @property
    def model_version(self) -> str:
        return str(self.data.get("model_version", "unknown"))


def _calibration_batches(face_model: str | None,
                         count: int = 1024) -> Callable[[int], Iterator[np.ndarray]]:
    """TensorRT's int8 calibrator asks for batches of a size it picks; they are drawn from
    random faces through the landmark embedding (made only if a build needs them)."""

    def batches(size: int) -> Iterator[np.ndarray]:
        from engines.training_data import calibration_inputs
        from tracker.embedding import LandmarkEmbedding
        from tracker.face_model import FaceModel

        model = FaceModel.load(face_model)
        inputs = calibration_inputs(model, LandmarkEmbedding.load(model.triangles), count)
        return (inputs[first:first + size] for first in range(0, count - size + 1, size))

    return batches


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _camera_array(camera: Intrinsics | np.ndarray, count: int) -> np.ndarray:
    """(1 or COUNT, 4) fx, fy, cx, cy."""
    if isinstance(camera, Intrinsics):
        return np.array([[camera.fx, camera.fy, camera.cx, camera.cy]], np.float64)
    return np.asarray(camera, np.float64).reshape(count, 4)


class Regressor:
    """Landmarks of a frame's faces to their coefficients and poses, one engine call a frame.

    MODEL is the ONNX file with its manifest beside it (default: the committed one); ENGINE a
    kind for `engines.open_engine` (auto: TensorRT or CUDA when they work, else ONNX Runtime
    on one CPU thread)."""

    def __init__(self, model: str | Path = DEFAULT_MODEL, engine: str = "auto",
                 precision: str = "fp32", face_model: str | None = None) -> None:
        from engines.select import open_engine  # the engines import onnxruntime: load on use

        self.manifest = Manifest.load(model)
        batches = _calibration_batches(face_model) if precision == "int8" else None
        self.engine = open_engine(model, engine, precision=precision,
                                  calibration_batches=batches)

    def fit(self, landmarks: np.ndarray, camera: Intrinsics) -> Fits:
        """Fits of faces whose landmarks (N, 478, >=2) are in pixels of CAMERA's images."""
        inputs, frames = normalise(np.asarray(landmarks)[..., :2], camera)
        return decode(self.engine.infer(inputs), frames)

    def close(self) -> None:
        self.engine.close()
