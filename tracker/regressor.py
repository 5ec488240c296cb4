"""Landmarks to ICT coefficients and head pose: one ONNX model call for all of a frame's faces.

The model takes the landmarks' rays, pixels through the inverse intrinsics, with the image's
shading at each landmark (`tracker.shading`), and answers in the camera: DESIGN.md's head pose,
identity and expression. All of the geometry between (turning
the rays to the optical axis, normalising, decoding the network's answer) is inside the graph
(`engines.geometry`, in torch), where it costs a fraction of what numpy's per-call overhead on
arrays this small did; this module only divides by the focal length.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calibrate.files import load_versioned
from calibrate.intrinsics import Intrinsics

MANIFEST_FORMAT = "facetrack-regressor"
MANIFEST_VERSION = 1
MODEL_DIR = Path(__file__).resolve().parents[1] / "engines" / "models"
DEFAULT_MODEL = MODEL_DIR / "regressor.onnx"
INPUT = "landmarks"  # (N, 478, 3): each landmark's ray (2) and shading (1)
OUTPUTS = ("rotation", "translation", "identity", "expression")


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


def rays(landmarks: np.ndarray, camera: Intrinsics | np.ndarray) -> np.ndarray:
    """The model's input for LANDMARKS (N, L, >=2) in pixels, undistorted: ((u - cx) / fx,
    (v - cy) / fy). CAMERA is one `Intrinsics` for all faces (run time: float32, the model's
    type, in two array steps, each of which costs microseconds of cold cache between
    MediaPipe's calls) or an (N, 4) array of fx, fy, cx, cy per face (training: float64)."""
    if isinstance(camera, Intrinsics):
        centre = np.array((camera.cx, camera.cy), np.float32)
        focal = np.array((camera.fx, camera.fy), np.float32)
    else:
        per_face = np.asarray(camera, np.float64)[:, None]
        centre, focal = per_face[..., 2:], per_face[..., :2]
    return (landmarks[..., :2] - centre) / focal


def model_inputs(landmarks: np.ndarray, shading: np.ndarray,
                 camera: Intrinsics | np.ndarray) -> np.ndarray:
    """The model's input (N, L, 3): the `rays` of LANDMARKS (N, L, >=2) and their SHADING
    (N, L)."""
    directions = rays(landmarks, camera)
    return np.concatenate([directions, shading[..., None].astype(directions.dtype)], axis=-1)


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

    def fit(self, landmarks: np.ndarray, shading: np.ndarray, camera: Intrinsics) -> Fits:
        """Fits of faces whose landmarks (N, 478, >=2) are in pixels of CAMERA's images, with
        the images' shading there (N, 478; `tracker.shading`)."""
        outputs = self.engine.infer(model_inputs(np.asarray(landmarks), np.asarray(shading),
                                                 camera))
        # float64 pose, as the refiner, smoother and records work in it
        return Fits(outputs["identity"], outputs["expression"],
                    outputs["rotation"].astype(np.float64),
                    outputs["translation"].astype(np.float64))

    def close(self) -> None:
        self.engine.close()
