"""The image's shading at the landmarks, read where MediaPipe puts them on renders and a photo."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from calibrate.intrinsics import Intrinsics
from tracker.face_model import FaceModel
from tracker.landmarks import FaceMesh
from tracker.pose import FRONTAL
from tracker.render import Appearance, render_face
from tracker.shading import BLUR, FACE_SIZE, shading

IRISES = np.arange(468, 478)
CHEEKS = [50, 101, 118, 280, 330, 347]


@pytest.fixture(scope="module")
def model(installed_model: Path) -> FaceModel:
    return FaceModel.load(installed_model)


def landmarks_of(image: np.ndarray) -> np.ndarray:
    with FaceMesh(static_image_mode=True) as mesh:
        [face] = mesh.process(image)
    return face.landmarks


def lit_face(model: FaceModel, light_x: float) -> np.ndarray:
    """The mean face, frontal, lit from the image's right (LIGHT_X > 0) or left, on grey."""
    light = np.array([light_x, 0.0, -0.6])
    look = Appearance((200.0, 160.0, 140.0), (60.0, 45.0, 40.0), (180.0, 110.0, 100.0),
                      (90.0, 70.0, 50.0), tuple(light / np.linalg.norm(light)), 0.3)
    image, _ = render_face(model, None, None, FRONTAL, [0.0, 0.0, 55.0],
                           Intrinsics.from_fov(640, 480), look,
                           np.full((480, 640, 3), 90, np.uint8))
    return image


@pytest.mark.parametrize("light_x", [0.8, -0.8])
def test_the_lit_side_of_a_face_reads_brighter(model: FaceModel, light_x: float) -> None:
    image = lit_face(model, light_x)
    points = landmarks_of(image)
    values = shading(image, points)
    right = points[:, 0] > np.median(points[:, 0])
    assert np.sign(values[right].mean() - values[~right].mean()) == np.sign(light_x)
    assert abs(values.mean()) < 1e-5 and abs(values.std() - 1) < 1e-4


def test_light_level_and_gain_change_nothing(model: FaceModel) -> None:
    image = lit_face(model, 0.5)
    points = landmarks_of(image)
    dimmer = np.clip(image * 0.6 + 20, 0, 255).astype(np.uint8)
    assert np.abs(shading(dimmer, points) - shading(image, points)).max() < 0.05


def whole_image_blur(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """What `shading` reads, computed the slow way: the whole image blurred by a fortieth of the
    face's size at full resolution, sampled at the landmarks, standardised."""
    spread = np.sqrt(np.square(points[:, :2] - points[:, :2].mean(0)).sum(1).mean())
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    whole = cv2.GaussianBlur(gray, (0, 0), spread * BLUR / FACE_SIZE)
    x, y = points[:, 0].astype(np.float32), points[:, 1].astype(np.float32)
    expected = cv2.remap(whole, x[None], y[None], cv2.INTER_LINEAR)[0]
    return (expected - expected.mean()) / expected.std()


@pytest.fixture(scope="module")
def photo(footage_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    image = cv2.cvtColor(cv2.imread(str(footage_dir / "single_face.jpg")), cv2.COLOR_BGR2RGB)
    return image, landmarks_of(image)


@pytest.mark.parametrize("zoom", [0.5, 1.0, 4.0])
def test_a_photo_reads_as_a_blur_of_the_whole_image(photo: tuple, zoom: float) -> None:
    """The face's crop, scaled to one size and blurred there, reads what blurring the whole
    image at its own resolution would, for a face of 33, 65 or 260 pixels; and a real face's
    irises are darker than its cheeks."""
    image, points = photo
    image = cv2.resize(image, None, fx=zoom, fy=zoom,
                       interpolation=cv2.INTER_AREA if zoom < 1 else cv2.INTER_CUBIC)
    points = points * zoom
    values = shading(image, points)
    difference = np.abs(values - whole_image_blur(image, points))
    assert difference.mean() < 0.05 and difference.max() < 0.3, difference
    assert values[IRISES].mean() < values[CHEEKS].mean() - 0.5


def test_a_face_reads_the_same_at_any_resolution(photo: tuple) -> None:
    """The photo three times larger (cubic: a little smoother than a real camera's) reads
    within a tenth of a standard deviation on average (0.06 here)."""
    image, points = photo
    large = cv2.resize(image, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    difference = np.abs(shading(large, points * 3) - shading(image, points))
    assert difference.mean() < 0.1 and difference.max() < 0.5, difference


def test_landmarks_off_the_image_read_what_is_there() -> None:
    image = np.full((100, 120, 3), 128, np.uint8)
    image[:, 60:] = 200
    points = np.array([[30.0, 50.0], [90.0, 50.0], [-500.0, -500.0], [90.0, 400.0]])
    values = shading(image, points)
    assert np.isfinite(values).all() and values[1] > values[0]
    assert not shading(image, np.full((478, 2), -900.0)).any()
