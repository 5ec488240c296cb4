"""Annotated output as image files: a photo's annotated copy, or one image per frame.

``--output`` picks this writer by the name's end (.jpg, .png, ...); it takes the frames that
`VideoWriter` takes, and ``facetrack run`` hands them over the same way."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from streams.errors import SinkError
from tracker.arguments import check_writable

NUMBER = re.compile(r"%0?\d*d")  # printf's integer, as in FFmpeg's image sequences: out_%04d.png


def is_image_name(path: str | Path) -> bool:
    """Whether OpenCV writes PATH as an image (by its end), so it names no video."""
    return bool(cv2.haveImageWriter(str(path)))


class ImageWriter:
    """Writes RGB frames as images: one file, or, when the name holds a number pattern
    (``out_%04d.png``), a file per frame, numbered from 0 in the order written.

    ``frames`` is how many the source holds (None: unknown, live): more than one needs the
    pattern, or each image would replace the one before."""

    def __init__(self, path: str | Path, frames: int | None) -> None:
        self.path = str(path)
        self.dropped = 0  # the interface of VideoWriter: a file write waits, never drops
        self.written = 0
        patterns = len(NUMBER.findall(self.path))
        if patterns > 1 or (patterns == 0 and frames != 1):
            count = "an unknown number of" if frames is None else str(frames)
            raise SinkError(f"cannot write images {self.path}: the source has {count} frames; "
                            "name one image per frame with a number (out_%04d.png) or write a "
                            "video (.mp4)")
        self._numbered = patterns == 1
        check_writable(self._name(0))

    def write(self, image: np.ndarray, time: float) -> None:
        """Write one RGB frame (its TIME matters to a video only)."""
        name = self._name(self.written)
        try:
            written = cv2.imwrite(name, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        except cv2.error as error:
            raise SinkError(f"cannot write image {name}: {error.err}") from None
        if not written:
            raise SinkError(f"cannot write image {name}")
        self.written += 1

    def _name(self, number: int) -> str:
        if not self._numbered:
            return self.path
        return NUMBER.sub(lambda match: match.group() % number, self.path)

    def close(self) -> None:
        """Nothing stays open between images."""

    def __enter__(self) -> ImageWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
