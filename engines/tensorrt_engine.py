"""TensorRT on an NVIDIA GPU: the regressor compiled into an engine for this GPU, run on one CUDA
stream.

Building an engine takes tens of seconds and depends on the GPU, the TensorRT version and the
precision, so each build is kept in the per-user cache (``engines.base.cache_dir``), named by
those three and the sha256 of the ONNX file (and of its external weights, ``model.onnx.data``,
where torch's exporter put them there): a retrained model, a new GPU or a TensorRT upgrade
rebuilds, anything else loads in milliseconds. The engine takes 1 to ``max_batch`` faces per
call (tuned for one); larger batches run in chunks.

``tensorrt`` and cuda-python are optional (a GPU machine installs them, docs/engines.md) and
are imported only when an engine is made, so this module imports everywhere and a machine
without them gets an ``EngineUnavailable`` that says what is missing.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from engines.base import (
    Engine,
    EngineUnavailable,
    TensorSpec,
    cache_dir,
    existing_model,
    single_input,
)
from streams.errors import FacetrackError

log = logging.getLogger("facetrack.engines")

PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_MAX_BATCH = 16
OPT_BATCH = 1  # the usual case: one face in view
WORKSPACE_BYTES = 1 << 28  # plenty for an MLP; caps what tactic selection may allocate
INSTALL_HINT = "pip install tensorrt-cu12 cuda-python"
# The exported model holds the network as `net` (engines.network.CameraRegressor): torch names
# its nodes "/net/..." and its weights "net....", and TensorRT's parser names layers after them.
NETWORK_PREFIXES = ("/net/", "net.")

# Called with the batch size, yields arrays of the model's input shape with that batch, holding
# the landmark rays and shading of plausible faces (synthetic ones, say): TensorRT measures
# activation ranges on them (int8).
CalibrationBatches = Callable[[int], Iterable[np.ndarray]]


def _import_tensorrt() -> ModuleType:
    try:
        import tensorrt
    except (ImportError, OSError) as error:
        if isinstance(error, ImportError) and error.name == "tensorrt":
            raise EngineUnavailable(f"TensorRT is not installed ({INSTALL_HINT})") from None
        raise EngineUnavailable(f"TensorRT cannot be imported: {error}") from None
    return tensorrt


def _import_cuda_runtime() -> ModuleType:
    """cuda-python's runtime API: ``cuda.bindings.runtime`` since 12.6, ``cuda.cudart`` before."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime
        except ImportError:
            raise EngineUnavailable(f"cuda-python is not installed ({INSTALL_HINT})") from None
    return runtime


class CudaRuntime:
    """The few CUDA runtime calls we need, each returned error code checked: cuda-python returns
    ``(error, *results)`` from every call instead of raising."""

    def __init__(self, runtime: ModuleType) -> None:
        self._rt = runtime

    def call(self, function: str, *args: Any) -> Any:
        """``runtime.function(*args)``'s result (None if it has none), or a FacetrackError."""
        error, *results = getattr(self._rt, function)(*args)
        if error != self._rt.cudaError_t.cudaSuccess:
            raise FacetrackError(f"CUDA {function} failed: {self._describe(error)}")
        return results[0] if results else None

    def gpu_name(self) -> str:
        """The current GPU's name, or EngineUnavailable when there is none (or no driver)."""
        try:
            error, count = self._rt.cudaGetDeviceCount()
        except RuntimeError as failure:  # cuda-python found no CUDA runtime library to load
            raise EngineUnavailable(f"cuda-python cannot load CUDA: {failure}") from None
        if error != self._rt.cudaError_t.cudaSuccess:
            raise EngineUnavailable(f"no CUDA GPU ({self._describe(error)})")
        if count == 0:
            raise EngineUnavailable("no CUDA GPU")
        properties = self.call("cudaGetDeviceProperties", self.call("cudaGetDevice"))
        name = properties.name
        return (name.split(b"\0")[0].decode() if isinstance(name, bytes) else str(name)).strip()

    def upload(self, device: int, array: np.ndarray, stream: Any) -> None:
        self.call("cudaMemcpyAsync", device, array.ctypes.data, array.nbytes,
                  self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream)

    def download(self, array: np.ndarray, device: int, stream: Any) -> None:
        self.call("cudaMemcpyAsync", array.ctypes.data, device, array.nbytes,
                  self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream)

    def _describe(self, error: Any) -> str:
        _, text = self._rt.cudaGetErrorString(error)
        return text.decode() if isinstance(text, bytes) else str(text)


def model_digest(path: Path) -> str:
    """sha256 of the ONNX file and of ``<name>.data`` beside it, where torch.onnx.export keeps
    the weights of a model exported with external data (its default since torch 2.9)."""
    digest = hashlib.sha256(path.read_bytes())
    weights = path.with_name(path.name + ".data")
    if weights.is_file():
        digest.update(weights.read_bytes())
    return digest.hexdigest()


def engine_cache_file(folder: Path, model: Path, model_sha256: str, gpu: str, trt_version: str,
                      precision: str, max_batch: int) -> Path:
    """Where the engine built from this model, for this GPU and TensorRT, is kept."""
    gpu_slug = re.sub(r"[^A-Za-z0-9.]+", "-", gpu).strip("-")
    return folder / (f"{model.stem}-{model_sha256[:16]}-{gpu_slug}-trt{trt_version}-{precision}"
                     f"-b{max_batch}.engine")


class TensorRTEngine(Engine):
    """The regressor as a TensorRT engine (built or loaded from the cache) on the current GPU.

    ``precision`` is fp32, fp16 (TensorRT may run layers in half precision; about 1e-3
    relative error) or int8 (needs ``calibration_batches`` the first time; the calibration
    table is cached beside the engines).
    """

    name = "tensorrt"

    def __init__(self, model_path: str | Path, *, precision: str = "fp32",
                 max_batch: int = DEFAULT_MAX_BATCH, cache: Path | None = None,
                 calibration_batches: CalibrationBatches | None = None) -> None:
        if precision not in PRECISIONS:
            raise FacetrackError(f"unknown TensorRT precision {precision!r}; "
                                 f"choose from {', '.join(PRECISIONS)}")
        if max_batch < 1:
            raise FacetrackError(f"max_batch must be at least 1, got {max_batch}")
        path = existing_model(model_path)
        self.precision = precision
        trt = _import_tensorrt()
        if precision != "fp32" and not hasattr(trt.BuilderFlag, "FP16"):
            raise EngineUnavailable(
                f"TensorRT {trt.__version__} has no {precision} builder flag (TensorRT 11 "
                f"builds the precision stored in the model): use fp32, or tensorrt-cu12<11")
        self._cuda = CudaRuntime(_import_cuda_runtime())
        gpu = self._cuda.gpu_name()
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)  # must outlive the engine
        self._buffers: dict[str, int] = {}
        self._engine: Any = None
        self._context: Any = None
        self._stream: Any = self._cuda.call("cudaStreamCreate")
        try:
            self._engine = self._load(trt, path, gpu, max_batch, cache or cache_dir(),
                                      calibration_batches)
            self._bind(trt, path)
        except BaseException:
            self.close()
            raise

    def _load(self, trt: ModuleType, path: Path, gpu: str, max_batch: int, folder: Path,
              calibration_batches: CalibrationBatches | None) -> Any:
        """The deserialised engine: from the cache, else built (and cached)."""
        digest = model_digest(path)
        cached = engine_cache_file(folder, path, digest, gpu, trt.__version__, self.precision,
                                   max_batch)
        plan = cached.read_bytes() if cached.is_file() else None
        engine = self._runtime.deserialize_cuda_engine(plan) if plan else None
        if engine is not None:
            log.debug("tensorrt: loaded %s", cached)
            return engine
        if plan:
            log.warning("tensorrt: cached engine %s is unusable; rebuilding it", cached)
        calibration_cache = folder / f"{path.stem}-{digest[:16]}-trt{trt.__version__}.calib"
        if (self.precision == "int8" and calibration_batches is None
                and not calibration_cache.is_file()):
            raise FacetrackError("TensorRT int8 needs calibration batches (landmark rays "
                                 "and shading of plausible faces) to build its first engine")
        log.info("tensorrt: building a %s engine for %s on %s (batch 1-%d); once per model, GPU "
                 "and TensorRT version", self.precision, path.name, gpu, max_batch)
        builder = _Builder(trt, self._logger, self._cuda, self._stream)
        plan = builder.build(path, self.precision, max_batch,
                             calibration_batches, calibration_cache)
        _write_atomically(cached, plan)
        engine = self._runtime.deserialize_cuda_engine(plan)
        if engine is None:
            raise EngineUnavailable(f"TensorRT cannot load the engine it built from {path}")
        return engine

    def _bind(self, trt: ModuleType, path: Path) -> None:
        """Reads the I/O tensors and gives each a device buffer for the largest batch."""
        engine = self._engine
        specs = []
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            specs.append((_tensor_spec(trt, name, engine.get_tensor_shape(name),
                                       engine.get_tensor_dtype(name)),
                          engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT))
        self.input = single_input(path, [spec for spec, is_input in specs if is_input])
        self.outputs = tuple(spec for spec, is_input in specs if not is_input)
        if self.input.shape[0] is None:
            self._max_batch = engine.get_tensor_profile_shape(self.input.name, 0)[2][0]
        else:
            self._max_batch = self.input.shape[0]
        self._context = engine.create_execution_context()
        self._set_batch(self._max_batch)
        for spec in (self.input, *self.outputs):
            shape = tuple(self._context.get_tensor_shape(spec.name))
            if min(shape, default=0) < 0:
                raise EngineUnavailable(f"TensorRT: {path} output {spec.name!r} has a "
                                        f"data-dependent shape {shape}, not supported here")
            self._buffers[spec.name] = self._cuda.call(
                "cudaMalloc", math.prod(shape) * spec.dtype.itemsize)
            if not self._context.set_tensor_address(spec.name, self._buffers[spec.name]):
                raise FacetrackError(f"TensorRT refused the device buffer for {spec.name!r}")

    def _set_batch(self, size: int) -> None:
        if not self._context.set_input_shape(self.input.name, (size, *self.input.shape[1:])):
            raise FacetrackError(f"TensorRT rejected input shape ({size}, ...) for "
                                 f"{self.input.name!r}")

    def _run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        chunks = [self._run_chunk(batch[start:start + self._max_batch])
                  for start in range(0, len(batch), self._max_batch)]
        return {spec.name: np.concatenate([chunk[spec.name] for chunk in chunks])
                for spec in self.outputs}

    def _run_chunk(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self._set_batch(len(batch))
        self._cuda.upload(self._buffers[self.input.name], batch, self._stream)
        if not self._context.execute_async_v3(int(self._stream)):
            raise FacetrackError("TensorRT inference failed (see TensorRT's log above)")
        results = {}
        for spec in self.outputs:
            results[spec.name] = np.empty(tuple(self._context.get_tensor_shape(spec.name)),
                                          spec.dtype)
            self._cuda.download(results[spec.name], self._buffers[spec.name], self._stream)
        self._cuda.call("cudaStreamSynchronize", self._stream)
        return results

    def close(self) -> None:
        if self._stream is None:
            return
        self._cuda.call("cudaStreamSynchronize", self._stream)
        self._context = self._engine = None  # before the memory they point at
        for pointer in self._buffers.values():
            self._cuda.call("cudaFree", pointer)
        self._buffers.clear()
        self._cuda.call("cudaStreamDestroy", self._stream)
        self._stream = None


class _Builder:
    """ONNX -> serialised engine: the parser, one optimisation profile for the batch axis, the
    precision flags and, for int8, the calibrator."""

    def __init__(self, trt: ModuleType, logger: Any, cuda: CudaRuntime, stream: Any) -> None:
        self._trt = trt
        self._logger = logger
        self._cuda = cuda
        self._stream = stream

    def build(self, path: Path, precision: str, max_batch: int,
              calibration_batches: CalibrationBatches | None, calibration_cache: Path) -> bytes:
        trt = self._trt
        builder = trt.Builder(self._logger)
        network = builder.create_network(0)  # explicit batch: the only mode in TensorRT 10
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse_from_file(str(path)):  # from the file: finds external weights
            errors = "; ".join(str(parser.get_error(i)).strip() for i in range(parser.num_errors))
            raise EngineUnavailable(f"TensorRT cannot parse {path}: {errors or 'unknown error'}")
        inputs = [network.get_input(index) for index in range(network.num_inputs)]
        spec = single_input(path, [_tensor_spec(trt, tensor.name, tensor.shape, tensor.dtype)
                                   for tensor in inputs])
        if None in spec.shape[1:]:
            raise EngineUnavailable(f"TensorRT: {path} input {spec.name!r} has open dimensions "
                                    f"besides the batch: {spec.describe()}")
        rest = tuple(size for size in spec.shape[1:] if size is not None)  # all, checked above
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
        if spec.shape[0] is None:
            config.add_optimization_profile(self._profile(
                builder, spec.name, 1, min(OPT_BATCH, max_batch), max_batch, rest))
        if precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)  # int8 falls back to fp16, not fp32
            _geometry_in_fp32(trt, network, config)
        calibrator = None
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
            calibration_batch = spec.shape[0] or max_batch
            if spec.shape[0] is None:
                config.set_calibration_profile(self._profile(
                    builder, spec.name, calibration_batch, calibration_batch, calibration_batch,
                    rest))
            calibrator = _make_calibrator(trt, self._cuda, self._stream, spec,
                                          (calibration_batch, *rest), calibration_batches,
                                          calibration_cache)
            config.int8_calibrator = calibrator
        try:
            plan = builder.build_serialized_network(network, config)
        finally:
            if calibrator is not None:
                calibrator.free()
        if calibrator is not None and calibrator.error is not None:
            raise calibrator.error
        if plan is None:
            raise EngineUnavailable(f"TensorRT could not build an engine from {path} "
                                    f"(see TensorRT's log above)")
        return bytes(plan)

    @staticmethod
    def _profile(builder: Any, name: str, low: int, opt: int, high: int,
                 rest: tuple[int, ...]) -> Any:
        profile = builder.create_optimization_profile()
        profile.set_shape(name, (low, *rest), (opt, *rest), (high, *rest))
        return profile


def _geometry_in_fp32(trt: ModuleType, network: Any, config: Any) -> None:
    """Reduced precision for the network only: every float layer around it (the ray geometry)
    is pinned to fp32 (TensorRT keeps to that where it has an fp32 kernel, which every layer
    here has). fp16 rounds a ray to about 1e-3 of its length, a few tenths of a pixel, and
    the network's input is differences of rays over the face's size, a few dozen pixels for a
    far face: percent-level noise before the network sees it, and the pose is decoded through
    1 / (1 + c) and exp. int8 would wreck the geometry outright."""
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        outputs = range(layer.num_outputs)
        if layer.name.startswith(NETWORK_PREFIXES) or any(
                layer.get_output(i).dtype != trt.float32 for i in outputs):
            continue  # the network's, or integer shape arithmetic
        layer.precision = trt.float32
        for i in outputs:
            layer.set_output_type(i, trt.float32)
    config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)


def _tensor_spec(trt: ModuleType, name: str, shape: Iterable[int], dtype: Any) -> TensorSpec:
    """A TensorRT tensor's spec; TensorRT marks open dimensions -1."""
    return TensorSpec(name, tuple(None if size < 0 else size for size in shape),
                      np.dtype(trt.nptype(dtype)))


def _make_calibrator(trt: ModuleType, cuda: CudaRuntime, stream: Any, spec: TensorSpec,
                     shape: tuple[int, ...], batches: CalibrationBatches | None,
                     cache_file: Path) -> Any:
    """An IInt8EntropyCalibrator2 that feeds TensorRT ``batches(shape[0])`` and keeps its table
    in ``cache_file``. The class is made here because its base comes from the lazily imported
    ``tensorrt``.

    TensorRT calls these methods from C++, where a Python exception cannot pass: a failure is
    kept in ``error`` (and ends calibration) for the builder to raise afterwards.
    """

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.error: BaseException | None = None
            self._batches: Iterator[np.ndarray] | None = None
            self._device: int | None = cuda.call(
                "cudaMalloc", math.prod(shape) * spec.dtype.itemsize)

        def get_batch_size(self) -> int:
            return shape[0]

        def get_batch(self, names: list[str]) -> list[int] | None:
            try:
                if self._batches is None:
                    if batches is None:  # the cache was stale after all
                        raise FacetrackError("TensorRT int8 calibration needs batches")
                    self._batches = iter(batches(shape[0]))
                batch = next(self._batches, None)
                if batch is None:
                    return None
                array = np.ascontiguousarray(batch, dtype=spec.dtype)
                if array.shape != shape:
                    raise FacetrackError(f"calibration batch has shape {array.shape}, "
                                         f"expected {shape}")
                cuda.upload(self._device, array, stream)
                cuda.call("cudaStreamSynchronize", stream)
                return [self._device]
            except BaseException as error:
                self.error = error
                return None

        def read_calibration_cache(self) -> bytes | None:
            return cache_file.read_bytes() if cache_file.is_file() else None

        def write_calibration_cache(self, cache: Any) -> None:
            _write_atomically(cache_file, bytes(cache))

        def free(self) -> None:
            if self._device is not None:
                cuda.call("cudaFree", self._device)
                self._device = None

    return EntropyCalibrator()


def _write_atomically(path: Path, data: bytes) -> None:
    """Whole file or none: an interrupted build must not leave a truncated engine behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".part")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
