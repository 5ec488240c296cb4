"""Wavefront OBJ reading, just enough for the ICT model: vertices fast, polygons triangulated.

Parsing is the slow part of installing (158 files of 26,719 vertices), so vertex lines are
collected with one regular expression and converted by numpy in one call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

_VERTEX = re.compile(rb"^v[ \t]+([^\n]*)", re.MULTILINE)
_UV = re.compile(rb"^vt[ \t]+([^\n]*)", re.MULTILINE)
_FACE = re.compile(rb"^f[ \t]+([^\n]*)", re.MULTILINE)


class ObjError(ValueError):
    """The OBJ text cannot be read as this reader expects."""


@dataclass(frozen=True)
class Mesh:
    """A mesh with its polygons fan-triangulated in file order.

    A polygon of k corners becomes k - 2 consecutive triangles (a b c d -> a b c, a c d), so
    `polygon_sizes` is enough to rebuild the original quads and triangles.
    """

    vertices: np.ndarray  # (N, 3) float64
    triangles: np.ndarray  # (T, 3) int32 vertex indices, 0-based
    triangle_uvs: np.ndarray  # (T, 3) int32 indices into uvs
    uvs: np.ndarray  # (U, 2) float32
    polygon_sizes: np.ndarray  # (P,) uint8 corner count of each original polygon


def read_vertices(text: bytes) -> np.ndarray:
    """The (N, 3) float64 positions of the `v` lines (extra values such as w or colour ignored)."""
    return _numbers(_VERTEX.findall(text), "v", 3)


def read_mesh(text: bytes) -> Mesh:
    """Vertices and triangulated `f` lines; every face corner must have a `vt`."""
    vertices = read_vertices(text)
    uvs = _numbers(_UV.findall(text), "vt", 2)
    polygons = [line.split() for line in _FACE.findall(text)]
    if not polygons:
        raise ObjError("no f lines")
    sizes = np.array([len(corners) for corners in polygons])
    if sizes.min() < 3:
        raise ObjError("a face has fewer than 3 corners")
    try:
        pairs = [corner.split(b"/")[:2] for corners in polygons for corner in corners]
        vertex = np.array([int(pair[0]) for pair in pairs]) - 1
        uv = np.array([int(pair[1]) for pair in pairs]) - 1
    except (ValueError, IndexError) as error:
        raise ObjError("f lines must be v/vt or v/vt/vn with positive indices") from error
    if vertex.min() < 0 or vertex.max() >= len(vertices) or uv.min() < 0 or uv.max() >= len(uvs):
        raise ObjError("face indices out of range")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    fan = np.array([(start, start + i, start + i + 1)
                    for start, size in zip(starts.tolist(), sizes.tolist(), strict=True)
                    for i in range(1, size - 1)])
    return Mesh(
        vertices=vertices,
        triangles=vertex[fan].astype(np.int32),
        triangle_uvs=uv[fan].astype(np.int32),
        uvs=uvs.astype(np.float32),
        polygon_sizes=sizes.astype(np.uint8),
    )


def _numbers(lines: list[bytes], kind: str, width: int) -> np.ndarray:
    """Lines of equally many numbers as an (N, width) array, keeping the first `width` columns."""
    if not lines:
        raise ObjError(f"no {kind} lines")
    try:
        values = np.array(b" ".join(lines).split(), dtype=np.float64)
    except ValueError as error:
        raise ObjError(f"{kind} lines hold something other than numbers") from error
    per_line, remainder = divmod(len(values), len(lines))
    if remainder or per_line < width:
        raise ObjError(f"{kind} lines must each hold at least {width} numbers")
    return values.reshape(len(lines), per_line)[:, :width]
