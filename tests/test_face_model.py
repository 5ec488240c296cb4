"""FaceModel against the ICT OBJs themselves, and the ARKit-52 view of expressions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tracker.expressions import ARKIT_NAMES, ICT_EXPRESSION_NAMES, to_arkit
from tracker.face_model import FaceModel, posed
from tracker.obj_reader import read_vertices

# ict-facekit/NOTES.md
LANDMARKS68_START = [1225, 1888, 1052, 367, 1719, 1722, 2199, 1447, 966, 3661]
REGION_SIZES = {"face": 9409, "narrow_face": 6706, "head": 11248, "eyeball_left": 1570,
                "eyeball_right": 1570, "rigid": 1487, "fitting": 7801, "landmarks68": 68}


@pytest.fixture(scope="module")
def model(installed_model: Path) -> FaceModel:
    return FaceModel.load(installed_model)


def obj(ict_facekit: Path, name: str) -> np.ndarray:
    return read_vertices((ict_facekit / "FaceXModel" / name).read_bytes())


def one_hot(count: int, index: int) -> np.ndarray:
    values = np.zeros(count)
    values[index] = 1
    return values


def test_contents(model: FaceModel) -> None:
    assert (model.vertex_count, model.identity_count, model.expression_count) == (26719, 100, 53)
    assert model.expression_names == ICT_EXPRESSION_NAMES
    assert model.triangles.shape == (52220, 3) and model.triangles.max() == 26718
    assert model.triangle_uvs.max() == len(model.uvs) - 1
    assert list(model.landmarks68[:10]) == LANDMARKS68_START
    assert {name: len(index) for name, index in model.regions.items()} == REGION_SIZES


def test_neutral_equals_obj(model: FaceModel, ict_facekit: Path) -> None:
    expected = obj(ict_facekit, "generic_neutral_mesh.obj")
    np.testing.assert_allclose(model.vertices(), expected, atol=1e-5)
    np.testing.assert_allclose(model.neutral, expected, atol=1e-5)


@pytest.mark.parametrize("index", [0, 3, 99])
def test_identity_coefficient_reproduces_obj(model: FaceModel, ict_facekit: Path,
                                             index: int) -> None:
    vertices = model.vertices(identity=one_hot(100, index))
    np.testing.assert_allclose(vertices, obj(ict_facekit, f"identity{index:03d}.obj"), atol=1e-5)


@pytest.mark.parametrize("name", ["jawOpen", "eyeBlink_L", "mouthSmile_R", "noseSneer_R"])
def test_expression_coefficient_reproduces_obj(model: FaceModel, ict_facekit: Path,
                                               name: str) -> None:
    vertices = model.vertices(expression=one_hot(53, ICT_EXPRESSION_NAMES.index(name)))
    np.testing.assert_allclose(vertices, obj(ict_facekit, f"{name}.obj"), atol=1e-5)


def test_left_shapes_move_the_subjects_left(model: FaceModel) -> None:
    """`_L` moves vertices at +x (NOTES.md), which is what makes the ARKit rename right."""
    moved = np.linalg.norm(model.expression_deltas, axis=-1) > 0.05
    for side, sign in (("_L", 1), ("_R", -1)):
        for index, name in enumerate(model.expression_names):
            if name.endswith(side):
                assert sign * model.neutral[moved[index], 0].mean() > 0, name


def test_batch_equals_items(model: FaceModel) -> None:
    rng = np.random.default_rng(0)
    identity = rng.standard_normal((4, 100))
    expression = rng.uniform(0, 1, (4, 53))
    batch = model.vertices(identity, expression)
    assert batch.shape == (4, 26719, 3) and batch.dtype == np.float32
    for item in range(4):
        np.testing.assert_allclose(batch[item], model.vertices(identity[item], expression[item]),
                                   atol=1e-4)
    shared = model.vertices(identity[0], expression)
    np.testing.assert_allclose(shared[2], model.vertices(identity[0], expression[2]), atol=1e-4)
    assert model.vertices(identity.reshape(2, 2, 100), expression[0]).shape == (2, 2, 26719, 3)


@pytest.mark.parametrize("region", sorted(REGION_SIZES))
def test_region_equals_full_mesh_sliced(model: FaceModel, region: str) -> None:
    rng = np.random.default_rng(1)
    identity, expression = rng.standard_normal((3, 100)), rng.uniform(0, 1, (3, 53))
    full = model.vertices(identity, expression)
    part = model.vertices(identity, expression, region=region)
    np.testing.assert_allclose(part, full[:, model.regions[region]], atol=1e-4)


def test_region_triangles_index_the_region(model: FaceModel) -> None:
    face = model.regions["face"]
    triangles = model.region_triangles("face")
    assert 0 < len(triangles) < len(model.triangles)
    assert triangles.max() < len(face)
    full = {tuple(t) for t in model.triangles.tolist()}
    assert all(tuple(t) in full for t in face[triangles].tolist())


def test_misuse_is_a_value_error(model: FaceModel) -> None:
    with pytest.raises(ValueError, match="unknown region 'nose'"):
        model.vertices(region="nose")
    with pytest.raises(ValueError, match=r"expression needs \(\.\.\., 53\)"):
        model.vertices(expression=np.zeros(52))


def test_posed(model: FaceModel) -> None:
    vertices = model.vertices(region="landmarks68")
    frontal = np.diag([1.0, -1.0, -1.0])
    camera = posed(vertices, frontal, [0.0, 0.0, 60.0])
    np.testing.assert_allclose(camera, vertices * [1, -1, -1] + [0, 0, 60], atol=1e-5)
    turned = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]) @ frontal
    rotations, translations = np.stack([frontal, turned]), np.array([[0, 0, 60], [5, 0, 80.0]])
    both = posed(np.stack([vertices, vertices]), rotations, translations)
    np.testing.assert_allclose(both[1], (turned @ vertices.T).T + translations[1], atol=1e-5)
    np.testing.assert_allclose(both[0], camera, atol=1e-5)


def test_arkit_names() -> None:
    assert len(ARKIT_NAMES) == len(set(ARKIT_NAMES)) == 52
    assert ARKIT_NAMES[:2] == ("eyeBlinkLeft", "eyeLookDownLeft") and ARKIT_NAMES[-1] == "tongueOut"


def test_arkit_renames_sides(model: FaceModel) -> None:
    values = np.linspace(0.0, 1.0, 53)
    arkit = dict(zip(ARKIT_NAMES, to_arkit(values), strict=True))
    ict = dict(zip(ICT_EXPRESSION_NAMES, values, strict=True))
    assert arkit["eyeBlinkLeft"] == pytest.approx(ict["eyeBlink_L"])
    assert arkit["mouthSmileRight"] == pytest.approx(ict["mouthSmile_R"])
    assert arkit["jawOpen"] == pytest.approx(ict["jawOpen"])
    for name in ("browInnerUp", "cheekPuff"):
        assert arkit[name] == pytest.approx((ict[name + "_L"] + ict[name + "_R"]) / 2)
    assert arkit["tongueOut"] == 0
    assert sorted(arkit.values()) != sorted(ict.values())


def test_arkit_keeps_batch_axes() -> None:
    values = np.random.default_rng(3).uniform(0, 1, (2, 5, 53))
    arkit = to_arkit(values)
    assert arkit.shape == (2, 5, 52)
    np.testing.assert_allclose(arkit[1, 4], to_arkit(values[1, 4]), atol=1e-6)
    with pytest.raises(ValueError, match="53"):
        to_arkit(np.zeros(52))
