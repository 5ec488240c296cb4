"""Training losses of the regressor, in millimetres of face where they can be: coefficient
errors matter only as far as they move the surface, so most terms compare meshes.

- shape: the predicted identity + expression mesh against the true one (model space);
- rotation: the true mesh turned by the predicted and the true head rotation;
- reprojection: the predicted face's 68 landmarks, posed by the predicted head pose, against
  the true face's posed by the true one, both where the camera sees them (in the network's
  normalised frame, `engines.geometry.image_points`): the one term that scores shape, rotation,
  offset and depth together, as an overlay on the picture shows them;
- offset and depth: where the model origin sits, in face sizes and in log distance, scaled to
  about the millimetres they move a face at arm's length;
- expression and identity coefficients directly, lightly, so that shapes the mesh barely
  shows (eye looks, cheek puff) still learn the right sign; per face, as far as its landmarks
  are trusted to show its expression (`target["trust"]`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from engines.geometry import image_points, rotation_from_6d
from tracker.face_model import FaceModel

MM_PER_CM = 10.0


@dataclass(frozen=True)
class LossWeights:
    shape: float = 1.0
    rotation: float = 1.0
    offset: float = 50.0  # a face size is about 5 cm
    depth: float = 300.0  # log depth: 1% of 60 cm is 6 mm; half weight, as it is ill-posed
    expression: float = 300.0  # squared: 0.1 off in every shape costs 3
    identity: float = 0.2
    # The network's frame scales MediaPipe's landmarks to an RMS radius of 1, about 50 mm of
    # face: at 50 a unit of the term would weigh as a millimetre of the shape and rotation
    # terms does. Four times that held out rotation and translation better than 50 did
    # (docs/regressor.md, "The reprojected landmarks").
    reprojection: float = 200.0


class MeshBasis(torch.nn.Module):
    """The ICT model in torch, in millimetres, on the vertices the losses compare: every
    STRIDE-th narrow-face vertex (the first `surface`), then the 68 landmarks."""

    def __init__(self, model: FaceModel, stride: int = 12) -> None:
        super().__init__()
        surface = model.regions["narrow_face"][::stride]
        self.surface = len(surface)
        index = np.concatenate([surface, model.landmarks68])
        self.register_buffer("neutral", torch.from_numpy(model.neutral[index] * MM_PER_CM))
        for name, deltas in (("identity", model.identity_deltas),
                             ("expression", model.expression_deltas)):
            basis = deltas[:, index].reshape(len(deltas), -1) * MM_PER_CM
            self.register_buffer(name, torch.from_numpy(basis))

    def forward(self, identity: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
        offsets = identity @ self.identity + expression @ self.expression
        return self.neutral + offsets.view(len(identity), -1, 3)


def regressor_loss(outputs: dict[str, torch.Tensor], target: dict[str, torch.Tensor],
                   mesh: MeshBasis, weights: LossWeights) -> tuple[torch.Tensor, dict]:
    """(total, {term: value}) for a batch; TARGET holds `RayGeometry.targets`' tensors, the
    frame's centre and scale, and the true identity and expression."""
    true_points = mesh(target["identity"], target["expression"])
    points = mesh(outputs["identity"], outputs["expression"])
    true_shape = true_points[:, :mesh.surface]
    shape = (points[:, :mesh.surface] - true_shape).norm(dim=-1).mean()
    head_rotation = rotation_from_6d(outputs["rotation6d"])
    turned = true_shape @ head_rotation.transpose(1, 2)
    rotation = (turned - true_shape @ target["head_rotation"].transpose(1, 2)).norm(
        dim=-1).mean()
    frame = target["centre"], target["scale"]
    seen = image_points(points[:, mesh.surface:] / MM_PER_CM, head_rotation, outputs["offset"],
                        outputs["log_depth"], *frame)
    true_seen = image_points(true_points[:, mesh.surface:] / MM_PER_CM, target["head_rotation"],
                             target["offset"], target["log_depth"], *frame)
    terms = {
        "shape": shape,
        "rotation": rotation,
        "offset": (outputs["offset"] - target["offset"]).norm(dim=-1).mean(),
        "depth": (outputs["log_depth"] - target["log_depth"]).abs().mean(),
        "expression": ((outputs["expression"] - target["expression"]).square().mean(dim=1)
                       * target["trust"]).mean(),
        "identity": (outputs["identity"] - target["identity"]).pow(2).mean(),
        "reprojection": (seen - true_seen).norm(dim=-1).mean(),
    }
    total = sum(getattr(weights, name) * value for name, value in terms.items())
    return total, {name: float(value.detach()) for name, value in terms.items()}
