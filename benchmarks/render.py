"""Cost of rasterising the ICT mesh three ways, and of each use of `tracker.render`.

    .venv/bin/python benchmarks/render.py [--repeats N] [--model PATH]

Techniques, all giving a per-pixel triangle id over a 640×480 image, the face turned 20° so
that the nose hides part of a cheek:
- numba: `tracker.render.rasterize`, a z-buffer scanning each triangle's rows (what we use);
- numpy: every triangle's bounding-box pixels at once, edge tests as array maths, the nearest
  fragment per pixel by a sort;
- opencv: painter's algorithm, triangles sorted far to near, one `cv2.fillConvexPoly` each.
Also the face model's mesh evaluation (one coefficient set, the face region and the whole
mesh). Uses: the live overlay (face and head regions, face 250 px tall: `draw_mesh`,
`draw_wireframe`, `draw_axes`) and synthetic frames (`render_face`, whole head). Also the
first call's cost in a fresh process: numba compiling, or loading its cache.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from calibrate.intrinsics import Intrinsics
from tracker.face_model import FaceModel, posed
from tracker.pose import rotation
from tracker.render import (
    Appearance,
    Renderer,
    SyntheticFace,
    draw_axes,
    project,
    random_background,
    rasterize,
)

CAMERA = Intrinsics.from_fov(640, 480)
FACE_PIXELS = 250  # the narrow face (forehead to chin) on screen
FIRST_CALL = """
import time
import numpy as np
start = time.perf_counter()
from tracker.render import rasterize
from calibrate.intrinsics import Intrinsics
imported = time.perf_counter()
rasterize(np.array([[0, 0, 50], [1, 0, 50], [0, 1, 50.0]]), Intrinsics.from_fov(64, 48),
          np.array([[0, 2, 1]]))
print(f"{(imported - start) * 1e3:.0f} {(time.perf_counter() - imported) * 1e3:.0f}")
"""


def numpy_raster(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Triangle id per pixel (-1: none), front faces only, all triangles as arrays."""
    points = project(vertices, CAMERA)
    corners = points[triangles]  # (T, 3, 2)
    a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1])
    front = np.flatnonzero(area < 0)
    low = np.maximum(np.ceil(corners[front].min(axis=1)), 0).astype(np.int64)
    high = np.minimum(np.floor(corners[front].max(axis=1)),
                      [CAMERA.width - 1, CAMERA.height - 1]).astype(np.int64)
    size = np.maximum(high - low + 1, 0)
    counts = size[:, 0] * size[:, 1]
    owner = np.repeat(np.arange(len(front)), counts)
    local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    x = low[owner, 0] + local % size[owner, 0]
    y = low[owner, 1] + local // size[owner, 0]
    tri = front[owner]
    pa, pb, pc = a[tri], b[tri], c[tri]
    wa = ((pb[:, 0] - x) * (pc[:, 1] - y) - (pc[:, 0] - x) * (pb[:, 1] - y)) / area[tri]
    wb = ((pc[:, 0] - x) * (pa[:, 1] - y) - (pa[:, 0] - x) * (pc[:, 1] - y)) / area[tri]
    wc = 1 - wa - wb
    inside = (wa >= -1e-6) & (wb >= -1e-6) & (wc >= -1e-6)
    inverse_z = 1 / vertices[triangles[tri], 2]
    nearness = (np.stack([wa, wb, wc], axis=1) * inverse_z).sum(axis=1)[inside]
    pixel = (y * CAMERA.width + x)[inside]
    order = np.lexsort((-nearness, pixel))
    first = order[np.r_[True, pixel[order][1:] != pixel[order][:-1]]]
    ids = np.full(CAMERA.height * CAMERA.width, -1, np.int32)
    ids[pixel[first]] = tri[inside][first]
    return ids.reshape(CAMERA.height, CAMERA.width)


def opencv_raster(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Triangle id per pixel (-1: none), front faces painted far to near."""
    points = np.round(project(vertices, CAMERA) * 16).astype(np.int32)  # 4 fractional bits
    corners = points[triangles]
    a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1])
    front = np.flatnonzero(area < 0)
    far_first = front[np.argsort(-vertices[triangles[front], 2].mean(axis=1))]
    ids = np.full((CAMERA.height, CAMERA.width), -1, np.int32)
    for t in far_first:
        cv2.fillConvexPoly(ids, corners[t], int(t), cv2.LINE_8, 4)
    return ids


def timed(function: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median and p95 milliseconds of REPEATS calls, after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    ms = np.array(times) * 1e3
    return float(np.median(ms)), float(np.percentile(ms, 95))


def first_call() -> dict[str, str]:
    """Import and first-call milliseconds of the rasteriser in fresh processes: with an empty
    numba cache (compiling), then with the cache that run left."""
    results = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for name in ("compile (empty cache)", "cached"):
            output = subprocess.run([sys.executable, "-c", FIRST_CALL], env=env, check=True,
                                    capture_output=True, text=True).stdout.split()
            results[name] = f"import {output[0]} ms, first rasterize {output[1]} ms"
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--model", type=Path, help="model file (default: the installed one)")
    args = parser.parse_args()
    for name, result in first_call().items():
        print(f"numba first call, {name}: {result}")

    model = FaceModel.load(args.model)
    face_height = np.ptp(model.vertices(region="narrow_face")[:, 1])
    pose = rotation(20, 5, 0), np.array([0.0, 0.0, CAMERA.fy * face_height / FACE_PIXELS])
    frame = np.full((CAMERA.height, CAMERA.width, 3), 90, np.uint8)
    rows = []
    for region in ("face", "head", "full"):
        renderer = Renderer(model, region)
        vertices = posed(renderer.vertices(), *pose)
        triangles = renderer.triangles
        techniques = {
            "numba": lambda v=vertices, t=triangles: rasterize(v, CAMERA, t).triangle,
            "numpy": lambda v=vertices, t=triangles: numpy_raster(v, t),
            "opencv": lambda v=vertices, t=triangles: opencv_raster(v, t),
        }
        reference = techniques["numba"]()
        for technique, function in techniques.items():
            repeats = args.repeats if technique == "numba" else max(args.repeats // 5, 3)
            ids = function()
            drawn = (ids >= 0) | (reference >= 0)
            same = f"{100 * (ids == reference)[drawn].mean():.1f}% same ids"
            rows.append((f"rasterize {region} ({len(triangles)} triangles)",
                         f"{technique} ({same})", *timed(function, repeats)))
        if region == "full":
            continue
        uses = {
            "draw_mesh": lambda r=renderer, v=vertices: r.draw_mesh(frame.copy(), v, CAMERA),
            "draw_wireframe": lambda r=renderer, v=vertices: r.draw_wireframe(frame.copy(), v,
                                                                               CAMERA),
        }
        for use, function in uses.items():
            rows.append((f"overlay {region}", use, *timed(function, args.repeats)))
    rows.append(("overlay", "draw_axes", *timed(lambda: draw_axes(frame.copy(), *pose, CAMERA),
                                                 args.repeats)))

    rng = np.random.default_rng(0)
    identity, expression = rng.standard_normal(100), rng.uniform(0, 1, 53)
    for region in ("face", None):
        rows.append(("face model, one coefficient set", f"vertices(region={region!r})", *timed(
            lambda r=region: model.vertices(identity, expression, region=r), args.repeats)))
    synthetic = SyntheticFace(model)
    appearance = Appearance.random(rng)
    background = random_background(rng, CAMERA.width, CAMERA.height)
    identity = rng.standard_normal(model.identity_count) * 0.8
    expression = np.zeros(model.expression_count)
    rows.append(("synthetic frame (whole head)", "render_face", *timed(
        lambda: synthetic.render(identity, expression, *pose, CAMERA, appearance, background),
        args.repeats)))
    rows.append(("synthetic frame", "random_background", *timed(
        lambda: random_background(rng, CAMERA.width, CAMERA.height), args.repeats)))

    print(f"640×480, face {FACE_PIXELS} px tall at {pose[1][2]:.0f} cm, 20° yaw, "
          f"{os.cpu_count()} cores, one thread")
    print("| what | technique / call | median ms | p95 ms |\n|---|---|---:|---:|")
    for what, how, median, p95 in rows:
        print(f"| {what} | {how} | {median:.2f} | {p95:.2f} |")


if __name__ == "__main__":
    main()
