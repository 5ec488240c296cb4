"""Inference backends for the landmark -> 3DMM regressor (an ONNX file): ONNX Runtime on CPU
everywhere, CUDA or TensorRT where a GPU and its libraries are (docs/engines.md).

    with open_engine(model_path) as engine:
        outputs = engine.infer(inputs)  # (N, 478, 3) -> {output name: (N, ...) array}
"""

from engines.base import Engine, EngineUnavailable, TensorSpec, cache_dir
from engines.select import AUTO_ORDER, KINDS, open_engine, seconds_per_call

__all__ = ["AUTO_ORDER", "KINDS", "Engine", "EngineUnavailable", "TensorSpec", "cache_dir",
           "open_engine", "seconds_per_call"]
