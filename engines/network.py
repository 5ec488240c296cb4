"""The regressor network: normalised landmarks (`engines.geometry.RayGeometry.frame`) in, the
head's rotation (continuous 6-D), the model origin's offset, the log depth, identity and
expression out. A residual MLP: small enough for a fraction of a millisecond on one CPU thread.
`CameraRegressor` wraps it in the geometry; that is what the ONNX file holds."""

from __future__ import annotations

import torch
from torch import nn

from engines.geometry import RayGeometry

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
    """(N, L, 2) normalised landmarks to the outputs named in `SIZES`."""

    def __init__(self, landmarks: int = 478, width: int = 512, depth: int = 3,
                 identity: int = 100, expression: int = 53) -> None:
        super().__init__()
        self.sizes = dict(SIZES, identity=identity, expression=expression)
        self.stem = nn.Linear(landmarks * 2, width)
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
        """Outputs in `SIZES` order.

        Expressions are clipped to [0, 1] only outside training: a sigmoid or a clip there
        would starve the rare active shapes (a blink, a pucker) of gradient, as most targets
        sit at 0."""
        x = self.stem(landmarks.flatten(1))
        x = self.head(self.norm(self.blocks(x)))
        parts = list(torch.split(x, list(self.sizes.values()), dim=1))
        if not self.training:
            expression = list(self.sizes).index("expression")
            parts[expression] = parts[expression].clamp(0.0, 1.0)
        return tuple(parts)


class CameraRegressor(nn.Module):
    """What the ONNX file holds: rays (N, L, 2) in; the head's rotation (N, 3, 3) and
    translation (N, 3) in the camera, identity and expression out (`tracker.regressor.OUTPUTS`).

    The network is the attribute `net`, so the export names its nodes "/net/...": TensorRT
    keeps every other node, the geometry, in float32 (`engines.tensorrt_engine`)."""

    def __init__(self, net: RegressorNet) -> None:
        super().__init__()
        self.net = net
        self.geometry = RayGeometry()

    def forward(self, rays: torch.Tensor) -> tuple[torch.Tensor, ...]:
        frame = self.geometry.frame(rays)
        rotation6d, offset, log_depth, identity, expression = self.net(frame.inputs)
        rotation, translation = self.geometry.decode(frame, rotation6d, offset, log_depth)
        return rotation, translation, identity, expression
