"""Pinhole camera intrinsics, with the assumed default used until a camera is calibrated."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

DEFAULT_FOV_DEGREES = 60.0


@dataclass(frozen=True)
class Intrinsics:
    """``fx, fy, cx, cy`` in pixels; ``assumed`` is True when they were not measured, so
    consumers of published metric poses know the scale is a guess."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    assumed: bool = False

    @classmethod
    def from_fov(cls, width: int, height: int,
                 fov_degrees: float = DEFAULT_FOV_DEGREES) -> Intrinsics:
        """Square pixels, principal point at the image centre, horizontal field of view."""
        focal = width / 2 / math.tan(math.radians(fov_degrees) / 2)
        return cls(focal, focal, width / 2, height / 2, width, height, assumed=True)

    def to_dict(self) -> dict:
        return asdict(self)
