"""Head pose conventions (DESIGN.md): ``p_camera = R @ p_model + t``, and a frontal face looking
at the camera has ``R = diag(1, -1, -1)`` (model +y up and +z forward; camera y down, z away).

Angles are the head's own, applied in model space before the flip to the camera:
``R = FRONTAL @ Ry(yaw) @ Rx(pitch) @ Rz(roll)``, in degrees. Positive yaw turns the face toward
the subject's left (model +x, the image's right), positive pitch looks down, and roll turns the
head about the direction it faces.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

FRONTAL = np.diag([1.0, -1.0, -1.0])


def rotation(yaw: float, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """The camera-from-model rotation of a head turned by YAW, PITCH, ROLL degrees."""
    head = Rotation.from_euler("YXZ", [yaw, pitch, roll], degrees=True).as_matrix()
    return FRONTAL @ head


def angles(rotation_matrix: np.ndarray) -> np.ndarray:
    """(..., 3) yaw, pitch, roll in degrees of camera-from-model rotations (..., 3, 3)."""
    head = FRONTAL @ np.asarray(rotation_matrix)  # FRONTAL is its own inverse
    flat = head.reshape(-1, 3, 3)
    result = Rotation.from_matrix(flat).as_euler("YXZ", degrees=True)
    return result.reshape(*np.shape(rotation_matrix)[:-2], 3)


def yaw(rotation_matrix: np.ndarray) -> float:
    """The yaw of `angles` (degrees) of one rotation, without scipy: the per-frame path needs
    only this angle, and ``FRONTAL @ R = Ry(yaw) @ Rx(pitch) @ Rz(roll)`` gives it from one
    column as ``atan2(sin(yaw) cos(pitch), cos(yaw) cos(pitch))``."""
    head = FRONTAL @ np.asarray(rotation_matrix)
    return float(np.degrees(np.arctan2(head[0, 2], head[2, 2])))
