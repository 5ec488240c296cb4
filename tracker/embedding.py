"""Where MediaPipe's 478 landmarks sit on the ICT face: a point on the surface for each.

Each landmark is a triangle of the ICT mesh and barycentric weights in it, learned from
MediaPipe's output on renders (`tracker.embedding_fit`). Face-contour landmarks mark the
silhouette, which slides over the surface as the head turns, so every landmark has one point per
yaw bin and the point used is interpolated between the two bins around the head's yaw (inner
landmarks repeat one point in every bin).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from calibrate.files import load_versioned

FORMAT = "facetrack-landmark-embedding"
VERSION = 1
DEFAULT_PATH = Path(__file__).with_name("data") / "landmark_embedding.json"


@dataclass(frozen=True)
class LandmarkEmbedding:
    """Landmark j in yaw bin b is ``weights[j, b] @ vertices[corners[j, b]]``.

    ``corners`` index the model's vertices; ``vertex_index`` lists the vertices any landmark
    uses, so callers can evaluate the model on just those (``FaceModel.vertices`` with a region).
    """

    yaw_bins: np.ndarray  # (B,) degrees, increasing
    triangles: np.ndarray  # (478, B) into the model's triangles
    corners: np.ndarray  # (478, B, 3) vertex ids
    weights: np.ndarray  # (478, B, 3), rows sum to 1
    metrics: dict

    @classmethod
    def load(cls, triangles: np.ndarray, path: str | Path = DEFAULT_PATH) -> LandmarkEmbedding:
        """Read an embedding file; TRIANGLES are the face model's (to resolve corners)."""
        data = load_versioned(path, "landmark embedding", FORMAT, VERSION,
                              "regenerate it with python -m tracker.embedding_fit")
        tris = np.asarray(data["triangles"], np.int64)
        return cls(np.asarray(data["yaw_bins"], np.float32), tris,
                   np.asarray(triangles)[tris], np.asarray(data["weights"], np.float32),
                   data.get("metrics", {}))

    def save(self, path: str | Path, **provenance: object) -> None:
        data = {"format": FORMAT, "version": VERSION, **provenance,
                "yaw_bins": self.yaw_bins.tolist(), "metrics": self.metrics,
                "triangles": self.triangles.tolist(),
                "weights": np.round(self.weights, 5).tolist()}
        Path(path).write_text(json.dumps(data, separators=(",", ":")) + "\n")

    @cached_property
    def vertex_index(self) -> np.ndarray:
        """The vertices the landmarks are made of, sorted."""
        return np.unique(self.corners)

    @cached_property
    def _corners_in_index(self) -> np.ndarray:
        return np.searchsorted(self.vertex_index, self.corners)

    def points(self, vertices: np.ndarray, yaw_degrees: float | np.ndarray = 0.0,
               index: np.ndarray | None = None) -> np.ndarray:
        """Landmarks (..., 478, 3) on meshes (..., n, 3) seen at YAW (...).

        VERTICES are the whole mesh, or only ``vertex_index``'s vertices when INDEX is that
        array (the cheap way per frame).
        """
        if index is None:
            corners = self.corners
        elif index is self.vertex_index:  # the usual case, worked out once
            corners = self._corners_in_index
        else:
            corners = np.searchsorted(index, self.corners)
        low, high, share = self.blend(np.asarray(yaw_degrees, np.float32))
        lead = vertices.shape[:-2]
        flat = vertices.reshape(-1, *vertices.shape[-2:])
        low, high, share = (np.broadcast_to(a, lead).reshape(-1) for a in (low, high, share))
        rows = np.arange(len(flat))[:, None, None]

        def at(bins: np.ndarray) -> np.ndarray:
            """(M, 478, C) the landmarks of each mesh in its own bin."""
            return np.einsum("mjk,mjkc->mjc", self.weights[:, bins].transpose(1, 0, 2),
                             flat[rows, corners[:, bins].transpose(1, 0, 2)])

        below = at(low)
        out = below + share[:, None, None] * (at(high) - below)
        return out.astype(np.float32).reshape(*lead, *out.shape[1:])

    def blend(self, yaw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Lower and upper bin index and the share of the upper bin, for yaws clamped to the
        bins: landmarks at YAW are ``below + share * (above - below)``."""
        bins = self.yaw_bins
        yaw = np.clip(yaw, bins[0], bins[-1])
        low = np.clip(np.searchsorted(bins, yaw, side="right") - 1, 0, len(bins) - 1)
        high = np.minimum(low + 1, len(bins) - 1)
        span = np.where(high > low, bins[high] - bins[low], 1.0)
        return low, high, np.where(high > low, (yaw - bins[low]) / span, 0.0).astype(np.float32)
