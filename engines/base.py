"""What every inference backend of the landmark regressor shares.

The regressor is an ONNX file with one input (a batch of faces' landmark rays and shading,
(N, 478, 3) float32) and any number of batch-first outputs. Backends read names, shapes and
types from the model rather than assuming them, so a retrained or re-exported regressor needs no
code change here.
Checking the input once, here, gives every backend the same one-line error for a wrong shape
instead of each runtime's own message (ONNX Runtime's names internal nodes; TensorRT's may
crash the process).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from streams.errors import FacetrackError

# The batch dimension: one row per face.
BATCH_AXIS = 0


class EngineUnavailable(FacetrackError):
    """A backend cannot run here (not installed, no GPU, cannot take this model): ``auto``
    skips it and tries the next; an explicitly requested one reports it to the user."""


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: ``shape`` includes the batch axis; None marks a dimension the
    model leaves open (the batch, normally)."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype

    def describe(self) -> str:
        """The shape as users read it: (N, 478, 3)."""
        dims = ["N" if axis == BATCH_AXIS else "?" if size is None else str(size)
                for axis, size in enumerate(self.shape)]
        return f"({', '.join(dims)})"

    def accepts(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == len(self.shape) and all(
            want is None or want == got for want, got in zip(self.shape, shape, strict=True))


class Engine(ABC):
    """Runs the regressor on a batch of faces: ``infer`` maps each output name to its array.

    Subclasses set ``name``, ``input`` and ``outputs`` and implement ``_run``, which receives a
    C-contiguous array already of the model's input shape and type, with at least one face.
    """

    name: str
    input: TensorSpec
    outputs: tuple[TensorSpec, ...]

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs for a batch of the model's input shape, (N, 478, 3) say; another float type
        is converted, another shape raises FacetrackError. N = 0 (no face in the frame) gives
        empty outputs without running the model."""
        array = np.asarray(batch)
        if not self.input.accepts(array.shape):
            raise FacetrackError(
                f"{self.name}: regressor input {self.input.name!r} must have shape "
                f"{self.input.describe()}, got {tuple(array.shape)}")
        array = np.ascontiguousarray(array, dtype=self.input.dtype)
        if array.shape[BATCH_AXIS] == 0:
            return {spec.name: np.zeros([0, *(size or 0 for size in spec.shape[1:])], spec.dtype)
                    for spec in self.outputs}
        return self._run(array)

    @abstractmethod
    def _run(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def close(self) -> None:
        """Frees what the backend holds (sessions, GPU memory); the engine is unusable after."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        outputs = ", ".join(f"{spec.name}{spec.describe()}" for spec in self.outputs)
        return f"<{self.name} engine: {self.input.name}{self.input.describe()} -> {outputs}>"


def single_input(path: Path, inputs: list[TensorSpec]) -> TensorSpec:
    """The model's one input, or a FacetrackError saying the file is not a landmark regressor."""
    if len(inputs) != 1:
        names = ", ".join(spec.name for spec in inputs) or "none"
        raise FacetrackError(f"{path} has {len(inputs)} inputs ({names}); the landmark regressor "
                             f"takes one, a batch of landmark rays and shading")
    return inputs[0]


def existing_model(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path, or a FacetrackError when there is no such file."""
    model = Path(path)
    if not model.is_file():
        raise FacetrackError(f"{model}: no such model file")
    return model


def cache_dir() -> Path:
    """Facetrack's per-user cache folder: $FACETRACK_CACHE, $XDG_CACHE_HOME/facetrack, or
    ~/.cache/facetrack (an empty variable counts as unset, as XDG says). Built engines live
    here: they are derived from the ONNX file and can be deleted at any time."""
    if os.environ.get("FACETRACK_CACHE"):
        return Path(os.environ["FACETRACK_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "facetrack"
