"""The regressor's camera geometry, in torch and written once: the export puts it inside the ONNX
graph (`engines.network.CameraRegressor`), and training makes the network's inputs and targets
with the same code, so what runs and what was trained cannot drift apart.

The network sees each face as if it sat in the middle of the picture: its landmarks' rays are
turned so their mean lies on the optical axis (which undoes the perspective skew of a face near
the edge of a wide-angle frame), projected again, centred and scaled to unit RMS size. It
answers in that frame: the head's rotation as seen along that ray (6-D), where the model's
origin sits relative to the landmarks (in face sizes), and how far away a face of this size is
(log of depth times size). `RayGeometry.decode` turns that back into DESIGN.md's head pose in
the real camera, so one network serves every focal length and position.

Each op becomes an ONNX node that costs about a microsecond per call at run time, which is
more than the arithmetic on a few hundred points: the steps below are written in few ops.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional

from tracker.pose import FRONTAL

_NEXT, _AFTER_NEXT = [1, 2, 0], [2, 0, 1]  # (x × y)_i = x_i+1 y_i+2 - x_i+2 y_i+1


class Frame(NamedTuple):
    """Where `RayGeometry.frame` put each face, to undo in `decode` (or invert in `targets`)."""

    inputs: torch.Tensor  # (N, L, 2) turned, centred, unit RMS size: the network's input
    turn: torch.Tensor  # (N, 3, 3) camera-from-turned rotations
    centre: torch.Tensor  # (N, 1, 2) landmark centroid in the turned image plane
    scale: torch.Tensor  # (N, 1, 1) RMS distance of the landmarks from it


class RayGeometry(nn.Module):
    """The constants of the geometry as buffers, so that `.double()` gives training's float64
    copy of the float32 one the export runs."""

    def __init__(self) -> None:
        super().__init__()
        # FRONTAL's diagonal as a column: frontal * m is FRONTAL @ m in one elementwise op.
        self.register_buffer("frontal", torch.tensor(FRONTAL.diagonal()[:, None],
                                                     dtype=torch.float32))
        self.register_buffer("z", torch.tensor([[0.0, 0.0, 1.0]]))
        mirror = torch.tensor([1.0, 1.0, -1.0])  # the reflection through the image plane
        self.register_buffer("mirror", torch.diag(mirror))
        self.register_buffer("mirror_row", mirror[None])

    def frame(self, rays: torch.Tensor) -> Frame:
        """RAYS (N, L, 2), the landmarks through K⁻¹ (z = 1), turned and normalised."""
        turn = self.turn(functional.pad(rays.mean(1, keepdim=True), (0, 1), value=1.0))
        local = functional.pad(rays, (0, 1), value=1.0) @ turn  # turn.T @ each ray, as rows
        points = local[..., :2] / local[..., 2:]
        centre = points.mean(1, keepdim=True)
        spread = points - centre
        scale = (2.0 * spread.square().mean((1, 2), keepdim=True)).sqrt()
        return Frame(spread / scale, turn, centre, scale)

    def turn(self, direction: torch.Tensor) -> torch.Tensor:
        """(N, 3, 3) the smallest rotations taking +z onto DIRECTION (N, 1, 3), in closed form
        as two reflections: through the image plane (M = diag(1, 1, -1)), then across the
        plane normal to v = u + z for the unit u = (a, b, c), which takes -z to u. That is
        ``M - v (M v)ᵀ / (1 + c)`` (1 + c = v_z), entry by entry the usual
        ``I + [k]x + [k]x² / (1 + c)`` with k = z × u, in fewer ops. It needs c > -1:
        a direction in front of the camera, where every face is."""
        v = direction / direction.norm(dim=2, keepdim=True) + self.z
        return self.mirror - v.transpose(1, 2) * (v * self.mirror_row / v[..., 2:])

    def decode(self, frame: Frame, rotation6d: torch.Tensor, offset: torch.Tensor,
               log_depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The network's answers (N, 6), (N, 2), (N, 1) as the head's rotation (N, 3, 3) and
        translation (N, 3) in cm in the camera: ``p_camera = R @ p_model + t``."""
        rotation = frame.turn @ (self.frontal * rotation_from_6d(rotation6d))
        depth = log_depth[:, :, None].exp() / frame.scale
        origin = frame.centre + offset[:, None] * frame.scale
        local = functional.pad(origin, (0, 1), value=1.0) * depth  # (N, 1, 3), turned frame
        return rotation, (local @ frame.turn.transpose(1, 2))[:, 0]

    def targets(self, frame: Frame, rotation: torch.Tensor,
                translation: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the network should answer for faces of known pose: the inverse of `decode`
        (the rotation as a matrix, `head_rotation`, which the loss compares as such)."""
        local = translation[:, None] @ frame.turn  # (N, 1, 3): turn.T @ t
        origin = local[..., :2] / local[..., 2:]
        return {"head_rotation": self.frontal * (frame.turn.transpose(1, 2) @ rotation),
                "offset": ((origin - frame.centre) / frame.scale)[:, 0],
                "log_depth": (local[..., 2] * frame.scale[:, 0]).log()}


def image_points(points: torch.Tensor, head_rotation: torch.Tensor, offset: torch.Tensor,
                 log_depth: torch.Tensor, centre: torch.Tensor,
                 scale: torch.Tensor) -> torch.Tensor:
    """Model points (N, K, 3, cm) where the network's frame sees them (N, K, 2): posed by an
    answer (the head's rotation (N, 3, 3) as `targets` gives it, the origin's offset (N, 2),
    log depth (N, 1)) and projected as `RayGeometry.frame` projects the landmarks (its CENTRE
    and SCALE). A point p sits at q = FRONTAL H p + (D / s) (c + s o, 1) in the turned camera
    (D the depth times the face's size s, c the centre, o the offset, `decode`), so it is seen
    at (q_xy / q_z - c) / s = (q'_xy - c q'_z + D o) / (s q'_z + D), with q' = FRONTAL H p."""
    turned = points @ (head_rotation.transpose(1, 2) * points.new_tensor(FRONTAL.diagonal()))
    depth = log_depth[:, :, None].exp()
    return ((turned[..., :2] - centre * turned[..., 2:] + depth * offset[:, None])
            / (scale * turned[..., 2:] + depth))


def rotation_from_6d(values: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) rotations from the continuous 6-D representation (N, 6): two columns,
    Gram-Schmidt, the third their cross product (from index permutations: torch.cross
    exports as a dozen slices)."""
    a, b = values.split(3, dim=1)
    x = a / a.norm(dim=1, keepdim=True)
    b = b - (x * b).sum(1, keepdim=True) * x
    y = b / b.norm(dim=1, keepdim=True)
    z = x[:, _NEXT] * y[:, _AFTER_NEXT] - x[:, _AFTER_NEXT] * y[:, _NEXT]
    return torch.cat([x, y, z], dim=1).view(-1, 3, 3).transpose(1, 2)
