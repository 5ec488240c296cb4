"""The ICT face model in memory: meshes from identity and expression coefficients.

    mesh = neutral + identity @ identity_deltas + expression @ expression_deltas

(ict-facekit/NOTES.md), in model space: centimetres, +y up, face toward +z. The deltas stay
plain float32 arrays so that a torch version for training can wrap the same ones later.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from tracker import model_store

# Vertex ranges of the ICT mesh, first and last inclusive (ict-facekit/NOTES.md).
REGION_RANGES: dict[str, tuple[int, int]] = {
    "face": (0, 9408),
    "narrow_face": (0, 6705),
    "head": (0, 11247),  # face, head and neck
    "eyeball_left": (21451, 23020),
    "eyeball_right": (23021, 24590),
}
# Regions listed in vertex_indices.json, by the key that lists them.
REGION_LISTS: dict[str, str] = {
    "rigid": "idx_to_rigid_verts",  # barely move with expression: for head pose
    "fitting": "idx_to_fitting_verts",
    "landmarks68": "idx_to_landmark_verts",  # Multi-PIE 68-point order
}


class FaceModel:
    """Evaluates ICT meshes for batches of coefficient sets, whole or for one region."""

    def __init__(self, arrays: Mapping[str, np.ndarray]) -> None:
        """From the arrays of a runtime model file (`model_store.read`); see `load`."""
        self.neutral: np.ndarray = arrays["neutral"]  # (V, 3)
        self.identity_deltas: np.ndarray = arrays["identity_deltas"]  # (100, V, 3)
        self.expression_deltas: np.ndarray = arrays["expression_deltas"]  # (53, V, 3)
        self.expression_names: tuple[str, ...] = tuple(str(n) for n in arrays["expression_names"])
        self.triangles: np.ndarray = arrays["triangles"]  # (T, 3) into the V vertices
        self.triangle_uvs: np.ndarray = arrays["triangle_uvs"]  # (T, 3) into uvs
        self.uvs: np.ndarray = arrays["uvs"]  # (U, 2)
        ranges = {name: slice(first, last + 1) for name, (first, last) in REGION_RANGES.items()}
        self.regions: dict[str, np.ndarray] = {
            name: np.arange(r.start, r.stop) for name, r in ranges.items()
        } | {name: arrays[key] for name, key in REGION_LISTS.items()}
        # Ranges stay slices for evaluation: their deltas are views, never copied.
        self._slices: dict[str | None, slice] = {None: slice(None), **ranges}
        self._bases: dict[str | None, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    @classmethod
    def load(cls, model: str | Path | None = None) -> FaceModel:
        """The installed model, or the file MODEL ($FACETRACK_MODEL when None)."""
        return cls(model_store.read(model_store.locate(model)))

    @property
    def vertex_count(self) -> int:
        return len(self.neutral)

    @property
    def identity_count(self) -> int:
        return len(self.identity_deltas)

    @property
    def expression_count(self) -> int:
        return len(self.expression_deltas)

    @property
    def landmarks68(self) -> np.ndarray:
        """The vertices of the 68 Multi-PIE landmarks, in their usual order."""
        return self.regions["landmarks68"]

    def vertices(self, identity: ArrayLike | None = None, expression: ArrayLike | None = None,
                 region: str | None = None) -> np.ndarray:
        """Mesh vertices (..., n, 3), float32, for identity (..., 100) and expression (..., 53)
        coefficients broadcast over their leading axes; None means zeros (mean face, neutral
        expression) and costs nothing. With REGION only its n vertices are computed, in
        `regions[REGION]` order, which is what makes the face region cheap per frame."""
        neutral, identity_basis, expression_basis = self._basis(region)
        terms = [_weighted(values, basis, what) for values, basis, what in (
            (identity, identity_basis, "identity"), (expression, expression_basis, "expression"),
        ) if values is not None]
        flat = sum(terms, start=neutral) if terms else neutral.copy()
        return flat.reshape(*flat.shape[:-1], -1, 3)

    def add_region(self, name: str, index: np.ndarray) -> None:
        """Name a vertex subset so `vertices(region=NAME)` evaluates only it (the landmark
        embedding's vertices, say: a few hundred instead of 26,719 per face)."""
        self.regions[name] = np.asarray(index)
        self._bases.pop(name, None)

    def region_triangles(self, region: str) -> np.ndarray:
        """The triangles with all three corners in REGION, as indices into its vertices (what
        `vertices(region=REGION)` returns): to draw a region alone."""
        index = self._region(region)
        local = np.full(self.vertex_count, -1, dtype=np.int32)
        local[index] = np.arange(len(index), dtype=np.int32)
        corners = local[self.triangles]
        return corners[(corners >= 0).all(axis=1)]

    def _basis(self, region: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """REGION's neutral (n*3,) and identity and expression deltas (k, n*3), made once and
        kept, so that each evaluation reads only that region's deltas."""
        if region not in self._bases:
            index = self._slices[region] if region in self._slices else self._region(region)
            self._bases[region] = (
                self.neutral[index].reshape(-1),
                self.identity_deltas[:, index].reshape(self.identity_count, -1),
                self.expression_deltas[:, index].reshape(self.expression_count, -1),
            )
        return self._bases[region]

    def _region(self, region: str) -> np.ndarray:
        try:
            return self.regions[region]
        except KeyError:
            known = ", ".join(self.regions)
            raise ValueError(f"unknown region {region!r}; known: {known}") from None


def posed(vertices: np.ndarray, rotation: ArrayLike, translation: ArrayLike) -> np.ndarray:
    """Model-space points (..., n, 3) in camera space, p_camera = R @ p + t (DESIGN.md), with a
    rotation (..., 3, 3) and translation (..., 3) in cm per leading index."""
    rotation = np.asarray(rotation)
    translation = np.asarray(translation)
    return vertices @ np.swapaxes(rotation, -1, -2) + translation[..., None, :]


def _weighted(coefficients: ArrayLike, basis: np.ndarray, what: str) -> np.ndarray:
    """COEFFICIENTS (..., k) times BASIS (k, m): the (..., m) offsets they make."""
    values = np.asarray(coefficients, dtype=np.float32)
    if values.shape[-1:] != (len(basis),):
        raise ValueError(f"{what} needs (..., {len(basis)}) coefficients, got shape {values.shape}")
    return (values.reshape(-1, len(basis)) @ basis).reshape(*values.shape[:-1], -1)
