"""The rasteriser against cases with known answers, and its two uses: the overlay drawings and
synthetic frames that MediaPipe takes for faces."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from calibrate.intrinsics import Intrinsics
from tracker.expressions import ICT_EXPRESSION_NAMES
from tracker.face_model import FaceModel, posed
from tracker.landmarks import FaceMesh
from tracker.pose import rotation
from tracker.render import (
    Appearance,
    Renderer,
    SyntheticFace,
    draw_axes,
    project,
    random_background,
    rasterize,
    render_face,
)

CAMERA = Intrinsics(500.0, 500.0, 320.0, 240.0, 640, 480)
FRONTAL = rotation(0)
NOSE_TIP = 30  # of the 68 landmarks
RIGHT_EYE = list(range(36, 42))


@pytest.fixture(scope="module")
def model(installed_model: Path) -> FaceModel:
    return FaceModel.load(installed_model)


@pytest.fixture(scope="module")
def face(model: FaceModel) -> Renderer:
    return Renderer(model, "face")


def sphere(radius: float, centre: np.ndarray, steps: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """A UV sphere whose triangles wind counter-clockwise seen from outside."""
    theta = np.linspace(0, np.pi, steps + 1)
    phi = np.linspace(0, 2 * np.pi, 2 * steps, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    points = np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], axis=-1)
    vertices = points.reshape(-1, 3) * radius + centre
    index = np.arange(vertices.shape[0]).reshape(t.shape)
    a, b = index[:-1], np.roll(index, -1, axis=1)[:-1]
    c, d = index[1:], np.roll(index, -1, axis=1)[1:]
    triangles = np.concatenate([np.stack([a, c, b], -1).reshape(-1, 3),
                                np.stack([b, c, d], -1).reshape(-1, 3)])
    return vertices, triangles


def test_square_covers_its_pixels() -> None:
    # 10 cm at 50 cm with f = 500: 100 px, from pixel centre 270.5 to 370.5 (so 271..370).
    vertices = np.array([[-5, -5, 50], [5, -5, 50], [5, 5, 50], [-5, 5, 50]], float)
    vertices[:, :2] += [0.05, 0.05]
    raster = rasterize(vertices, CAMERA, np.array([[0, 3, 2], [0, 2, 1]]))
    rows, columns = np.nonzero(raster.covered)
    assert (rows.min(), rows.max(), columns.min(), columns.max()) == (191, 290, 271, 370)
    assert raster.covered.sum() == 100 * 100
    assert raster.box == (271, 191, 371, 291)
    assert np.allclose(raster.depth[raster.covered], 50.0)
    assert np.isinf(raster.depth[~raster.covered]).all()


def test_sphere_area_and_depth() -> None:
    radius, centre = 10.0, np.array([1.0, -2.0, 60.0])
    vertices, triangles = sphere(radius, centre)
    raster = rasterize(vertices, CAMERA, triangles)
    # Seen from the camera, a sphere is a disc of angular radius asin(r / distance).
    disc_radius = CAMERA.fx * np.tan(np.arcsin(radius / np.linalg.norm(centre)))
    assert raster.covered.sum() == pytest.approx(np.pi * disc_radius ** 2, rel=0.02)
    x, y = np.round(project(centre, CAMERA)).astype(int)
    assert raster.depth[y, x] == pytest.approx(centre[2] - radius, abs=0.05)
    # Without culling the far half is rasterised too, and must lose everywhere.
    assert np.array_equal(rasterize(vertices, CAMERA, triangles, cull=False).depth, raster.depth)


def test_face_covers_the_projected_vertices(face: Renderer) -> None:
    vertices = posed(face.vertices(), FRONTAL, [0.0, 0.0, 60.0])
    raster = face.rasterize(vertices, CAMERA)
    points = project(vertices, CAMERA)
    x0, y0, x1, y1 = raster.box
    assert np.allclose([x0, y0], np.ceil(points.min(axis=0)), atol=1)
    assert np.allclose([x1 - 1, y1 - 1], np.floor(points.max(axis=0)), atol=1)
    # A 20 cm by 29 cm face region at 60 cm, f = 500: about 170 x 240 px, mostly covered.
    assert 0.6 < raster.covered.sum() / ((x1 - x0) * (y1 - y0)) < 0.9


def test_nearest_surface_wins(model: FaceModel, face: Renderer) -> None:
    # Turned 40°, the nose hides part of the far cheek: every pixel must show the nearest of
    # all the triangles (front or back facing) that cover it.
    vertices = posed(face.vertices(), rotation(40), [0.0, 0.0, 50.0])
    raster = rasterize(vertices, CAMERA, face.triangles, cull=False)
    nose = np.round(project(vertices[model.landmarks68[NOSE_TIP]], CAMERA)).astype(int)
    rng = np.random.default_rng(0)
    pixels = np.argwhere(raster.covered)[rng.choice(raster.covered.sum(), 150)][:, ::-1]
    occluded = 0
    for x, y in [tuple(nose), *pixels]:
        depths = depths_at(vertices, face.triangles, x, y)
        assert raster.depth[y, x] == pytest.approx(depths.min(), abs=1e-3)
        occluded += len(depths) > 1
    assert occluded > 30
    seen = face.triangles[raster.triangle[nose[1], nose[0]]]
    assert np.linalg.norm(vertices[seen] - vertices[model.landmarks68[NOSE_TIP]],
                          axis=1).min() < 0.5


def depths_at(vertices: np.ndarray, triangles: np.ndarray, x: float, y: float) -> np.ndarray:
    """Depth of every triangle covering pixel centre (x, y), by brute force."""
    points = project(vertices, CAMERA)[triangles]  # (T, 3, 2)
    a, b, c = points[:, 0], points[:, 1], points[:, 2]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1])
    wa = ((b[:, 0] - x) * (c[:, 1] - y) - (c[:, 0] - x) * (b[:, 1] - y)) / area
    wb = ((c[:, 0] - x) * (a[:, 1] - y) - (a[:, 0] - x) * (c[:, 1] - y)) / area
    weights = np.stack([wa, wb, 1 - wa - wb], axis=1)
    inside = (weights >= -1e-6).all(axis=1)
    inverse_z = (weights[inside] / vertices[triangles[inside], 2]).sum(axis=1)
    return 1 / inverse_z


def test_barycentrics_give_the_surface_point_under_the_pixel(face: Renderer) -> None:
    vertices = posed(face.vertices(), rotation(25, 10, 5), [1.0, -2.0, 45.0])
    raster = face.rasterize(vertices, CAMERA)
    rows, columns = np.nonzero(raster.covered)
    weights = raster.barycentric[rows, columns]
    assert np.allclose(weights.sum(axis=1), 1, atol=1e-5)
    assert weights.min() > -1e-4
    corners = vertices[face.triangles[raster.triangle[rows, columns]]]  # (N, 3, 3)
    surface = (weights[..., None] * corners).sum(axis=1)
    assert np.abs(project(surface, CAMERA) - np.stack([columns, rows], axis=1)).max() < 1e-3
    assert np.allclose(surface[:, 2], raster.depth[rows, columns], atol=1e-4)
    # Interpolating the projected corners instead is off by the perspective, a tiny amount.
    flat = (weights[..., None] * project(corners, CAMERA)).sum(axis=1)
    assert np.abs(flat - np.stack([columns, rows], axis=1)).max() < 0.05


def test_reused_raster_matches_a_fresh_one(face: Renderer) -> None:
    near = posed(face.vertices(), rotation(-30), [-5.0, 0.0, 35.0])
    far = posed(face.vertices(), rotation(10), [4.0, 2.0, 90.0])
    reused = rasterize(far, CAMERA, face.triangles, out=rasterize(near, CAMERA, face.triangles))
    fresh = rasterize(far, CAMERA, face.triangles)
    for name in ("depth", "triangle", "barycentric", "box"):
        assert np.array_equal(getattr(reused, name), getattr(fresh, name)), name


def test_overlay_drawings(face: Renderer) -> None:
    vertices = posed(face.vertices(), rotation(20), [0.0, 0.0, 50.0])
    frame = np.full((CAMERA.height, CAMERA.width, 3), 40, np.uint8)
    raster = face.rasterize(vertices, CAMERA)
    meshed = face.draw_mesh(frame.copy(), vertices, CAMERA)
    changed = (meshed != frame).any(axis=2)
    assert np.array_equal(changed, raster.covered)
    wired = face.draw_wireframe(frame.copy(), vertices, CAMERA)
    lines = (wired != frame).any(axis=2)
    assert 0.1 < lines.sum() / raster.covered.sum() < 0.9
    near_mesh = cv2.dilate(raster.covered.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert not (lines & ~near_mesh).any()
    axes = draw_axes(frame.copy(), rotation(0), [0.0, 0.0, 50.0], CAMERA, length_cm=5.0)
    # The x axis runs right from the image centre (model +x is camera +x when frontal).
    assert tuple(axes[240, 320 + 40]) == (255, 60, 60)
    with pytest.raises(ValueError, match="expected a 640x480 RGB uint8 image"):
        face.draw_mesh(frame[:100], vertices, CAMERA)
    with pytest.raises(ValueError, match="unknown render region"):
        Renderer(face.model, "torso")


def test_mediapipe_finds_a_rendered_face(model: FaceModel) -> None:
    rng = np.random.default_rng(0)
    camera = Intrinsics.from_fov(640, 480)
    translation = np.array([0.0, 0.0, 55.0])
    image, raster = render_face(model, None, None, FRONTAL, translation, camera,
                                Appearance.random(rng), random_background(rng, 640, 480))
    assert image.shape == (480, 640, 3) and image.dtype == np.uint8
    with FaceMesh(static_image_mode=True) as mesh:
        faces = mesh.process(image)
    assert len(faces) == 1 and faces[0].landmarks.shape == (478, 3)
    landmarks = posed(model.vertices(region="landmarks68"), FRONTAL, translation)
    x, y = project(landmarks[NOSE_TIP], camera)
    assert np.hypot(*faces[0].landmarks[1, :2] - (x, y)) < 20
    assert raster.covered[round(y), round(x)]


def test_sheen_blotches_and_lashes_change_the_face_where_they_sit(model: FaceModel) -> None:
    """A sheen brightens the nose tip, which faces a frontal light and the camera; a dark blotch
    on the nose tip darkens it by its share; lashes darken a closed eye's lid; the cheeks, far
    from all three, stay as they were."""
    translation = np.array([0.0, 0.0, 55.0])
    matte = Appearance((200.0, 160.0, 140.0), (60.0, 45.0, 40.0), (180.0, 110.0, 100.0),
                       (90.0, 70.0, 50.0), (0.0, 0.0, -1.0), 0.4)
    nose = int(model.landmarks68[NOSE_TIP])
    looks = {"matte": matte, "sheen": replace(matte, sheen=0.3, shininess=30.0),
             "blotch": replace(matte, blotches=((nose, 0.8, -0.4),)),
             "lashes": replace(matte, lashes=0.6)}
    closed = np.zeros(len(ICT_EXPRESSION_NAMES), np.float32)
    closed[[ICT_EXPRESSION_NAMES.index(f"eyeBlink_{side}") for side in "LR"]] = 1.0
    synthetic = SyntheticFace(model)
    background = np.full((480, 640, 3), 90, np.uint8)
    images = {name: synthetic.render(None, closed, FRONTAL, translation, CAMERA, look,
                                     background)[0].astype(float)
              for name, look in looks.items()}
    points = project(posed(model.vertices(None, closed, region="landmarks68"), FRONTAL,
                           translation),
                     CAMERA)
    (nose_x, nose_y), (cheek_x, cheek_y) = np.round(points[[NOSE_TIP, 2]]).astype(int)
    nose_of = {name: image[nose_y, nose_x].mean() for name, image in images.items()}
    assert nose_of["sheen"] > nose_of["matte"] + 25  # up to 0.3 of white, 76 grey levels
    assert 0.5 < nose_of["blotch"] / nose_of["matte"] < 0.75
    (x0, y0), (x1, y1) = np.round(points[RIGHT_EYE].min(0)).astype(int), np.round(
        points[RIGHT_EYE].max(0)).astype(int)
    lid = {name: image[y0 - 2:y1 + 3, x0:x1 + 1].mean() for name, image in images.items()}
    assert lid["lashes"] < lid["matte"] - 10
    for image in images.values():
        np.testing.assert_allclose(image[cheek_y, cheek_x], images["matte"][cheek_y, cheek_x],
                                   atol=2)
