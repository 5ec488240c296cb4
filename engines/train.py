"""Trains the regressor from a config and exports it as ONNX with its manifest.

    facetrack train                              # the committed model, from engines/configs
    facetrack train --quick --out /tmp/q.onnx    # a tiny model in about a minute

The data (`engines.training_data`) is made from the config's seeds, so the same config gives
the same data; the rendered part, the slow one, is kept in the cache folder between runs.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import math
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from engines.base import cache_dir
from engines.geometry import RayGeometry
from engines.losses import LossWeights, MeshBasis, regressor_loss
from engines.network import CameraRegressor, RegressorNet
from engines.training_data import FaceSamples, Residuals, projected, rendered
from streams.errors import FacetrackError
from tracker.cli import STOP_SIGNALS
from tracker.embedding import DEFAULT_PATH as EMBEDDING_PATH
from tracker.embedding import LandmarkEmbedding
from tracker.face_model import FaceModel
from tracker.regressor import (
    INPUT,
    MANIFEST_FORMAT,
    MANIFEST_VERSION,
    OUTPUTS,
    file_sha256,
    model_inputs,
    rays,
)

DATA_VERSION = 6  # bump when what a seed makes changes on purpose: the manifest records it
# The code that decides what a rendered face is. A digest of it names the cached renders, so a
# change to any of it renders them again: with the data version alone as the key, regressor
# 2026.12.06-6a1846f3 was trained on renders made before a change to the shading, and
# `facetrack train` could not make it again.
RENDERING_CODE = ("engines.training_data", "tracker.render", "tracker.face_model",
                  "tracker.sampling", "tracker.pose", "tracker.expressions", "tracker.landmarks",
                  "tracker.shading")
SHARD = 3000  # rendered faces per cache file
CHUNK = 20000  # faces whose inputs and targets `Batchable.of` makes at once
OPSET = 18
HALF_MIN_SIZE = 1024  # weights with fewer values stay float32: they cost nothing
RAYS = ("per landmark: its pixel coordinates through the inverse intrinsics ((u-cx)/fx, "
        "(v-cy)/fy), undistorted, which the graph turns, centres and scales; then the image's "
        "shading there (tracker.shading: blurred brightness, standardised per face)")
log = logging.getLogger("facetrack.train")


# The least each setting may be where it is not 1 (the counts of faces, repeats, layers' width,
# epochs, batch and threads: with none of them there is nothing to train).
SETTING_MINIMUM = {"seed": 0, "depth": 0, "weight_decay": 0.0, "projected_expression_trust": 0.0,
                   "learning_rate": 0.0}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained model."""

    seed: int = 0
    rendered: int = 12000  # faces rendered and given to MediaPipe
    projected: int = 120000  # faces projected through the embedding
    validation: int = 600  # rendered faces kept out of training, to score on
    rendered_repeats: int = 3  # rendered faces are MediaPipe's real behaviour: show them more
    # The embedding places the lips' inner contour less well than MediaPipe does (its lip gap
    # follows jawOpen with r = 0.41, MediaPipe's with r = 0.65), so the expressions of projected
    # faces count for less.
    projected_expression_trust: float = 0.3
    width: int = 512
    depth: int = 3
    epochs: int = 30
    batch: int = 256
    learning_rate: float = 1.5e-3
    weight_decay: float = 1e-4
    threads: int = 2

    def __post_init__(self) -> None:
        """Refuse an untrainable config here, before anything is rendered."""
        problem = self._problem()
        if problem:
            raise FacetrackError(problem)

    def _problem(self) -> str | None:
        """The first setting no training can run with, named, or None."""
        for field in fields(self):
            value = getattr(self, field.name)
            kinds = (int, float) if field.type == "float" else (int,)
            if isinstance(value, bool) or not isinstance(value, kinds):
                return f"'{field.name}' must be a number ({field.type}), not {value!r}"
            least = SETTING_MINIMUM.get(field.name, 1)
            if value < least:
                return f"'{field.name}' must be at least {least}, not {value!r}"
        if self.rendered <= self.validation:
            return (f"'rendered' ({self.rendered}) must exceed 'validation' "
                    f"({self.validation}): training needs rendered faces of its own")
        if self.projected_expression_trust > 1.0:  # its least, 0, is in SETTING_MINIMUM
            return "'projected_expression_trust' must lie in [0, 1]"
        if self.learning_rate <= 0.0:
            return "'learning_rate' must be above 0"
        return None

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as error:
            raise FacetrackError(f"cannot read training config {path}: {error}") from None
        if not isinstance(data, dict):
            raise FacetrackError(f"{path}: a training config is a JSON object of settings")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise FacetrackError(f"{path}: unknown training settings {sorted(unknown)}; "
                                 f"known: {sorted(known)}")
        try:
            return cls(**data)
        except FacetrackError as error:
            raise FacetrackError(f"{path}: {error}") from None


QUICK = TrainConfig(rendered=240, projected=4000, validation=40, width=128, depth=1, epochs=4,
                    batch=128, learning_rate=3e-3)


def rendered_samples(config: TrainConfig, model_path: str | None) -> FaceSamples:
    """The config's rendered faces, made in shards across `threads` processes and kept in the
    cache folder under the data version and the `rendering_digest`, so a later run (or one that
    was interrupted) renders only what is missing, and none that other code made."""
    sizes = [min(SHARD, config.rendered - first) for first in range(0, config.rendered, SHARD)]
    folder = cache_dir() / "training"
    code = rendering_digest()
    paths = [folder / f"rendered-v{DATA_VERSION}-{code}-seed{config.seed}-shard{i}-n{n}.npz"
             for i, n in enumerate(sizes)]
    missing = [(path, n, config.seed * 1000 + i, model_path)
               for i, (path, n) in enumerate(zip(paths, sizes, strict=True)) if not path.exists()]
    if missing:
        log.info("rendering %d faces for MediaPipe in %d shards", sum(m[1] for m in missing),
                 len(missing))
        with multiprocessing.get_context("spawn").Pool(
                min(config.threads, len(missing)), _exit_with_parent, (os.getpid(),)) as pool:
            for done, _ in enumerate(pool.imap_unordered(_render_shard, missing), 1):
                log.info("rendered %d of %d shards", done, len(missing))
    return FaceSamples.concatenate([FaceSamples.load(path) for path in paths])


def rendering_digest(modules: tuple[str, ...] = RENDERING_CODE) -> str:
    """First 8 hex digits of the sha256 of MODULES' source files, in order."""
    digest = hashlib.sha256()
    for name in modules:
        digest.update(Path(importlib.import_module(name).__file__).read_bytes())
    return digest.hexdigest()[:8]


def _render_shard(job: tuple[Path, int, int, str | None]) -> None:
    path, count, seed, model_path = job
    save_whole(rendered(FaceModel.load(model_path), count, seed, progress=False), path)


def save_whole(samples: FaceSamples, path: Path) -> None:
    """SAMPLES saved under another name first, then renamed: a process stopped mid-write
    leaves no cache file that a later run would take for whole. (Not in `FaceSamples.save`:
    its module is rendering code, whose digest names the cached renders.)"""
    partial = path.with_name(f"{path.stem}.partial.npz")
    samples.save(partial)
    partial.replace(path)


def _exit_with_parent(parent: int) -> None:
    """Pool initializer: a render worker whose parent was killed (so never ended the pool)
    exits within a second rather than render on for nobody and then wait forever."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


@dataclass(frozen=True)
class Batchable:
    """The network's inputs and targets of a sample set as tensors."""

    inputs: torch.Tensor
    target: dict[str, torch.Tensor]

    @classmethod
    def of(cls, samples: FaceSamples, trust: float = 1.0) -> Batchable:
        """TRUST weighs each face's expression loss. Made CHUNK faces at a time: the float64
        geometry's intermediates of all the faces at once outgrow the machine's memory from
        about 180,000 rendered faces, and each face's rows do not depend on the others'."""
        return cls.concatenate([cls._of(samples.subset(slice(first, first + CHUNK)), trust)
                                for first in range(0, len(samples), CHUNK)])

    @classmethod
    def _of(cls, samples: FaceSamples, trust: float) -> Batchable:
        """The geometry runs in float64 here, as exact as the data, and in float32 in the
        exported graph."""
        geometry = RayGeometry().double()
        frame = geometry.frame(torch.from_numpy(rays(samples.landmarks, samples.camera)))
        inputs = torch.cat([frame.inputs, torch.from_numpy(samples.shading[..., None]).to(
            frame.inputs.dtype)], dim=2)
        pose = geometry.targets(frame, torch.as_tensor(samples.rotation, dtype=torch.float64),
                                torch.as_tensor(samples.translation, dtype=torch.float64))
        pose |= {"centre": frame.centre, "scale": frame.scale}  # for the reprojection loss
        truth = {"identity": samples.identity, "expression": samples.expression,
                 "trust": np.full(len(samples), trust, np.float32)}
        return cls(inputs.float(), {k: v.float() for k, v in pose.items()}
                   | {k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in truth.items()})

    @classmethod
    def concatenate(cls, parts: list[Batchable]) -> Batchable:
        return cls(torch.cat([p.inputs for p in parts]),
                   {k: torch.cat([p.target[k] for p in parts]) for k in parts[0].target})

    def rows(self, index: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.inputs[index], {k: v[index] for k, v in self.target.items()}

    def __len__(self) -> int:
        return len(self.inputs)


def train(config: TrainConfig, out: Path, model_path: str | None = None,
          progress: bool = True) -> dict:
    """Train, export OUT (ONNX) and its manifest (OUT with .json); returns the metrics."""
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    torch.use_deterministic_algorithms(True)  # else a float's last bit differs now and then
    torch.set_num_threads(config.threads)
    model = FaceModel.load(model_path)
    embedding = LandmarkEmbedding.load(model.triangles)
    real = rendered_samples(config, model_path)
    validation = real.subset(slice(-config.validation, None))
    real = real.subset(slice(None, -config.validation))
    residuals = Residuals.measure(model, embedding, real)
    synthetic = projected(model, embedding, residuals, config.projected, config.seed + 1)
    pool = Batchable.concatenate([Batchable.of(real)] * config.rendered_repeats
                                 + [Batchable.of(synthetic, config.projected_expression_trust)])
    held = Batchable.of(validation)
    net = RegressorNet(width=config.width, depth=config.depth)
    mesh = MeshBasis(model)
    weights = LossWeights()
    optimiser = torch.optim.AdamW(net.parameters(), lr=config.learning_rate,
                                  weight_decay=config.weight_decay, foreach=True)
    steps = config.epochs * math.ceil(len(pool) / config.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, config.learning_rate,
                                                   total_steps=steps, pct_start=0.05)
    history = []
    for epoch in range(config.epochs):
        net.train()
        order = torch.randperm(len(pool))
        for first in range(0, len(pool), config.batch):
            inputs, target = pool.rows(order[first:first + config.batch])
            loss, _ = regressor_loss(_named(net, net(inputs)), target, mesh, weights)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
        scores = evaluate(net, held, validation, mesh, weights)
        history.append(scores)
        if progress:
            log.info("epoch %d/%d: %s", epoch + 1, config.epochs,
                     ", ".join(f"{k} {v:.3g}" for k, v in scores.items()))
    partial = out.with_name(f"{out.stem}.partial.onnx")
    export(net, partial)
    metrics = {"validation": history[-1],
               "validation_loss_by_epoch": [round(h["loss"], 4) for h in history],
               "train_seconds": round(time.perf_counter() - started),
               "rendered_faces": len(real), "projected_faces": len(synthetic),
               "validation_faces": len(validation)}
    write_manifest(partial, config, metrics, embedding_path=EMBEDDING_PATH)
    _replace_together({partial: out, partial.with_suffix(".json"): out.with_suffix(".json")})
    return metrics


def _replace_together(renames: dict[Path, Path]) -> None:
    """Each file renamed to its new name with Ctrl-C, SIGTERM and SIGHUP held off until all
    are: a stop mid-export leaves the old model and manifest whole, never a model beside
    another training's manifest."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, *STOP_SIGNALS})
    try:
        for source, target in renames.items():
            source.replace(target)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _named(net: RegressorNet, outputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
    return dict(zip(net.sizes, outputs, strict=True))


@torch.no_grad()
def evaluate(net: RegressorNet, held: Batchable, samples: FaceSamples, mesh: MeshBasis,
             weights: LossWeights) -> dict[str, float]:
    """Validation loss terms and what they mean: shape error (mm), rotation error (degrees)
    and translation error (% of distance) with the true focal length, the pose and expression
    from the model as it is exported (`CameraRegressor`, float32)."""
    net.eval()
    total, terms = regressor_loss(_named(net, net(held.inputs)), held.target, mesh, weights)
    model_input = torch.from_numpy(model_inputs(samples.landmarks, samples.shading,
                                                samples.camera)).float()
    rotation, translation, _, expression = (
        t.double().numpy() for t in CameraRegressor(net)(model_input))
    relative = rotation @ np.swapaxes(samples.rotation, 1, 2)
    cos = np.clip((np.trace(relative, axis1=1, axis2=2) - 1) / 2, -1, 1)
    distance = np.linalg.norm(samples.translation, axis=1)
    moved = np.linalg.norm(translation - samples.translation, axis=1) / distance
    return {"loss": float(total), **{f"{k}_loss": v for k, v in terms.items()},
            "rotation_deg_median": float(np.degrees(np.median(np.arccos(cos)))),
            "translation_percent_median": float(np.median(moved) * 100),
            "jawOpen_correlation": float(np.corrcoef(expression[:, 26],
                                                     samples.expression[:, 26])[0, 1])}


def export(net: RegressorNet, out: Path) -> None:
    """`CameraRegressor(net)` as ONNX: one file, a dynamic batch of faces, weights stored in
    half precision (`half_weights`), checked by onnx. Shape inference with data propagation
    makes the outputs' shapes static after the batch (torch's exporter leaves some of the
    geometry's symbolic): the engines size empty outputs, and the manifest, from them."""
    model = CameraRegressor(net).eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, 478, 3)
    torch.onnx.export(model, (example,), str(out), input_names=[INPUT],
                      output_names=list(OUTPUTS), opset_version=OPSET,
                      dynamic_axes={INPUT: {0: "faces"}, **{n: {0: "faces"} for n in OUTPUTS}},
                      dynamo=False)
    model = onnx.shape_inference.infer_shapes(half_weights(onnx.load(str(out))), data_prop=True)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(out))


def half_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """MODEL with its large float32 weights stored as float16 and cast back to float32 in the
    graph: half the file (the committed model stays under 5 MB) for a relative change of the
    weights under 5e-4. ONNX Runtime folds the casts when it loads the model, so inference
    still runs in float32 at the same speed."""
    graph = model.graph
    casts, kept = [], []
    for weight in graph.initializer:
        values = numpy_helper.to_array(weight)
        if values.dtype != np.float32 or values.size < HALF_MIN_SIZE:
            kept.append(weight)
            continue
        kept.append(numpy_helper.from_array(values.astype(np.float16), f"{weight.name}_half"))
        # named after the weight (net....), so TensorRT can tell the network's layers
        casts.append(onnx.helper.make_node("Cast", [f"{weight.name}_half"], [weight.name],
                                           name=f"{weight.name}_cast", to=onnx.TensorProto.FLOAT))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def model_fields(out: Path) -> dict:
    """The manifest's description of the ONNX file OUT: version (dated today), sha256, opset,
    input and outputs (name and shape after the batch axis, as the graph declares them)."""
    sha = file_sha256(out)
    graph = onnx.load(str(out)).graph
    (tensor,) = graph.input
    return {"model_version": f"{datetime.now(timezone.utc):%Y.%m.%d}-{sha[:8]}",
            "onnx_sha256": sha, "opset": OPSET,
            "input": {"name": tensor.name, "shape": [None, *_trailing_shape(tensor)],
                      "normalisation": RAYS},
            "outputs": {output.name: _trailing_shape(output) for output in graph.output}}


def _trailing_shape(tensor: onnx.ValueInfoProto) -> list[int]:
    return [dim.dim_value for dim in tensor.type.tensor_type.shape.dim[1:]]


def write_manifest(out: Path, config: TrainConfig, metrics: dict, embedding_path: Path) -> None:
    manifest = {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "data_version": DATA_VERSION,
        **model_fields(out),
        "embedding_sha256": file_sha256(embedding_path),
        "config": asdict(config), "metrics": metrics,
        "trained": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    out.with_suffix(".json").write_text(json.dumps(manifest, indent=1) + "\n")
