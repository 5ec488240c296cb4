"""Annotated output as image files: a photo's annotated copy, one image per frame, or a
folder of photos' annotated copies under their own names.

``--output`` picks these writers by the name's end (.jpg, .png, ...; a folder for photos);
they take the frames that `VideoWriter` takes, and ``facetrack run`` hands them over the same
way."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from streams.errors import SinkError
from tracker.arguments import check_writable, make_folder

NUMBER = re.compile(r"%0?\d*d")  # printf's integer, as in FFmpeg's image sequences: out_%04d.png


def is_image_name(path: str | Path) -> bool:
    """Whether OpenCV writes PATH as an image (by its end), so it names no video."""
    return bool(cv2.haveImageWriter(str(path)))


class _Images:
    """What the image writers share: the interface of `VideoWriter`, and writing a file."""

    def __init__(self) -> None:
        self.dropped = 0  # a file write waits, never drops
        self.written = 0

    def _save(self, name: str, image: np.ndarray) -> None:
        """Write the RGB IMAGE as the file NAME, in the format its end names."""
        try:
            written = cv2.imwrite(name, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        except cv2.error as error:
            raise SinkError(f"cannot write image {name}: {error.err}") from None
        if not written:
            raise SinkError(f"cannot write image {name}")
        self.written += 1

    def close(self) -> None:
        """Nothing stays open between images."""

    def __enter__(self) -> _Images:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ImageWriter(_Images):
    """Writes RGB frames as images: one file, or, when the name holds a number pattern
    (``out_%04d.png``), a file per frame, numbered from 0 in the order written.

    ``frames`` is how many the source holds (None: unknown, live): more than one needs the
    pattern, or each image would replace the one before."""

    def __init__(self, path: str | Path, frames: int | None) -> None:
        super().__init__()
        self.path = str(path)
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
        self._save(self._name(self.written), image)

    def _name(self, number: int) -> str:
        if not self._numbered:
            return self.path
        return NUMBER.sub(lambda match: match.group() % number, self.path)


class PhotoWriter(_Images):
    """Each annotated photo of PHOTOS into FOLDER under the photo's own file name, and so in
    its format. A still's time is its position in PHOTOS (`streams.sources.ImageSource`),
    which names the photo a frame shows, also after an unreadable one was skipped."""

    def __init__(self, folder: str | Path, photos: list[Path]) -> None:
        super().__init__()
        self.folder, self.photos = Path(folder), photos
        shared = sorted(name for name, count in Counter(p.name for p in photos).items()
                        if count > 1)
        if shared:
            raise SinkError(f"cannot write photos into {folder}: photos of different folders "
                            f"share the names {', '.join(shared[:3])}"
                            f"{' ...' if len(shared) > 3 else ''}; run the folders apart")
        if any(photo.resolve().parent == self.folder.resolve() for photo in photos):
            raise SinkError(f"cannot write photos into {folder}: the photos are there, and "
                            "would be written over; name another folder")
        make_folder(self.folder)
        check_writable(self.folder / photos[0].name)

    def write(self, image: np.ndarray, time: float) -> None:
        """Write the annotated photo shown at TIME, its position."""
        self._save(str(self.folder / self.photos[round(time)].name), image)
