"""The regressor network: normalised landmarks (`engines.geometry.RayGeometry.frame`) and the
image's shading at each (`tracker.shading`) in, the head's rotation (continuous 6-D), the model
origin's offset, the log depth, identity and expression out. A residual MLP: small enough for a
fraction of a millisecond on one CPU thread. `CameraRegressor` wraps it in the geometry; that is
what the ONNX file holds."""

from __future__ import annotations

import torch
from torch import nn

from engines.geometry import RayGeometry
from tracker.expressions import ICT_EXPRESSION_NAMES
from tracker.shading import EYES

# The network's outputs, in this order.
SIZES = {"rotation6d": 6, "offset": 2, "log_depth": 1, "identity": 100, "expression": 53}
# Output biases at a frontal head, the mean face, a neutral expression and a typical distance
# (log of depth times face size), so training starts from a sensible answer.
START = {"rotation6d": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), "log_depth": (1.66,)}


class Block(nn.Module):
    """Pre-norm residual MLP block."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(),
                                  nn.Linear(width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class RegressorNet(nn.Module):
    """(..., L, 3) normalised landmarks and their shading to the outputs named in `SIZES`
    (..., size). The shading of the eyes (`tracker.shading.EYES`) is not read: it is
    multiplied by 0 first."""

    def __init__(self, landmarks: int = 478, width: int = 512, depth: int = 3,
                 identity: int = 100, expression: int = 53) -> None:
        super().__init__()
        self.sizes = dict(SIZES, identity=identity, expression=expression)
        read = torch.ones(landmarks, 3)
        read[EYES, 2] = 0.0
        self.register_buffer("read", read)
        self.stem = nn.Linear(landmarks * 3, width)
        self.blocks = nn.Sequential(*(Block(width) for _ in range(depth)))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, sum(self.sizes.values()))
        with torch.no_grad():
            self.head.weight.mul_(0.1)
            self.head.bias.zero_()
            for name, values in START.items():
                self._bias(name).copy_(torch.tensor(values))

    def _bias(self, name: str) -> torch.Tensor:
        names = list(self.sizes)
        start = sum(self.sizes[key] for key in names[:names.index(name)])
        return self.head.bias[start:start + self.sizes[name]]

    def forward(self, landmarks: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Outputs in `SIZES` order."""
        return self.answers(self.trunk(self.stem((landmarks * self.read).flatten(-2))))

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.blocks(x)))

    def answers(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The head's output split into `SIZES`.

        Expressions are clipped to [0, 1] only outside training: a sigmoid or a clip there
        would starve the rare active shapes (a blink, a pucker) of gradient, as most targets
        sit at 0."""
        parts = list(torch.split(x, list(self.sizes.values()), dim=-1))
        if not self.training:
            expression = list(self.sizes).index("expression")
            parts[expression] = parts[expression].clamp(0.0, 1.0)
        return tuple(parts)


class TwoReadings(nn.Module):
    """NET reading each face twice, with its shading and without, in one pass: POSITIONS
    (N, L, 2) and SHADING (N, L) in; NET's outputs in `SIZES` order out, each (2, N, size),
    the reading with shading first.

    The stem is linear, so its weights split by channel: the positions' product is made once
    and serves both readings, and the shading's is added to the first. That halves the stem's
    work (the largest layer) and leaves the export a few nodes to build the network's input,
    against a dozen to concatenate the two readings and flatten them."""

    def __init__(self, net: RegressorNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, positions: torch.Tensor,
                shading: torch.Tensor) -> tuple[torch.Tensor, ...]:
        net = self.net
        weight = net.stem.weight.unflatten(1, (-1, 3))  # (width, L, 3): x, y, shading
        plain = positions.flatten(1) @ weight[..., :2].flatten(1).T + net.stem.bias
        shaded = plain + shading @ (weight[..., 2] * net.read[:, 2]).T
        outputs = net.trunk(torch.cat([shaded, plain]))
        return net.answers(outputs.view(2, -1, sum(net.sizes.values())))


class CameraRegressor(nn.Module):
    """What the ONNX file holds: rays and shading (N, L, 3; `tracker.regressor.model_inputs`)
    in; the head's rotation (N, 3, 3) and translation (N, 3) in the camera, identity and
    expression out (`tracker.regressor.OUTPUTS`).

    The network reads each face twice, with its shading and without (as it reads a projected
    face), and the eyes' expressions (blinks, squints, wide eyes, gaze) come from the second
    reading: on real faces the shading misleads them (make-up and lashes around a closed eye
    read as an open one, `docs/regressor.md`), while MediaPipe's eyelid landmarks show them
    plainly. Everything else comes from the first.

    The network is the attribute `net`, so the export names its nodes "/net/...": TensorRT
    keeps every other node, the geometry, in float32 (`engines.tensorrt_engine`)."""

    def __init__(self, net: RegressorNet) -> None:
        super().__init__()
        self.net = TwoReadings(net)
        self.geometry = RayGeometry()
        self.register_buffer("eye_shapes", torch.tensor(
            [name.startswith("eye") for name in ICT_EXPRESSION_NAMES]))

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        frame = self.geometry.frame(inputs[..., :2])
        rotation6d, offset, log_depth, identity, expression = self.net(
            frame.inputs, inputs[..., 2])  # each (2, N, size): with the shading, without
        expression = torch.where(self.eye_shapes, expression[1], expression[0])
        rotation, translation = self.geometry.decode(frame, rotation6d[0], offset[0],
                                                     log_depth[0])
        return rotation, translation, identity[0], expression
