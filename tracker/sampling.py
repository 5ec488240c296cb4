"""Random faces as cameras see them: identity, expression, head pose and camera, drawn the way
real footage varies. The landmark embedding is learned on renders of such faces and the regressor
is trained on them, so both see the same spread.

Expressions are sparse and correlated like real ones: a few muscle groups at a time, the left
and right halves of a pair mostly together but sometimes apart, and a few shapes that move
together (a smile squints the cheeks, an open jaw lowers the lip).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calibrate.intrinsics import Intrinsics
from tracker.expressions import ICT_EXPRESSION_NAMES
from tracker.pose import rotation

WIDTH, HEIGHT = 640, 480
FOV_DEGREES = (45.0, 75.0)
FACE_PIXELS = (110.0, 280.0)  # forehead-to-chin height on screen
FACE_HEIGHT_CM = 19.0  # the mean face's narrow-face height, near enough for sizing
ACTIVE_GROUPS = 4.0  # mean number of expression groups moving at once
# Groups that move most in real footage (talking, blinking, smiling, brows) are drawn more often.
COMMON = {"jawOpen": 5.0, "eyeBlink": 4.0, "mouthSmile": 3.0, "browInnerUp": 3.0,
          "browDown": 2.0, "mouthPucker": 2.0, "mouthFunnel": 2.0, "eyeSquint": 1.5,
          "browOuterUp": 1.5, "mouthLowerDown": 1.5, "mouthClose": 1.5}
TOGETHER = 0.8  # share of pairs whose left and right move together
# Shapes that follow another: (leader, follower, share of the leader's value).
COUPLED = (("mouthSmile", "cheekSquint", 0.5), ("jawOpen", "mouthLowerDown", 0.3),
           ("eyeBlink", "eyeSquint", 0.15), ("browInnerUp", "browOuterUp", 0.4))


def _groups() -> list[list[int]]:
    """Indices of the expression groups: L/R pairs and single shapes."""
    groups: dict[str, list[int]] = {}
    for index, name in enumerate(ICT_EXPRESSION_NAMES):
        groups.setdefault(name.removesuffix("_L").removesuffix("_R"), []).append(index)
    return list(groups.values())


GROUPS = _groups()
_GROUP_OF = {ICT_EXPRESSION_NAMES[g[0]].removesuffix("_L").removesuffix("_R"): g for g in GROUPS}
_GROUP_ODDS = np.array([COMMON.get(name, 1.0) for name in _GROUP_OF])
_GROUP_ODDS /= _GROUP_ODDS.sum()


@dataclass(frozen=True)
class PoseRange:
    """How far heads turn: yaw uniform in ±yaw, pitch and roll normal, clipped."""

    yaw: float = 60.0
    pitch_std: float = 12.0
    pitch: float = 35.0
    roll_std: float = 8.0
    roll: float = 30.0


DEFAULT_POSES = PoseRange()


def random_expressions(rng: np.random.Generator, count: int) -> np.ndarray:
    """(COUNT, 53) expressions in [0, 1]: sparse, correlated, mostly symmetric."""
    out = np.zeros((count, len(ICT_EXPRESSION_NAMES)), np.float32)
    for row in out:
        active = rng.choice(len(GROUPS), size=min(rng.poisson(ACTIVE_GROUPS), len(GROUPS)),
                            replace=False, p=_GROUP_ODDS)
        for g in active:
            indices = GROUPS[g]
            value = rng.uniform(0.0, 1.0) ** 0.7
            if len(indices) == 1 or rng.random() < TOGETHER:
                row[indices] = np.clip(value + rng.normal(0, 0.05, len(indices)), 0, 1)
            else:
                row[indices] = value * rng.uniform(0, 1, len(indices)) ** rng.uniform(0.5, 2)
        for leader, follower, share in COUPLED:
            lead, follow = _GROUP_OF[leader], _GROUP_OF[follower]
            row[follow] = np.maximum(row[follow], share * row[lead] * rng.uniform(0.5, 1.5))
    return np.clip(out, 0.0, 1.0)


def random_rotations(rng: np.random.Generator, count: int,
                     poses: PoseRange = DEFAULT_POSES) -> tuple[np.ndarray, np.ndarray]:
    """(rotations (COUNT, 3, 3), yaw-pitch-roll degrees (COUNT, 3))."""
    yaw = rng.uniform(-poses.yaw, poses.yaw, count)
    pitch = np.clip(rng.normal(0, poses.pitch_std, count), -poses.pitch, poses.pitch)
    roll = np.clip(rng.normal(0, poses.roll_std, count), -poses.roll, poses.roll)
    angles = np.stack([yaw, pitch, roll], axis=1)
    return np.array([rotation(*a) for a in angles]), angles


def random_camera(rng: np.random.Generator, width: int = WIDTH,
                  height: int = HEIGHT) -> Intrinsics:
    """A square-pixel camera with a random horizontal field of view, centred."""
    camera = Intrinsics.from_fov(width, height, rng.uniform(*FOV_DEGREES))
    return Intrinsics(camera.fx, camera.fy, camera.cx, camera.cy, width, height)


def random_translation(rng: np.random.Generator, camera: Intrinsics) -> np.ndarray:
    """(3,) cm: the head at a distance giving a random on-screen size, somewhere the whole face
    stays in the picture."""
    pixels = rng.uniform(*FACE_PIXELS)
    distance = camera.fy * FACE_HEIGHT_CM / pixels
    room_x = max(camera.width / 2 - 0.7 * pixels, 0.0)
    room_y = max(camera.height / 2 - 0.7 * pixels, 0.0)
    u = camera.cx + rng.uniform(-room_x, room_x)
    v = camera.cy + rng.uniform(-room_y, room_y)
    return np.array([(u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy, 1.0]) * distance


def random_identities(rng: np.random.Generator, count: int, size: int = 100,
                      scale: float = 1.0) -> np.ndarray:
    """(COUNT, SIZE) identity coefficients: the PCA's standard normal, times SCALE."""
    return (rng.standard_normal((count, size)) * scale).astype(np.float32)
