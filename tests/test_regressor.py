"""The regressor: its geometry round-trips, training runs and learns, the export matches torch on
every engine that runs here, and `facetrack run` reports poses and expressions close to the
truth of a generated clip."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from calibrate.intrinsics import Intrinsics
from engines.select import KINDS, open_engine
from engines.train import RENDERING_CODE, rendering_digest
from engines.train_cli import DEFAULT_CONFIG
from streams.errors import FacetrackError
from streams.recording import read_records
from streams.sources import open_source
from tracker.embedding import LandmarkEmbedding
from tracker.expressions import ICT_EXPRESSION_NAMES
from tracker.face_model import FaceModel, posed
from tracker.pipeline import FaceTracker
from tracker.pose import rotation, yaw
from tracker.refine import Refiner
from tracker.regressor import (
    DEFAULT_MODEL,
    INPUT,
    OUTPUTS,
    FaceFit,
    Manifest,
    Regressor,
    model_inputs,
    rays,
)
from tracker.render import project
from tracker.sampling import DEFAULT_POSES, random_camera, random_rotations, random_translation
from tracker.scoring import read_predictions, rotation_error_deg, score_clip
from tracker.synth import load_truth, write_camera_file

from cli_helpers import FACETRACK, assert_one_line_error, facetrack, synth

if TYPE_CHECKING:
    import torch

    from engines.geometry import Frame


def framed(rng: np.random.Generator,
           body: np.ndarray) -> tuple[Frame, dict[str, torch.Tensor], np.ndarray, np.ndarray]:
    """BODY (N, L, 3, model space, cm) in random poses through random cameras, as training sees
    it: (frame, targets, rotations, translations), the geometry in float64."""
    import torch

    from engines.geometry import RayGeometry

    rotations, _ = random_rotations(rng, len(body))
    cameras = [random_camera(rng) for _ in range(len(body))]
    translations = np.array([random_translation(rng, c) for c in cameras])
    intrinsics = np.array([[c.fx, c.fy, c.cx, c.cy] for c in cameras])
    points = posed(body, rotations, translations)
    pixels = intrinsics[:, None, :2] * points[..., :2] / points[..., 2:] + intrinsics[:, None, 2:]
    geometry = RayGeometry().double()
    frame = geometry.frame(torch.from_numpy(rays(pixels, intrinsics)))
    targets = geometry.targets(frame, torch.from_numpy(rotations), torch.from_numpy(translations))
    return frame, targets, rotations, translations


def six_d(matrices: torch.Tensor) -> torch.Tensor:
    """The network's 6-D rotation answer (N, 6) for rotation matrices (N, 3, 3): two columns."""
    import torch

    return torch.cat([matrices[:, :, 0], matrices[:, :, 1]], 1)


def test_geometry_targets_decode_back_to_the_pose() -> None:
    """Random poses through random cameras: the targets the network learns decode back to the
    exact pose, wherever the face sits in the picture, its inputs have unit RMS size, and the
    reprojection loss's `image_points` of the posed points are those inputs."""
    torch = pytest.importorskip("torch")
    from engines.geometry import RayGeometry, image_points

    rng = np.random.default_rng(0)
    body = rng.normal(0, 5, (50, 478, 3))
    frame, wanted, rotations, translations = framed(rng, body)
    assert frame.inputs.shape == (50, 478, 2)
    assert np.allclose(frame.inputs.square().sum(-1).mean(-1).sqrt().numpy(), 1.0, atol=1e-12)
    head = wanted["head_rotation"]
    rotation, translation = RayGeometry().double().decode(frame, six_d(head), wanted["offset"],
                                                          wanted["log_depth"])
    assert rotation_error_deg(rotation.numpy(), rotations).max() < 1e-6
    assert np.abs(translation.numpy() - translations).max() < 1e-9
    seen = image_points(torch.from_numpy(body), head, wanted["offset"], wanted["log_depth"],
                        frame.centre, frame.scale)
    assert np.abs((seen - frame.inputs).numpy()).max() < 1e-9


def test_the_reprojection_loss_is_zero_at_the_truth_and_grows_with_a_turn(
        installed_model: Path) -> None:
    """The loss's reprojected landmarks, fed the exact answer for real faces in random poses
    and cameras, vanish with every other term; a turn of the answer moves them in proportion."""
    torch = pytest.importorskip("torch")
    from engines.losses import LossWeights, MeshBasis, regressor_loss

    model = FaceModel.load(installed_model)
    rng = np.random.default_rng(1)
    count = 20
    identity = rng.normal(0, 1, (count, model.identity_count))
    frame, pose, _, _ = framed(rng, model.vertices(identity)[:, model.landmarks68])
    target = {k: v.float() for k, v in pose.items()}
    target |= {"centre": frame.centre.float(), "scale": frame.scale.float(),
               "identity": torch.from_numpy(identity).float(),
               "expression": torch.zeros(count, model.expression_count),
               "trust": torch.ones(count)}
    head = target["head_rotation"]
    mesh, weights = MeshBasis(model), LossWeights()

    def reprojection(turn_degrees: float) -> float:
        turn = torch.from_numpy(rotation(turn_degrees)[None] @ rotation(0.0).T).float()
        outputs = {"rotation6d": six_d(turn @ head),
                   "offset": target["offset"], "log_depth": target["log_depth"],
                   "identity": target["identity"], "expression": target["expression"]}
        _, terms = regressor_loss(outputs, target, mesh, weights)
        if turn_degrees == 0:
            assert max(terms.values()) < 1e-4, terms
        return terms["reprojection"]

    assert reprojection(0.0) < 1e-5
    assert 1.8 < reprojection(2.0) / reprojection(1.0) < 2.2


def test_training_tensors_are_the_same_whatever_faces_are_made_at_once(
        installed_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`Batchable.of` makes its tensors a chunk of faces at a time, to fit in memory: each
    face's rows must be bit for bit those of one pass over all, or `facetrack train` would no
    longer make the committed model."""
    torch = pytest.importorskip("torch")
    from engines import train
    from engines.training_data import embedded_landmarks, unseen_faces

    model = FaceModel.load(installed_model)
    rng = np.random.default_rng(4)
    faces = unseen_faces(model, rng, 50, DEFAULT_POSES)
    faces = replace(faces, landmarks=embedded_landmarks(
        model, LandmarkEmbedding.load(model.triangles), faces),
        shading=rng.standard_normal((50, 478)).astype(np.float32))
    whole = train.Batchable.of(faces, 0.3)
    monkeypatch.setattr(train, "CHUNK", 7)
    chunked = train.Batchable.of(faces, 0.3)
    assert torch.equal(whole.inputs, chunked.inputs) and len(chunked) == 50
    assert whole.target.keys() == chunked.target.keys()
    assert all(torch.equal(whole.target[k], chunked.target[k]) for k in whole.target)
    assert torch.all(chunked.target["trust"] == 0.3)


@pytest.fixture(scope="module")
def quick_model(installed_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`facetrack train --quick`, for real, with a cache of its own."""
    folder = tmp_path_factory.mktemp("quick")
    out = folder / "quick.onnx"
    result = subprocess.run(
        [FACETRACK, "train", "--quick", "--out", str(out), "--model", str(installed_model)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "FACETRACK_CACHE": str(folder / "cache")})
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def test_cached_renders_are_named_by_the_code_that_makes_them(
        quick_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Training keeps its renders under the digest of the rendering code, and an edit to any of
    that code changes the digest: renders made by other code are never reused."""
    cached = sorted((quick_model.parent / "cache" / "training").glob("rendered-*.npz"))
    assert cached and all(f"-{rendering_digest()}-" in path.name for path in cached)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = tmp_path / "facetrack_probe_shading.py"
    module.write_text("BLUR = 1.0\n")
    before = rendering_digest(("facetrack_probe_shading",))
    module.write_text("BLUR = 1.5\n")
    assert rendering_digest(("facetrack_probe_shading",)) != before
    assert "tracker.shading" in RENDERING_CODE


@pytest.mark.parametrize(("settings", "named"), [
    ({"projected": 0}, "'projected' must be at least 1"),
    ({"width": "wide"}, "'width' must be a number"),
    ({"rendered": 600, "validation": 600}, "'rendered' (600) must exceed 'validation' (600)"),
    ({"learning_rate": 0}, "'learning_rate' must be above 0"),
])
def test_an_untrainable_config_is_refused_in_one_line_before_rendering(
        tmp_path: Path, settings: dict, named: str) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**json.loads(DEFAULT_CONFIG.read_text()), **settings}))
    out = tmp_path / "model.onnx"
    result = subprocess.run([FACETRACK, "train", "--config", str(config), "--out", str(out)],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "FACETRACK_CACHE": str(tmp_path / "cache")})
    assert_one_line_error(result, str(config), named)
    assert not out.exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("where", ["a folder", "under a file"])
def test_an_unwritable_model_path_is_refused_before_training(tmp_path: Path, where: str) -> None:
    (tmp_path / "file").write_text("")
    out = tmp_path if where == "a folder" else tmp_path / "file" / "model.onnx"
    result = subprocess.run([FACETRACK, "train", "--quick", "--out", str(out)],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "FACETRACK_CACHE": str(tmp_path / "cache")})
    assert_one_line_error(result, f"cannot write {out}")
    assert not (tmp_path / "cache").exists(), "rendered before the path was checked"


def _living_children(pid: int) -> list[int]:
    """PID's child processes that have not exited (a zombie has: only its reaping is due)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if not children.exists():
        return []
    return [int(c) for c in children.read_text().split() if _alive(int(c))]


def _spawned(pids: list[int]) -> list[int]:
    """Those of PIDS that are multiprocessing's spawned workers."""
    found = []
    for pid in pids:
        with contextlib.suppress(FileNotFoundError):
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads processes from /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_stopped_training_leaves_no_render_workers(tmp_path: Path, sig: signal.Signals) -> None:
    """SIGTERM stops `facetrack train` as Ctrl-C does, its workers with it, in one line; a
    killed one's workers notice and exit rather than render on for nobody."""
    out, log = tmp_path / "model.onnx", tmp_path / "stderr.txt"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [FACETRACK, "train", "--out", str(out)], stderr=stderr, text=True,
            env={**os.environ, "FACETRACK_CACHE": str(tmp_path / "cache")})
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(_spawned(workers := _living_children(process.pid))) < 2:  # the renderers
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        time.sleep(3)  # into MediaPipe's work
        process.send_signal(sig)
        process.wait(timeout=60)
        deadline = time.monotonic() + 20
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(w) for w in workers), "render workers outlived their parent"
    finally:
        for pid in [process.pid, *workers]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert not out.exists()
    if sig == signal.SIGTERM:
        assert process.returncode == 130
        lines = log.read_text().splitlines()
        assert "Traceback" not in log.read_text()
        assert lines[-1].startswith("facetrack: training interrupted") and "cache" in lines[-1]


def test_quick_training_lowers_the_loss_and_writes_a_manifest(quick_model: Path) -> None:
    manifest = Manifest.load(quick_model)
    losses = manifest.data["metrics"]["validation_loss_by_epoch"]
    assert losses[-1] < 0.9 * losses[0]
    assert manifest.data["opset"] >= 17
    assert manifest.data["input"]["shape"] == [None, 478, 3]
    assert manifest.data["outputs"] == {"rotation": [3, 3], "translation": [3],
                                        "identity": [100], "expression": [53]}
    assert list(manifest.data["outputs"]) == list(OUTPUTS)
    # Written under other names, then renamed together: nothing else is left beside them.
    assert {p.name for p in quick_model.parent.iterdir()} == {"quick.onnx", "quick.json",
                                                              "cache"}


def test_the_export_reads_faces_as_the_trained_network_does() -> None:
    """The export reads each face with its shading and without in one pass, its stem split by
    channel (`TwoReadings`); training reads (positions, shading) triples one at a time."""
    torch = pytest.importorskip("torch")
    from engines.network import RegressorNet, TwoReadings

    torch.manual_seed(0)
    net = RegressorNet(width=64, depth=1).eval()
    positions, shading = torch.randn(4, 478, 2), torch.randn(4, 478, 1)
    with torch.no_grad():
        both = TwoReadings(net)(positions, shading[..., 0])
        shaded = net(torch.cat([positions, shading], dim=2))
        plain = net(torch.cat([positions, torch.zeros_like(shading)], dim=2))
    for pair, with_shading, without in zip(both, shaded, plain, strict=True):
        assert torch.allclose(pair[0], with_shading, atol=1e-5)
        assert torch.allclose(pair[1], without, atol=1e-5)
    assert not torch.allclose(both[3][0], both[3][1], atol=1e-3)  # the shading is read


def test_export_matches_torch_on_every_engine_that_runs_here(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    from engines.network import CameraRegressor, RegressorNet
    from engines.tensorrt_engine import NETWORK_PREFIXES
    from engines.train import HALF_MIN_SIZE, export

    torch.manual_seed(0)
    net = RegressorNet(width=64, depth=1)
    with torch.no_grad():  # weights the export stores in half precision, rounded as it does
        for weight in net.parameters():
            if weight.numel() >= HALF_MIN_SIZE:
                weight.copy_(weight.half().float())
    out = tmp_path / "net.onnx"
    export(net, out)
    # faces 3-15% of the focal length in size, anywhere in a wide-angle frame
    rng = np.random.default_rng(1)
    directions = (rng.uniform(-0.5, 0.5, (5, 1, 2)) + rng.uniform(0.03, 0.15, (5, 1, 1))
                  * rng.normal(0, 1, (5, 478, 2)))
    batch = model_inputs(directions, rng.normal(0, 1, (5, 478)), np.array([[1.0, 1, 0, 0]] * 5))
    batch = batch.astype(np.float32)
    with torch.no_grad():
        expected = [t.numpy() for t in CameraRegressor(net).eval()(torch.from_numpy(batch))]
    ran = []
    for kind in KINDS:
        try:
            engine = open_engine(out, kind)
        except FacetrackError as error:
            print(f"{kind}: {error}")  # TensorRT and the GPU providers, on a CPU machine
            continue
        with engine:
            outputs = engine.infer(batch)
            assert {spec.name: spec.shape[1:] for spec in engine.outputs} == {
                "rotation": (3, 3), "translation": (3,), "identity": (100,), "expression": (53,)}
        for name, want in zip(OUTPUTS, expected, strict=True):
            assert np.allclose(outputs[name], want, rtol=1e-5, atol=1e-4), (kind, name)
        ran.append(kind)
    assert "onnxruntime" in ran
    # TensorRT tells the network's layers from the geometry's by name (kept in fp32)
    network = [node for node in onnx.load(str(out)).graph.node
               if node.name.startswith(NETWORK_PREFIXES)]
    # stem (positions, shading), block (2), head
    assert sum(node.op_type in ("Gemm", "MatMul") for node in network) == 5
    assert not any(INPUT in node.input or {"rotation", "translation"} & set(node.output)
                   for node in network)


def test_bad_model_file_and_wrong_input_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_text("not a model")
    bad.with_suffix(".json").write_text((DEFAULT_MODEL.with_suffix(".json")).read_text())
    with pytest.raises(FacetrackError, match="not an ONNX model"):
        Regressor(bad, "onnxruntime")
    regressor = Regressor(DEFAULT_MODEL, "onnxruntime")
    with pytest.raises(FacetrackError, match="478"):
        regressor.fit(np.zeros((1, 68, 2)), np.zeros((1, 68)), Intrinsics.from_fov(640, 480))
    result = facetrack("run", "--source", "x.mp4", "--regressor", str(bad))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def clip(installed_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth(tmp_path_factory.mktemp("clip"), "talking", 60, 11, installed_model)


def test_run_records_pose_and_expression_close_to_the_truth(clip: Path,
                                                           installed_model: Path) -> None:
    truth = load_truth(clip / "talking.json")
    camera = write_camera_file(truth, clip / "camera.json")
    record = clip / "talking.jsonl"
    result = facetrack("run", "--source", str(clip / "talking.mp4"), "--record", str(record),
                       "--camera", str(camera), "--quiet")
    assert result.returncode == 0, result.stderr
    header, frames = read_records(record)
    assert header["expression_names"] == list(ICT_EXPRESSION_NAMES)
    assert header["regressor"] == Manifest.load(DEFAULT_MODEL).model_version
    model = FaceModel.load(installed_model)
    predictions = read_predictions(record, truth)
    summary = score_clip(truth, predictions, model)["summary"]
    # Loose bounds: benchmarks/accuracy.py holds the tight ones.
    assert summary["tracked"] >= 0.95
    assert summary["rotation_deg"] < 6
    assert summary["translation_pct"] < 10
    assert summary["r_jawOpen"] > 0.6


def test_refinement_poses_the_tracks_identity_so_far(clip: Path, installed_model: Path) -> None:
    """Frame by frame, the fit's identity is the mean of the track's identity readings so far,
    and the refinement fits pose and expression to it."""
    truth = load_truth(clip / "talking.json")
    camera = truth.intrinsics
    regressor, refiner = Regressor(), Refiner.load(FaceModel.load(installed_model))
    readings = []
    with open_source(str(clip / "talking.mp4")) as source, FaceTracker(
            camera=camera, regressor=regressor, refiner=refiner) as tracker:
        for frame in list(source)[:6]:
            [face] = tracker.fit(tracker.track(frame), *frame.size)
            landmarks = face.observation.landmarks
            reading = regressor.fit(landmarks[None], face.observation.shading[None],
                                    camera).face(0)
            readings.append(reading.identity)
            pooled = np.mean(readings, axis=0)
            expected = refiner.refine(replace(reading, identity=pooled), landmarks, camera)
            assert np.allclose(face.fit.identity, pooled, atol=1e-6)
            assert np.allclose(face.fit.rotation, expected.rotation, atol=1e-5)
            assert np.allclose(face.fit.translation, expected.translation, atol=1e-4)
            assert np.allclose(face.fit.expression, expected.expression, atol=1e-5)
    alone = refiner.refine(reading, landmarks, camera)  # the last frame, its own identity
    assert np.abs(face.fit.translation - alone.translation).max() > 1e-3


def test_refinement_holds_the_rotation_near_the_regressors(installed_model: Path) -> None:
    """Landmarks of a face turned 20°, a fit 4° off: the rotation prior keeps the refined head
    near the fit, moved a little toward the landmarks; without the prior it goes all the way to
    them."""
    model = FaceModel.load(installed_model)
    embedding = LandmarkEmbedding.load(model.triangles)
    camera = Intrinsics.from_fov(640, 480)
    true = rotation(20.0)
    translation = np.array([1.0, -2.0, 60.0])
    rng = np.random.default_rng(4)
    identity = rng.normal(0, 0.5, 100).astype(np.float32)
    model.add_region("embedding", embedding.vertex_index)
    mesh = posed(model.vertices(identity, region="embedding"), true, translation)
    landmarks = project(embedding.points(mesh, yaw(true), embedding.vertex_index), camera)
    fit = FaceFit(identity, np.zeros(53, np.float32), rotation(24.0), translation)
    held, free = Refiner(model, embedding, steps=10), Refiner(model, embedding, 10, 0.0)
    held_error = rotation_error_deg(held.refine(fit, landmarks, camera).rotation[None], true[None])
    free_error = rotation_error_deg(free.refine(fit, landmarks, camera).rotation[None], true[None])
    assert free_error[0] < 0.5
    assert 3.0 < held_error[0] < 3.95, held_error  # 3.7° here: moved, but little


def test_int8_calibration_batches_are_faces_the_model_reads(installed_model: Path,
                                                            footage_dir: Path) -> None:
    from engines.training_data import calibration_inputs
    from tracker.embedding import LandmarkEmbedding

    model = FaceModel.load(installed_model)
    inputs = calibration_inputs(model, LandmarkEmbedding.load(model.triangles), 64)
    assert inputs.shape == (64, 478, 3) and inputs.dtype == np.float32
    assert np.isfinite(inputs).all()
    assert np.abs(inputs[..., :2]).max() < 1.0  # rays within 45° of the axis
    assert abs(inputs[..., 2].std() - 1) < 0.1  # shading: the spread of a standardised face's
    with open_engine(DEFAULT_MODEL, "onnxruntime") as engine:
        depth = engine.infer(inputs)["translation"][:, 2]
    assert ((depth > 20) & (depth < 300)).all(), depth  # sampled 27-140 cm away
    result = facetrack("run", "--source", str(footage_dir / "single_face.jpg"), "--engine",
                       "onnxruntime", "--precision", "int8")
    assert result.returncode != 0 and "tensorrt" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
