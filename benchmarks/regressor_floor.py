"""What the regressor's call costs right after MediaPipe's, part by part: how low a regressor
could go inside ``facetrack run``'s loop on ONNX Runtime (issue 4 asks for 0.3 ms a face).

    .venv/bin/python benchmarks/regressor_floor.py [--rounds R]

Per frame of the WolfgangLanger footage (played R times, default 4), MediaPipe finds the face
(timed: the bare-MediaPipe loop), then one of these graphs takes the frame's input, in turn, so
all see the same cold caches MediaPipe leaves:

- the committed model;
- its network alone (`engines.network.TwoReadings` with the committed weights), without the
  camera geometry around it;
- the same geometry around a network of width 16 and one block (random weights: 5% of the
  committed one's), and that network alone;
- a graph of one Identity node: ONNX Runtime's own cost for a call.

Each is timed again back to back (the tight loop), where its caches stay warm. Sessions are
made as `engines.onnxruntime_engine` makes them (one thread, no spinning).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import av  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from onnx import helper, numpy_helper  # noqa: E402

from calibrate.intrinsics import Intrinsics  # noqa: E402
from engines.network import RegressorNet, TwoReadings  # noqa: E402
from engines.onnxruntime_engine import session_options  # noqa: E402
from engines.train import OPSET, export, half_weights  # noqa: E402
from tracker.landmarks import FaceMesh  # noqa: E402
from tracker.native_log import filter_native_stderr  # noqa: E402
from tracker.regressor import DEFAULT_MODEL, model_inputs  # noqa: E402
from tracker.shading import with_shading  # noqa: E402

FOOTAGE = Path(__file__).resolve().parents[2] / "shared" / "footage"
TIGHT_CALLS = 1000


def committed_net() -> RegressorNet:
    """The committed model's network, its weights read back from the ONNX file."""
    prefix = "net.net."
    weights = {item.name[len(prefix):].removesuffix("_half"):
               torch.from_numpy(numpy_helper.to_array(item).astype(np.float32))
               for item in onnx.load(str(DEFAULT_MODEL)).graph.initializer
               if item.name.startswith(prefix)}
    net = RegressorNet(width=weights["stem.bias"].numel(),
                       depth=len({name.split(".")[1] for name in weights
                                  if name.startswith("blocks.")}))
    net.load_state_dict(weights, strict=False)  # `read` is a constant of the class
    return net.eval()


def network_alone(net: RegressorNet, path: Path) -> Path:
    """NET without the geometry: positions (N, L, 2) and shading (N, L) in."""
    torch.onnx.export(TwoReadings(net), (torch.zeros(2, 478, 2), torch.zeros(2, 478)),
                      str(path), input_names=["positions", "shading"], opset_version=OPSET,
                      dynamic_axes={"positions": {0: "faces"}, "shading": {0: "faces"}},
                      dynamo=False)
    onnx.save(half_weights(onnx.load(str(path))), str(path))
    return path


def one_node(path: Path) -> Path:
    tensor = helper.make_tensor_value_info("landmarks", onnx.TensorProto.FLOAT,
                                           ["faces", 478, 3])
    out = helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, ["faces", 478, 3])
    graph = helper.make_graph([helper.make_node("Identity", ["landmarks"], ["out"])],
                              "identity", [tensor], [out])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]), str(path))
    return path


def graphs(folder: Path) -> dict[str, Path]:
    torch.manual_seed(0)
    tiny = RegressorNet(width=16, depth=1).eval()
    export(tiny, folder / "tiny.onnx")
    return {"committed model": Path(DEFAULT_MODEL),
            "its network alone": network_alone(committed_net(), folder / "network.onnx"),
            "geometry + network of width 16, 1 block": folder / "tiny.onnx",
            "network of width 16, 1 block, alone": network_alone(tiny, folder / "tiny_net.onnx"),
            "one Identity node": one_node(folder / "identity.onnx")}


def _frames(rounds: int) -> Iterator[np.ndarray]:
    for _ in range(rounds):
        with av.open(str(FOOTAGE / "WolfgangLanger_Pexels.mp4")) as container:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")


def parameters(path: Path) -> int:
    return sum(int(np.prod(item.dims)) for item in onnx.load(str(path)).graph.initializer)


def feed(session: ort.InferenceSession, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """The model input (N, L, 3), or for a network alone its rays and shading, standing in
    for the normalised positions it would be given (the same arithmetic)."""
    if len(session.get_inputs()) == 1:
        return {"landmarks": inputs}
    return {"positions": np.ascontiguousarray(inputs[..., :2]),
            "shading": np.ascontiguousarray(inputs[..., 2])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    filter_native_stderr()
    warnings.simplefilter("ignore")  # the TorchScript exporter's notices
    with tempfile.TemporaryDirectory() as folder:
        paths = graphs(Path(folder))
        weights = {name: parameters(path) for name, path in paths.items()}
        sessions = {name: ort.InferenceSession(str(path), session_options(),
                                               providers=["CPUExecutionProvider"])
                    for name, path in paths.items()}
    names = list(sessions)
    after = {name: [] for name in names}
    mediapipe: list[float] = []
    turn = 0
    with FaceMesh() as mesh:
        for image in _frames(args.rounds):
            start = time.perf_counter()
            faces = mesh.process(image)
            mediapipe.append(time.perf_counter() - start)
            if not faces:
                continue
            faces = with_shading(image, faces)
            inputs = model_inputs(np.stack([face.landmarks for face in faces]),
                                  np.stack([face.shading for face in faces]),
                                  Intrinsics.from_fov(image.shape[1], image.shape[0]))
            name = names[turn % len(names)]
            turn += 1
            fed = feed(sessions[name], inputs)
            start = time.perf_counter()
            sessions[name].run(None, fed)
            after[name].append(time.perf_counter() - start)
    print("| graph | weights | after MediaPipe, median ms | p95 ms | calls | back to back, "
          "median ms |\n|---|---:|---:|---:|---:|---:|")
    for name, session in sessions.items():
        fed = feed(session, inputs)
        tight = []
        for _ in range(TIGHT_CALLS):
            start = time.perf_counter()
            session.run(None, fed)
            tight.append(time.perf_counter() - start)
        ms = np.array(after[name]) * 1e3
        print(f"| {name} | {weights[name]:,} | {np.median(ms):.3f} | "
              f"{np.percentile(ms, 95):.3f} | {len(ms)} | {np.median(tight) * 1e3:.3f} |")
    ms = np.array(mediapipe) * 1e3
    print(f"\nbare MediaPipe (FaceMesh.process), same run: {np.median(ms):.2f} ms median, "
          f"p95 {np.percentile(ms, 95):.2f}, {len(ms)} frames")


if __name__ == "__main__":
    main()
