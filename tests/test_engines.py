"""engines/: every backend runs a real (small) regressor and matches a numpy reference."""

from __future__ import annotations

import importlib.util
import logging
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnxruntime as ort
import pytest

from engines import Engine, EngineUnavailable, TensorSpec, cache_dir, open_engine, seconds_per_call
from engines.onnxruntime_engine import PROVIDERS, OnnxRuntimeEngine
from engines.tensorrt_engine import (
    CudaRuntime,
    TensorRTEngine,
    _geometry_in_fp32,
    _import_cuda_runtime,
    engine_cache_file,
    model_digest,
)
from streams.errors import FacetrackError

onnx = pytest.importorskip("onnx")  # builds the test model; installed with the train extra
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

POINTS, HIDDEN, EXPRESSIONS, POSE = 478, 16, 53, 6
Reference = Callable[[np.ndarray], dict[str, np.ndarray]]


def make_regressor(path: Path, seed: int = 0) -> Reference:
    """Writes a two-headed MLP with the regressor's interface to ``path``: landmarks (N, 478, 3)
    -> expression (N, 53) in [0, 1] and pose (N, 6); returns its float64 numpy twin."""
    rng = np.random.default_rng(seed)
    weights = {
        "w_hidden": rng.normal(0, (POINTS * 3) ** -0.5, (POINTS * 3, HIDDEN)),
        "b_hidden": rng.normal(0, 0.1, HIDDEN),
        "w_expression": rng.normal(0, HIDDEN ** -0.5, (HIDDEN, EXPRESSIONS)),
        "w_pose": rng.normal(0, HIDDEN ** -0.5, (HIDDEN, POSE)),
        "b_pose": rng.normal(0, 0.1, POSE),
    }
    weights = {name: value.astype(np.float32) for name, value in weights.items()}
    nodes = [
        helper.make_node("Flatten", ["landmarks"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w_hidden"], ["pre"]),
        helper.make_node("Add", ["pre", "b_hidden"], ["pre_biased"]),
        helper.make_node("Sigmoid", ["pre_biased"], ["hidden"]),
        helper.make_node("MatMul", ["hidden", "w_expression"], ["expression_logits"]),
        helper.make_node("Sigmoid", ["expression_logits"], ["expression"]),
        helper.make_node("MatMul", ["hidden", "w_pose"], ["pose_raw"]),
        helper.make_node("Add", ["pose_raw", "b_pose"], ["pose"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_regressor",
        [helper.make_tensor_value_info("landmarks", TensorProto.FLOAT, ["N", POINTS, 3])],
        [helper.make_tensor_value_info("expression", TensorProto.FLOAT, ["N", EXPRESSIONS]),
         helper.make_tensor_value_info("pose", TensorProto.FLOAT, ["N", POSE])],
        [numpy_helper.from_array(value, name) for name, value in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9  # what onnxruntime and TensorRT 10 read, whatever onnx writes by default
    onnx.checker.check_model(model)
    onnx.save(model, str(path))

    w = {name: value.astype(np.float64) for name, value in weights.items()}

    def reference(landmarks: np.ndarray) -> dict[str, np.ndarray]:
        hidden = _sigmoid(landmarks.reshape(-1, POINTS * 3) @ w["w_hidden"] + w["b_hidden"])
        return {"expression": _sigmoid(hidden @ w["w_expression"]),
                "pose": hidden @ w["w_pose"] + w["b_pose"]}

    return reference


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def landmarks(batch: int, seed: int = 1) -> np.ndarray:
    """Face-like magnitudes: pixels around an image centre, z a few pixels deep."""
    rng = np.random.default_rng(seed)
    points = rng.normal([320, 240, 0], [60, 70, 20], (batch, POINTS, 3))
    return (points / 100).astype(np.float32)


def check_parity(engine: Engine, reference: Reference, inputs: Iterable[np.ndarray],
                 atol: float) -> None:
    """``engine`` gives ``reference``'s outputs (same names, shapes) to ``atol`` on each input."""
    for batch in inputs:
        got = engine.infer(batch)
        want = reference(batch.astype(np.float64))
        assert got.keys() == want.keys()
        for name, value in want.items():
            assert got[name].shape == value.shape, name
            np.testing.assert_allclose(got[name], value, rtol=0, atol=atol, err_msg=name)


@pytest.fixture(scope="module")
def regressor(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Reference]:
    path = tmp_path_factory.mktemp("model") / "regressor.onnx"
    return path, make_regressor(path)


@pytest.fixture
def cpu(regressor: tuple[Path, Reference]) -> Iterable[Engine]:
    with open_engine(regressor[0], "onnxruntime") as engine:
        yield engine


BATCHES = [landmarks(size, seed=size) for size in (1, 3, 7)]


# --- ONNX Runtime on CPU: runs everywhere ---

def test_onnxruntime_matches_reference(cpu: Engine, regressor: tuple[Path, Reference]) -> None:
    check_parity(cpu, regressor[1], BATCHES, atol=1e-5)


def test_reads_names_and_shapes_from_the_model(cpu: Engine) -> None:
    assert cpu.name == "onnxruntime"
    assert cpu.input == TensorSpec("landmarks", (None, POINTS, 3), np.dtype(np.float32))
    assert [(spec.name, spec.shape) for spec in cpu.outputs] == [
        ("expression", (None, EXPRESSIONS)), ("pose", (None, POSE))]
    assert "landmarks(N, 478, 3) -> expression(N, 53), pose(N, 6)" in repr(cpu)


def test_session_runs_on_one_thread_without_spinning(cpu: OnnxRuntimeEngine) -> None:
    options = cpu.session.get_session_options()  # the options the live session was made with
    assert options.intra_op_num_threads == 1
    assert options.inter_op_num_threads == 1
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    assert cpu.session.get_providers() == ["CPUExecutionProvider"]


def test_other_float_types_are_converted(cpu: Engine) -> None:
    batch = BATCHES[1]
    converted = cpu.infer(batch.astype(np.float64))
    for name, value in cpu.infer(batch).items():
        assert converted[name].dtype == np.float32
        np.testing.assert_array_equal(converted[name], value)


def test_no_face_gives_empty_outputs(cpu: Engine) -> None:
    outputs = cpu.infer(np.zeros((0, POINTS, 3), np.float32))
    assert {name: value.shape for name, value in outputs.items()} == {
        "expression": (0, EXPRESSIONS), "pose": (0, POSE)}


@pytest.mark.parametrize("shape", [(2, 468, 3), (POINTS, 3), (1, POINTS, 2)])
def test_wrong_shape_names_expected_and_got(cpu: Engine, shape: tuple[int, ...]) -> None:
    with pytest.raises(FacetrackError) as caught:
        cpu.infer(np.zeros(shape, np.float32))
    assert str(caught.value) == (f"onnxruntime: regressor input 'landmarks' must have shape "
                                 f"(N, 478, 3), got {shape}")


def test_text_file_is_not_an_onnx_model(tmp_path: Path) -> None:
    fake = tmp_path / "notes.onnx"
    fake.write_text("these are my notes, not a model\n")
    for kind in ("auto", "onnxruntime"):
        with pytest.raises(FacetrackError) as caught:
            open_engine(fake, kind)
        message = str(caught.value)
        assert message.startswith(f"{fake} is not an ONNX model: "), message
        assert "Protobuf parsing failed" in message
        assert "\n" not in message


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(FacetrackError, match="no such model file"):
        open_engine(tmp_path / "absent.onnx")


def test_model_with_two_inputs_is_refused(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["sum"])], "two_inputs",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 3]) for name in "ab"],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["N", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(tmp_path / "two.onnx"))
    with pytest.raises(FacetrackError, match=r"has 2 inputs \(a, b\); the landmark regressor"):
        open_engine(tmp_path / "two.onnx", "onnxruntime")


def test_torch_export_runs_and_matches_torch(tmp_path: Path) -> None:
    """The way the real regressor is made: torch's exporter, dynamic batch, external weights."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)

    class TwoHeads(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.hidden = torch.nn.Linear(POINTS * 3, HIDDEN)
            self.expression = torch.nn.Linear(HIDDEN, EXPRESSIONS)
            self.pose = torch.nn.Linear(HIDDEN, POSE)

        def forward(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            hidden = torch.tanh(self.hidden(points.flatten(1)))
            return torch.sigmoid(self.expression(hidden)), self.pose(hidden)

    module = TwoHeads().eval()
    path = tmp_path / "torch_regressor.onnx"
    torch.onnx.export(module, (torch.zeros(2, POINTS, 3),), str(path),
                      input_names=["landmarks"], output_names=["expression", "pose"],
                      dynamic_shapes={"points": {0: torch.export.Dim("batch")}})

    def reference(batch: np.ndarray) -> dict[str, np.ndarray]:
        with torch.no_grad():
            expression, pose = module(torch.from_numpy(batch.astype(np.float32)))
        return {"expression": expression.numpy(), "pose": pose.numpy()}

    with open_engine(path, "onnxruntime") as engine:
        check_parity(engine, reference, BATCHES, atol=1e-5)


# --- choosing a backend ---

def _gpu_backend_installed() -> bool:
    return (importlib.util.find_spec("tensorrt") is not None
            or "CUDAExecutionProvider" in ort.get_available_providers())


def test_auto_picks_onnxruntime_and_says_why(regressor: tuple[Path, Reference],
                                             caplog: pytest.LogCaptureFixture) -> None:
    if _gpu_backend_installed():
        pytest.skip("a GPU backend is installed here: auto may rightly pick it")
    caplog.set_level(logging.INFO, logger="facetrack.engines")
    with open_engine(regressor[0]) as engine:
        assert engine.name == "onnxruntime"
        check_parity(engine, regressor[1], BATCHES[:1], atol=1e-5)
    messages = [record.getMessage() for record in caplog.records
                if record.name == "facetrack.engines"]
    assert any(message.startswith("engine tensorrt skipped: TensorRT is not installed "
                                  "(pip install tensorrt-cu12 cuda-python)")
               for message in messages), messages
    assert any(message.startswith("engine cuda skipped: onnxruntime")
               and "has no CUDAExecutionProvider" in message for message in messages), messages
    assert "engine: onnxruntime for regressor.onnx" in messages


def test_auto_can_time_the_candidates(regressor: tuple[Path, Reference]) -> None:
    with open_engine(regressor[0], pick_fastest=True) as engine:
        assert 0 < seconds_per_call(engine, runs=5) < 0.1


@pytest.mark.parametrize("kind, message", [
    ("tensorrt", re.escape("engine tensorrt cannot run here: TensorRT is not installed "
                           "(pip install tensorrt-cu12 cuda-python)") + "$"),
    ("cuda", "engine cuda cannot run here: onnxruntime .* has no CUDAExecutionProvider "
             r"\(pip install onnxruntime-gpu in place of onnxruntime\)$"),
])
def test_unavailable_kind_is_one_line(regressor: tuple[Path, Reference], kind: str,
                                      message: str) -> None:
    if _gpu_backend_installed():
        pytest.skip("a GPU backend is installed here")
    with pytest.raises(EngineUnavailable, match=message) as caught:
        open_engine(regressor[0], kind)
    assert "\n" not in str(caught.value)


def test_bad_kind_or_precision(regressor: tuple[Path, Reference]) -> None:
    with pytest.raises(FacetrackError, match="unknown engine kind 'tpu'; choose from auto, "):
        open_engine(regressor[0], "tpu")
    with pytest.raises(FacetrackError, match="precision fp16 needs engine kind tensorrt"):
        open_engine(regressor[0], "onnxruntime", precision="fp16")


# --- the cache ---

def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FACETRACK_CACHE", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.setenv("FACETRACK_CACHE", "")
    assert cache_dir() == tmp_path / "xdg" / "facetrack"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "facetrack"


def test_engine_file_name_changes_with_each_key(tmp_path: Path) -> None:
    model = tmp_path / "regressor.onnx"
    make_regressor(model)
    digest = model_digest(model)
    key = dict(model_sha256=digest, gpu="NVIDIA H100 80GB HBM3", trt_version="10.7.0",
               precision="fp16", max_batch=16)
    name = engine_cache_file(tmp_path, model, **key)
    assert name.parent == tmp_path and name.suffix == ".engine" and " " not in name.name
    for field, other in [("model_sha256", "0" * 64), ("gpu", "NVIDIA GeForce RTX 4090"),
                         ("trt_version", "10.8.0"), ("precision", "int8"), ("max_batch", 8)]:
        assert engine_cache_file(tmp_path, model, **{**key, field: other}) != name, field
    make_regressor(model, seed=1)  # retrained: same graph, new weights
    retrained = model_digest(model)
    assert retrained != digest
    (tmp_path / "regressor.onnx.data").write_bytes(b"weights torch exported beside the graph")
    assert model_digest(model) != retrained


def test_cuda_errors_are_checked() -> None:
    """cuda-python returns error codes; a failed call must raise, not hand back garbage."""
    errors = SimpleNamespace(cudaSuccess=0, cudaErrorMemoryAllocation=2, cudaErrorNoDevice=100)
    strings = {2: b"out of memory", 100: b"no CUDA-capable device is detected"}
    fake = SimpleNamespace(
        cudaError_t=errors,
        cudaGetErrorString=lambda error: (0, strings[error]),
        cudaMalloc=lambda size: (errors.cudaErrorMemoryAllocation, 0),
        cudaStreamSynchronize=lambda stream: (errors.cudaSuccess,),
        cudaGetDeviceCount=lambda: (errors.cudaErrorNoDevice, 0),
    )
    cuda = CudaRuntime(fake)
    assert cuda.call("cudaStreamSynchronize", 0) is None
    with pytest.raises(FacetrackError, match="^CUDA cudaMalloc failed: out of memory$"):
        cuda.call("cudaMalloc", 1024)
    with pytest.raises(EngineUnavailable,
                       match=r"^no CUDA GPU \(no CUDA-capable device is detected\)$"):
        cuda.gpu_name()


class FakeLayer:
    """The little of TensorRT's ILayer that `_geometry_in_fp32` uses."""

    def __init__(self, name: str, dtype: str) -> None:
        self.name, self.num_outputs = name, 1
        self.precision: str | None = None
        self.output_types: dict[int, str] = {}
        self._output = SimpleNamespace(dtype=dtype)

    def get_output(self, index: int) -> SimpleNamespace:
        return self._output

    def set_output_type(self, index: int, dtype: str) -> None:
        self.output_types[index] = dtype


def test_tensorrt_keeps_the_geometry_around_the_network_in_fp32() -> None:
    """fp16 and int8 builds pin the float layers outside the network (named "/net/..." or after
    its weights, "net....") to fp32, and leave integer shape layers alone."""
    layers = [FakeLayer("/Pad", "float32"), FakeLayer("/Shape", "int64"),
              FakeLayer("net.stem.weight_cast", "float32"), FakeLayer("/net/stem/Gemm", "float32"),
              FakeLayer("/MatMul_1", "float32")]
    flags: list[str] = []
    trt = SimpleNamespace(float32="float32",
                          BuilderFlag=SimpleNamespace(PREFER_PRECISION_CONSTRAINTS="prefer"))
    _geometry_in_fp32(trt, SimpleNamespace(num_layers=len(layers), get_layer=layers.__getitem__),
                      SimpleNamespace(set_flag=flags.append))
    assert {layer.name: layer.precision for layer in layers if layer.precision} == {
        "/Pad": "float32", "/MatMul_1": "float32"}
    assert all(layer.output_types == ({0: "float32"} if layer.precision else {})
               for layer in layers)
    assert flags == ["prefer"]


# --- GPU backends: run where there is a GPU and the libraries, skipped with the reason elsewhere

def _tensorrt_or_skip() -> None:
    if importlib.util.find_spec("tensorrt") is None:
        pytest.skip("TensorRT not installed (pip install tensorrt-cu12 cuda-python)")
    if importlib.util.find_spec("cuda") is None:
        pytest.skip("cuda-python not installed (pip install cuda-python)")
    try:
        CudaRuntime(_import_cuda_runtime()).gpu_name()
    except EngineUnavailable as error:
        pytest.skip(f"no NVIDIA GPU: {error}")


@pytest.mark.parametrize("precision, atol", [("fp32", 1e-4), ("fp16", 2e-2)])
def test_tensorrt_matches_reference_and_caches_its_engine(
        regressor: tuple[Path, Reference], tmp_path: Path, caplog: pytest.LogCaptureFixture,
        precision: str, atol: float) -> None:
    _tensorrt_or_skip()
    caplog.set_level(logging.INFO, logger="facetrack.engines")
    with TensorRTEngine(regressor[0], precision=precision, max_batch=4, cache=tmp_path) as engine:
        assert engine.input == TensorSpec("landmarks", (None, POINTS, 3), np.dtype(np.float32))
        # 7 faces > max_batch 4: run in two chunks
        check_parity(engine, regressor[1], [*BATCHES, landmarks(0)], atol=atol)
    assert len(list(tmp_path.glob("*.engine"))) == 1
    builds = sum("building" in record.getMessage() for record in caplog.records)
    with TensorRTEngine(regressor[0], precision=precision, max_batch=4, cache=tmp_path) as engine:
        check_parity(engine, regressor[1], BATCHES[:1], atol=atol)
    assert sum("building" in record.getMessage() for record in caplog.records) == builds == 1


def test_tensorrt_int8_calibrates_once(regressor: tuple[Path, Reference], tmp_path: Path) -> None:
    _tensorrt_or_skip()
    calls = []

    def calibration_batches(size: int) -> Iterable[np.ndarray]:
        calls.append(size)
        return (landmarks(size, seed=100 + index) for index in range(8))

    with TensorRTEngine(regressor[0], precision="int8", max_batch=8, cache=tmp_path,
                        calibration_batches=calibration_batches) as engine:
        check_parity(engine, regressor[1], BATCHES, atol=0.1)
    assert calls == [8]
    assert len(list(tmp_path.glob("*.calib"))) == 1
    for engine_file in tmp_path.glob("*.engine"):
        engine_file.unlink()  # a rebuild now reads the calibration table instead of calibrating
    with TensorRTEngine(regressor[0], precision="int8", max_batch=8, cache=tmp_path) as engine:
        check_parity(engine, regressor[1], BATCHES[:1], atol=0.1)
    assert calls == [8]


@pytest.mark.parametrize("kind", ["cuda", "ort-tensorrt"])
def test_onnxruntime_gpu_providers_match_reference(
        regressor: tuple[Path, Reference], kind: str, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    provider = PROVIDERS[kind][0]
    if provider not in ort.get_available_providers():
        pytest.skip(f"no NVIDIA GPU build of onnxruntime with {provider} (onnxruntime-gpu)")
    monkeypatch.setenv("FACETRACK_CACHE", str(tmp_path))  # ort-tensorrt keeps its engines there
    try:
        engine = open_engine(regressor[0], kind)
    except EngineUnavailable as error:
        pytest.skip(f"no NVIDIA GPU: {error}")
    with engine:
        assert engine.session.get_providers()[0] == provider
        check_parity(engine, regressor[1], BATCHES, atol=1e-4)
