"""Learns the landmark embedding (`tracker.embedding`) from MediaPipe's output on renders.

    .venv/bin/python -m tracker.embedding_fit [--renders 1500] [--held-out 300] [--seed 0]

For each render of a random face we know every vertex's projection and whether it is visible,
and MediaPipe tells where it puts its 478 landmarks. Each landmark becomes the surface point
whose projections best match MediaPipe's across the renders: first the best vertex (an exhaustive
search, as a few matrix products), then the best barycentric point in the triangles around it.
MediaPipe's whole mesh also sits a few pixels and a percent or two off per image; that offset is
noise, not geometry, so each render's 2D similarity is fitted and removed between rounds.
Face-contour landmarks follow the silhouette, and MediaPipe's guesses for the far side of a
turned face slide too, so every landmark gets a point per yaw bin (on held-out renders that
beats one point per inner landmark by about 1% of the inter-ocular distance).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from calibrate.intrinsics import Intrinsics
from tracker import render
from tracker.embedding import DEFAULT_PATH, LandmarkEmbedding
from tracker.face_model import FaceModel, posed
from tracker.landmarks import CONTOUR, FaceMesh
from tracker.render import Appearance, SyntheticFace, random_background
from tracker.sampling import (
    PoseRange,
    random_camera,
    random_expressions,
    random_identities,
    random_rotations,
    random_translation,
)

YAW_BINS = np.arange(-50.0, 51.0, 12.5, dtype=np.float32)
# Candidates: the face (0-9408) and both eyeballs (the iris landmarks sit on them).
CANDIDATE_RANGES = ((0, 9408), (21451, 24590))
EYEBALLS = CANDIDATE_RANGES[1]
# MediaPipe's iris landmarks, the only ones on the eyeballs. An eyelid landmark fitted to
# whatever surface point best matches it over the renders lands on the eyeball where the lid
# meets it in the (mostly open-eyed) renders, and then stays put when the lid closes: 50
# landmarks did so, and the embedding saw no blink at the lids' middles.
IRIS = np.arange(468, 478)
VISIBLE_CM = 0.3  # a vertex this close behind the z-buffer's surface still counts as seen
NEUTRAL_SHARE = 0.25  # renders with a neutral expression
POSES = PoseRange(yaw=55.0)
ALL = np.arange(478)
YAW_BANDS = ((0, 15), (15, 30), (30, 45), (45, 60))  # |yaw| degrees, for reporting
IRIS_CENTRES = (468, 473)


@dataclass(frozen=True)
class Samples:
    """Renders as the solver sees them (N renders, C candidate vertices, 478 landmarks)."""

    projected: np.ndarray  # (N, C, 2) candidate vertices in pixels
    visible: np.ndarray  # (N, C) bool
    landmarks: np.ndarray  # (N, 478, 2) MediaPipe's, in pixels
    yaw: np.ndarray  # (N,) degrees

    def __len__(self) -> int:
        return len(self.yaw)


def fit(samples: Samples, triangles: np.ndarray, rounds: int = 3,
        yaw_bins: np.ndarray = YAW_BINS, binned: np.ndarray = ALL,
        min_visible: float = 0.6,
        eyeball: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(triangles (478, B), weights (478, B, 3)) of the best surface points.

    TRIANGLES (T, 3) index the candidate vertices of SAMPLES. Landmarks BINNED get a point per
    yaw bin, the others one point for all yaws. A candidate must be visible in at least
    MIN_VISIBLE of the (weighted) renders to be chosen. EYEBALL (C,) marks the candidates on
    the eyeballs, where the IRIS landmarks must sit and no other may (default: no such rule).
    """
    allowed = np.ones((samples.landmarks.shape[1], samples.projected.shape[1]), bool)
    if eyeball is not None:
        allowed[:] = ~eyeball
        allowed[IRIS] = eyeball
    count = samples.landmarks.shape[1]
    rings = _vertex_rings(triangles, samples.projected.shape[1])
    target = samples.landmarks.copy()
    bins = len(yaw_bins)
    chosen_tri = np.zeros((count, bins), np.int64)
    chosen_w = np.zeros((count, bins, 3), np.float32)
    kernels = _bin_kernels(samples.yaw, yaw_bins)
    for _ in range(rounds):
        everyone = np.ones(len(samples), np.float32)
        inner = _best_points(samples, target, everyone, np.arange(count), triangles, rings,
                             min_visible, allowed)
        chosen_tri[:] = inner[0][:, None]
        chosen_w[:] = inner[1][:, None]
        for b in range(bins if len(binned) else 0):  # no landmark held per yaw bin: no bins
            tri, w = _best_points(samples, target, kernels[b], binned, triangles, rings,
                                  min_visible, allowed)
            chosen_tri[binned, b], chosen_w[binned, b] = tri, w
        predicted = project(samples, triangles, chosen_tri, chosen_w, yaw_bins)
        target = remove_similarity(samples.landmarks, predicted)
    return chosen_tri, chosen_w


def project(samples: Samples, triangles: np.ndarray, tri: np.ndarray, weights: np.ndarray,
            yaw_bins: np.ndarray = YAW_BINS) -> np.ndarray:
    """(N, 478, 2) where an embedding puts the landmarks in each render, blending yaw bins
    as `LandmarkEmbedding.points` does (in the image: exact for the weights, close enough for
    the perspective over one triangle)."""
    embedding = LandmarkEmbedding(yaw_bins, tri, triangles[tri], weights, {})
    return embedding.points(samples.projected, samples.yaw)[..., :2]


def errors(samples: Samples, predicted: np.ndarray) -> dict[str, float]:
    """Mean landmark error in pixels and in % of the inter-ocular distance (iris centres),
    raw and after each render's similarity offset is removed, for contour and inner points, and
    by yaw (the iris distance shrinks as the head turns, so turned faces score worse in %)."""
    iod = np.linalg.norm(samples.landmarks[:, IRIS_CENTRES[0]]
                         - samples.landmarks[:, IRIS_CENTRES[1]], axis=-1)
    raw = np.linalg.norm(predicted - samples.landmarks, axis=-1)
    aligned = np.linalg.norm(predicted - remove_similarity(samples.landmarks, predicted), axis=-1)
    inner = np.setdiff1d(ALL, CONTOUR)
    scale = (aligned / iod[:, None]).mean() * 100
    turn = np.abs(samples.yaw)
    band = {f"{lo}-{hi}": float((raw[m] / iod[m, None]).mean() * 100)
            for lo, hi in YAW_BANDS if (m := (turn >= lo) & (turn < hi)).any()}
    return {
        "renders": len(samples),
        "mean_px": float(raw.mean()),
        "mean_iod_percent": float((raw / iod[:, None]).mean() * 100),
        "contour_iod_percent": float((raw[:, CONTOUR] / iod[:, None]).mean() * 100),
        "inner_iod_percent": float((raw[:, inner] / iod[:, None]).mean() * 100),
        "similarity_removed_px": float(aligned.mean()),
        "similarity_removed_iod_percent": float(scale),
        "iod_percent_by_abs_yaw": band,
    }


def _bin_kernels(yaw: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """(B, N) triangular weights of each render for each yaw bin (one bin spacing wide)."""
    spacing = float(np.diff(bins).mean()) if len(bins) > 1 else 1.0
    clamped = np.clip(yaw, bins[0], bins[-1])
    return np.clip(1.0 - np.abs(clamped[None] - bins[:, None]) / spacing, 0.0, None)


def _best_points(samples: Samples, target: np.ndarray, weight: np.ndarray, rows: np.ndarray,
                 triangles: np.ndarray, rings: list[np.ndarray], min_visible: float,
                 allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best triangle and weights for landmarks ROWS under render weights WEIGHT (N,), each
    landmark on the candidates ALLOWED (478, C) it."""
    vertex = _best_vertices(samples, target[:, rows], weight, min_visible, allowed[rows])
    tris = np.zeros(len(rows), np.int64)
    weights = np.zeros((len(rows), 3), np.float32)
    for i, (row, v) in enumerate(zip(rows, vertex, strict=True)):
        tris[i], weights[i] = _best_in_ring(samples, target[:, row], weight, triangles, rings[v])
    return tris, weights


def _best_vertices(samples: Samples, target: np.ndarray, weight: np.ndarray,
                   min_visible: float, allowed: np.ndarray) -> np.ndarray:
    """For each landmark of TARGET (N, L, 2), the candidate vertex ALLOWED (L, C) with the least
    weighted mean squared distance over the renders where it is visible, as three matrix
    products."""
    # Centre each render on its landmarks: small numbers keep float32 sums exact enough.
    centre = target.mean(axis=1, keepdims=True)
    p = samples.projected - centre  # (N, C, 2)
    q = target - centre  # (N, L, 2)
    a = weight[:, None] * samples.visible  # (N, C)
    seen = a.sum(axis=0)
    sq_p = (a * (p ** 2).sum(-1)).sum(axis=0)  # (C,)
    cross = np.einsum("nld,ncd->lc", q, a[..., None] * p, optimize=True)  # (L, C)
    sq_q = (q ** 2).sum(-1).T @ a  # (L, C)
    cost = (sq_p[None] - 2 * cross + sq_q) / np.maximum(seen, 1e-9)[None]
    cost[:, seen < min_visible * weight.sum()] = np.inf
    cost[~allowed] = np.inf
    return cost.argmin(axis=1)


def _best_in_ring(samples: Samples, target: np.ndarray, weight: np.ndarray,
                  triangles: np.ndarray, ring: np.ndarray) -> tuple[int, np.ndarray]:
    """The triangle of RING and barycentric weights whose projections best match TARGET (N, 2):
    a weighted 2-parameter least squares per triangle, clamped into the triangle."""
    best = (np.inf, int(ring[0]), np.array([1.0, 0.0, 0.0], np.float32))
    for t in ring:
        corners = triangles[t]
        q = samples.projected[:, corners]  # (N, 3, 2)
        a = weight * samples.visible[:, corners].all(axis=1)
        if a.sum() <= 0:
            continue
        basis = np.stack([q[:, 1] - q[:, 0], q[:, 2] - q[:, 0]], axis=-1)  # (N, 2, 2)
        residual = target - q[:, 0]
        normal = np.einsum("n,ndi,ndj->ij", a, basis, basis)
        rhs = np.einsum("n,ndi,nd->i", a, basis, residual)
        try:
            ab = np.linalg.solve(normal, rhs)
        except np.linalg.LinAlgError:
            continue
        ab = np.clip(ab, 0.0, 1.0)
        if ab.sum() > 1.0:
            ab = ab / ab.sum()
        miss = residual - basis @ ab
        cost = float((a * (miss ** 2).sum(-1)).sum() / a.sum())
        if cost < best[0]:
            best = (cost, int(t), np.array([1.0 - ab.sum(), ab[0], ab[1]], np.float32))
    return best[1], best[2]


def _vertex_rings(triangles: np.ndarray, vertex_count: int) -> list[np.ndarray]:
    """The triangles around each vertex."""
    order = np.argsort(triangles.ravel(), kind="stable")
    owners = order // 3
    starts = np.searchsorted(triangles.ravel()[order], np.arange(vertex_count + 1))
    return [owners[starts[v]:starts[v + 1]] for v in range(vertex_count)]


class Similarity(NamedTuple):
    """Each image's best 2D similarity from predicted points to landmarks, in complex numbers
    (one product per point): ``landmark ≈ scale * (predicted - centre) + centre + shift``.
    All (N, 1); ``size`` is the predicted points' RMS distance from their centre."""

    centre: np.ndarray
    shift: np.ndarray
    scale: np.ndarray
    size: np.ndarray


def complex_points(points: np.ndarray) -> np.ndarray:
    """(..., 2) points as complex numbers x + iy."""
    return points[..., 0] + 1j * points[..., 1]


def similarity(landmarks: np.ndarray, predicted: np.ndarray) -> Similarity:
    """The least-squares similarity per image from PREDICTED to LANDMARKS (N, L, 2)."""
    zl, zp = complex_points(landmarks), complex_points(predicted)
    centre = zp.mean(axis=1, keepdims=True)
    a, b = zp - centre, zl - zl.mean(axis=1, keepdims=True)
    scale = (np.conj(a) * b).sum(axis=1, keepdims=True) / (np.abs(a) ** 2).sum(axis=1,
                                                                                keepdims=True)
    return Similarity(centre, zl.mean(axis=1, keepdims=True) - centre, scale,
                      np.sqrt((np.abs(a) ** 2).mean(axis=1, keepdims=True)))


def remove_similarity(landmarks: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """LANDMARKS (N, L, 2) moved by the inverse of each render's best 2D similarity from
    PREDICTED to them, renormalised so the similarities average to none (no drift)."""
    fit = similarity(landmarks, predicted)
    s = fit.scale / np.exp(np.log(fit.scale).mean())  # the average belongs to the embedding
    shift = fit.shift - (fit.shift / fit.size).mean() * fit.size  # likewise, in face sizes
    back = (complex_points(landmarks) - fit.centre - shift) / s + fit.centre
    return np.stack([back.real, back.imag], axis=-1).astype(np.float32)


def candidates(model: FaceModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(candidate vertex ids (C,), their triangles in candidate indices (T, 3), those
    triangles' ids in the model (T,))."""
    ids = np.concatenate([np.arange(a, b + 1) for a, b in CANDIDATE_RANGES])
    local = np.full(model.vertex_count, -1, np.int64)
    local[ids] = np.arange(len(ids))
    keep = (local[model.triangles] >= 0).all(axis=1)
    return ids, local[model.triangles[keep]], np.nonzero(keep)[0]


class Render(NamedTuple):
    """A random face, rendered, and MediaPipe's landmarks on it."""

    identity: np.ndarray  # (100,)
    expression: np.ndarray  # (53,)
    rotation: np.ndarray  # (3, 3)
    yaw: float  # degrees
    translation: np.ndarray  # (3,) cm
    camera: Intrinsics
    depth: np.ndarray  # the z-buffer
    landmarks: np.ndarray  # (478, 2) pixels


def random_renders(model: FaceModel, count: int, seed: int, poses: PoseRange = POSES,
                   neutral_share: float = NEUTRAL_SHARE) -> Iterator[Render]:
    """COUNT renders of random faces (the share NEUTRAL_SHARE of them with a neutral
    expression) and MediaPipe's landmarks on each, in static mode: every render is a first
    sight. Renders where MediaPipe finds no face are left out."""
    rng = np.random.default_rng(seed)
    face = SyntheticFace(model)
    with FaceMesh(1, static_image_mode=True) as mesh:
        for _ in tqdm(range(count), desc="renders", unit="render"):
            identity = random_identities(rng, 1, model.identity_count, 0.8)[0]
            expression = (np.zeros(model.expression_count, np.float32)
                          if rng.random() < neutral_share else random_expressions(rng, 1)[0])
            rotations, angles = random_rotations(rng, 1, poses)
            camera = random_camera(rng)
            translation = random_translation(rng, camera)
            image, raster = face.render(identity, expression, rotations[0], translation, camera,
                                        Appearance.random(rng),
                                        random_background(rng, camera.width, camera.height))
            found = mesh.process(image)
            if found:
                yield Render(identity, expression, rotations[0], float(angles[0, 0]),
                             translation, camera, raster.depth, found[0].landmarks[:, :2])


def render_samples(model: FaceModel, count: int, seed: int) -> Samples:
    """`random_renders` as the solver sees them."""
    ids, _, _ = candidates(model)
    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray, float]] = []
    for face in random_renders(model, count, seed):
        points = posed(model.vertices(face.identity, face.expression)[ids], face.rotation,
                       face.translation)
        pixels = render.project(points, face.camera).astype(np.float32)
        rows.append((pixels, _visible(points, pixels, face.depth), face.landmarks, face.yaw))
    projected, visible, landmarks, yaw = zip(*rows, strict=True)
    return Samples(np.stack(projected), np.stack(visible), np.stack(landmarks),
                   np.array(yaw, np.float32))


def _visible(points: np.ndarray, pixels: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Which points the z-buffer DEPTH shows: inside the image and not behind the surface."""
    height, width = depth.shape
    column, row = np.round(pixels[:, 0]).astype(int), np.round(pixels[:, 1]).astype(int)
    inside = (column >= 0) & (column < width) & (row >= 0) & (row < height)
    seen = np.zeros(len(points), bool)
    seen[inside] = points[inside, 2] <= depth[row[inside], column[inside]] + VISIBLE_CM
    return seen


def _subset(samples: Samples, rows: slice) -> Samples:
    return Samples(samples.projected[rows], samples.visible[rows], samples.landmarks[rows],
                   samples.yaw[rows])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Learn the landmark embedding from renders.")
    parser.add_argument("--renders", type=int, default=1500, help="renders in all")
    parser.add_argument("--held-out", type=int, default=300, help="renders kept for scoring")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", help="face model file (default: the installed one)")
    parser.add_argument("--out", default=str(DEFAULT_PATH), help="embedding file to write")
    args = parser.parse_args(argv)
    model = FaceModel.load(args.model)
    started = time.perf_counter()
    samples = render_samples(model, args.renders, args.seed)
    train, held_out = (_subset(samples, slice(None, -args.held_out)),
                       _subset(samples, slice(-args.held_out, None)))
    ids, local_triangles, model_triangles = candidates(model)
    tri, weights = fit(train, local_triangles, eyeball=(ids >= EYEBALLS[0]) & (ids <= EYEBALLS[1]))
    metrics = {"train": errors(train, project(train, local_triangles, tri, weights)),
               "held_out": errors(held_out, project(held_out, local_triangles, tri, weights)),
               "renders_without_face": args.renders - len(samples)}
    embedding = LandmarkEmbedding(YAW_BINS, model_triangles[tri], model.triangles[
        model_triangles[tri]], weights, metrics)
    given = sys.argv[1:] if argv is None else argv
    embedding.save(args.out, seed=args.seed, renders=args.renders,
                   command=" ".join(["python -m tracker.embedding_fit", *given]))
    print(f"wrote {args.out} in {time.perf_counter() - started:.0f} s")
    for name, values in metrics.items():
        print(name, values)


if __name__ == "__main__":
    main()
