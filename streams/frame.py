"""The unit every source yields and every stage downstream consumes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One decoded picture.

    ``time`` is the capture time in seconds: the container's pts for files, a monotonic clock
    for live sources, so downstream filters can use real time steps rather than frame counts.
    """

    source: str
    index: int
    time: float
    image: np.ndarray  # H×W×3 RGB uint8, as decoded

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.image.shape[1], self.image.shape[0]
