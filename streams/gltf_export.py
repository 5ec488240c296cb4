"""A recording as a glTF binary: the ICT head with its 53 expressions as morph targets and the
clip as an animation of their weights and of the head node's pose (docs/exports.md).

glTF world: the tracking camera's, turned to glTF's camera axes (x right, y up, the camera
looking down -z), in metres: ``p_world = C @ (R @ p_model + t) / 100`` with C = diag(1, -1, -1).
The mesh is in ICT model space scaled to metres (+y up, face toward +z, as glTF wants), so the
head node's rotation is C @ R: the identity for a face looking into the camera. A camera node at
the origin, with the recording's field of view, sees what the real camera saw.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pygltflib as gl
from scipy.spatial.transform import Rotation

from streams.errors import SinkError
from streams.recording import output_file
from tracker.face_model import FaceModel

REGION = "head"  # face, head and neck: what a viewer expects of a head, without eyes and teeth
_CAMERA_TO_GLTF = np.diag([1.0, -1.0, -1.0])


class _Blob:
    """The binary chunk: arrays appended 4-byte aligned, each as a buffer view and accessor."""

    def __init__(self, gltf: gl.GLTF2) -> None:
        self.gltf = gltf
        self.data = bytearray()

    def add(self, array: np.ndarray, kind: str, target: int | None = None,
            bounds: bool = False) -> int:
        """Append ARRAY (float32 or uint32) as an accessor of type KIND; its index."""
        self.data += b"\0" * (-len(self.data) % 4)
        self.gltf.bufferViews.append(gl.BufferView(buffer=0, byteOffset=len(self.data),
                                                   byteLength=array.nbytes, target=target))
        self.data += array.tobytes()
        flat = array.reshape(len(array), -1)
        self.gltf.accessors.append(gl.Accessor(
            bufferView=len(self.gltf.bufferViews) - 1, count=len(array), type=kind,
            componentType=gl.UNSIGNED_INT if array.dtype == np.uint32 else gl.FLOAT,
            min=flat.min(axis=0).tolist() if bounds else None,
            max=flat.max(axis=0).tolist() if bounds else None))
        return len(self.gltf.accessors) - 1


def head_mesh(model: FaceModel, identity: np.ndarray) -> tuple[np.ndarray, ...]:
    """(positions m, uvs, triangles, expression deltas m) of the REGION with UVs: a vertex on
    a texture seam is split into one per UV, as glTF keeps one UV per vertex. V is flipped:
    OBJ's origin is the bottom left, glTF's the top left."""
    in_region = np.zeros(model.vertex_count, dtype=bool)
    in_region[model.regions[REGION]] = True
    keep = in_region[model.triangles].all(axis=1)
    uv_count = len(model.uvs)
    corners = model.triangles[keep].astype(np.int64) * uv_count + model.triangle_uvs[keep]
    pairs, triangles = np.unique(corners, return_inverse=True)
    vertex, uv = np.divmod(pairs, uv_count)
    positions = model.vertices(identity)[vertex] / 100.0
    uvs = model.uvs[uv] * [1.0, -1.0] + [0.0, 1.0]
    deltas = model.expression_deltas[:, vertex] / 100.0
    return (positions.astype(np.float32), uvs.astype(np.float32),
            triangles.reshape(-1, 3).astype(np.uint32), deltas.astype(np.float32))


def _continuous(quaternions: np.ndarray) -> np.ndarray:
    """Quaternions with signs chosen so each is within 90° of the previous: q and -q are the
    same turn, but LINEAR interpolation between opposite signs spins the long way round."""
    flips = np.sign(np.einsum("ij,ij->i", quaternions[1:], quaternions[:-1]))
    signs = np.concatenate([[1.0], np.cumprod(np.where(flips == 0, 1.0, flips))])
    return quaternions * signs[:, None]


def build_gltf(header: dict, frames: list[tuple[dict, dict]], model: FaceModel) -> gl.GLTF2:
    """The glTF document (binary chunk set) of the frames (record, face)."""
    faces = [face for _, face in frames]
    identity = np.mean([face["identity"] for face in faces], axis=0)
    positions, uvs, triangles, deltas = head_mesh(model, identity)
    gltf = gl.GLTF2(asset=gl.Asset(generator="facetrack export"), scene=0)
    blob = _Blob(gltf)
    targets = [gl.Attributes(POSITION=blob.add(delta, gl.VEC3, gl.ARRAY_BUFFER, bounds=True))
               for delta in deltas]
    names = list(model.expression_names)
    gltf.meshes.append(gl.Mesh(name="ict_head", weights=[0.0] * len(names),
                               extras={"targetNames": names}, primitives=[gl.Primitive(
        attributes=gl.Attributes(
            POSITION=blob.add(positions, gl.VEC3, gl.ARRAY_BUFFER, bounds=True),
            TEXCOORD_0=blob.add(uvs, gl.VEC2, gl.ARRAY_BUFFER)),
        indices=blob.add(triangles.reshape(-1), gl.SCALAR, gl.ELEMENT_ARRAY_BUFFER),
        targets=targets)]))

    rotations = np.array([face["rotation"] for face in faces], dtype=float)
    quaternions = _continuous(Rotation.from_matrix(_CAMERA_TO_GLTF @ rotations).as_quat())
    translations = np.array([face["translation"] for face in faces]) @ _CAMERA_TO_GLTF / 100.0
    weights = np.array([[face["expression"][name] for name in names] for face in faces])
    gltf.nodes.append(gl.Node(name="head", mesh=0, rotation=quaternions[0].tolist(),
                              translation=translations[0].tolist()))
    gltf.scenes.append(gl.Scene(nodes=[0]))
    _add_camera(gltf, header)

    times = np.array([record["time"] for record, _ in frames], dtype=np.float32)
    inputs = blob.add(times - times[0], gl.SCALAR, bounds=True)
    outputs = [(blob.add(values.astype(np.float32), kind), path) for values, kind, path in (
        (weights.reshape(-1), gl.SCALAR, "weights"), (quaternions, gl.VEC4, "rotation"),
        (translations, gl.VEC3, "translation"))]
    gltf.animations.append(gl.Animation(
        name="facetrack",
        samplers=[gl.AnimationSampler(input=inputs, output=output, interpolation=gl.ANIM_LINEAR)
                  for output, _ in outputs],
        channels=[gl.AnimationChannel(sampler=index, target=gl.AnimationChannelTarget(
            node=0, path=path)) for index, (_, path) in enumerate(outputs)]))
    gltf.buffers.append(gl.Buffer(byteLength=len(blob.data)))
    gltf.set_binary_blob(bytes(blob.data))
    return gltf


def _add_camera(gltf: gl.GLTF2, header: dict) -> None:
    """The tracking camera at the origin, when the recording knows its intrinsics."""
    intrinsics = header.get("intrinsics")
    if not intrinsics:
        return
    gltf.cameras.append(gl.Camera(type=gl.PERSPECTIVE, name="camera", perspective=gl.Perspective(
        yfov=2.0 * math.atan(intrinsics["height"] / (2.0 * intrinsics["fy"])),
        aspectRatio=intrinsics["width"] / intrinsics["height"], znear=0.01, zfar=100.0)))
    gltf.nodes.append(gl.Node(name="camera", camera=0))
    gltf.scenes[0].nodes.append(len(gltf.nodes) - 1)


def write_glb(path: str | Path, header: dict, frames: list[tuple[dict, dict]],
              model: str | Path | None = None) -> None:
    """Write the frames (record, face) as a .glb, with the model MODEL (default: installed)."""
    gltf = build_gltf(header, frames, FaceModel.load(model))
    try:
        with output_file(path, binary=True) as file:
            for chunk in gltf.save_to_bytes():
                view = memoryview(chunk)
                while view:  # a pipe whose reader left takes part of a write, then refuses
                    view = view[file.write(view):]
    except OSError as error:
        raise SinkError(f"cannot write {path}: {error.strerror}") from None
