"""ONNX Runtime: the default backend, on CPU everywhere, and on CUDA or TensorRT where the
installed onnxruntime build offers those execution providers.

The regressor is a small MLP (0.05 ms per face here), while MediaPipe needs both cores of the
2-core machines we run on. ONNX Runtime's defaults (a thread per core, threads that spin-wait
for work between runs) would take a core from MediaPipe to save microseconds, so a session runs
on the calling thread alone: one intra-op thread, one inter-op thread, sequential execution,
no spinning. Graph optimisation is still all on: it is paid once, at load.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidGraph, InvalidProtobuf

from engines.base import (
    Engine,
    EngineUnavailable,
    TensorSpec,
    cache_dir,
    existing_model,
    single_input,
)
from streams.errors import FacetrackError

# Engine kind -> execution providers, in ONNX Runtime's order of preference. The CPU provider
# closes every list: it takes whatever nodes the accelerator cannot.
PROVIDERS: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "ort-tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}
GPU_INSTALL_HINT = "pip install onnxruntime-gpu in place of onnxruntime"

_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
           "tensor(double)": np.float64}
# "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from m.onnx failed:" -> ""
_ERROR_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : (Load model from .* failed:)?")


def session_options() -> ort.SessionOptions:
    """One thread, no spin-waiting, sequential, every graph optimisation (module docstring)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


class OnnxRuntimeEngine(Engine):
    """An ONNX Runtime session on the providers of ``kind`` (a key of PROVIDERS)."""

    def __init__(self, model_path: str | Path, kind: str = "onnxruntime") -> None:
        if kind not in PROVIDERS:
            raise FacetrackError(f"unknown ONNX Runtime engine kind {kind!r}; "
                                 f"choose from {', '.join(PROVIDERS)}")
        path = existing_model(model_path)
        self.name = kind
        providers = PROVIDERS[kind]
        missing = [name for name in providers if name not in ort.get_available_providers()]
        if missing:
            raise EngineUnavailable(f"onnxruntime {ort.__version__} has no {missing[0]} "
                                    f"({GPU_INSTALL_HINT})")
        self.session: ort.InferenceSession | None
        try:
            self.session = ort.InferenceSession(str(path), session_options(),
                                                providers=[_with_options(p) for p in providers])
        except (InvalidProtobuf, InvalidGraph) as error:
            raise FacetrackError(f"{path} is not an ONNX model: {_reason(error)}") from None
        except Exception as error:  # ORT's other load errors: provider or operator support
            raise EngineUnavailable(f"ONNX Runtime ({kind}) cannot load {path}: "
                                    f"{_reason(error)}") from None
        # ONNX Runtime falls back to the next provider (with a log line) when one fails to start,
        # e.g. without the CUDA libraries; that is not the engine that was asked for.
        if self.session.get_providers()[0] != providers[0]:
            raise EngineUnavailable(f"{providers[0]} did not start (CUDA or cuDNN libraries "
                                    f"missing or mismatched?); ONNX Runtime fell back to "
                                    f"{self.session.get_providers()[0]}")
        self.input = single_input(path, [_spec(arg, path) for arg in self.session.get_inputs()])
        self.outputs = tuple(_spec(arg, path) for arg in self.session.get_outputs())
        self._output_names = [spec.name for spec in self.outputs]

    def _run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        arrays = self.session.run(self._output_names, {self.input.name: batch})
        return dict(zip(self._output_names, arrays, strict=True))

    def close(self) -> None:
        # Dropping the last reference frees the session; the attribute stays for repr().
        self.session = None


def _with_options(provider: str) -> str | tuple[str, dict[str, str]]:
    """TensorRT's provider builds an engine per model on first load; keep it in our cache."""
    if provider != "TensorrtExecutionProvider":
        return provider
    folder = cache_dir() / "ort-tensorrt"
    folder.mkdir(parents=True, exist_ok=True)
    return provider, {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(folder)}


def _spec(arg: ort.NodeArg, path: Path) -> TensorSpec:
    if arg.type not in _DTYPES:
        raise FacetrackError(f"{path}: {arg.name!r} is {arg.type}; the regressor's tensors "
                             f"must be float")
    shape = tuple(size if isinstance(size, int) else None for size in arg.shape)
    return TensorSpec(arg.name, shape, np.dtype(_DTYPES[arg.type]))


def _reason(error: Exception) -> str:
    """ONNX Runtime's message without its error-code prefix, on one line."""
    lines = _ERROR_PREFIX.sub("", str(error)).strip().splitlines()
    return lines[0] if lines else type(error).__name__
