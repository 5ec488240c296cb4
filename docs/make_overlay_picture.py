"""Regenerates docs/overlay.png: the overlay (landmarks, contours, the fitted head's shaded mesh
and pose axes) on the public-domain astronaut photo that ships with scikit-image.
Run: .venv/bin/python docs/make_overlay_picture.py"""

from __future__ import annotations

from pathlib import Path

import cv2
import skimage.data

from streams.frame import Frame
from tracker.face_model import FaceModel
from tracker.overlay import Overlay
from tracker.pipeline import FaceTracker
from tracker.refine import Refiner
from tracker.regressor import Regressor
from tracker.render import Renderer


def main() -> None:
    image = cv2.resize(skimage.data.astronaut()[0:300, 60:400], None, fx=1.5, fy=1.5,
                       interpolation=cv2.INTER_CUBIC)
    frame = Frame("astronaut", 0, 0.0, image)
    model = FaceModel.load()
    with FaceTracker(1, regressor=Regressor(), refiner=Refiner.load(model)) as tracker:
        faces = tracker.process(frame)
        camera = tracker.intrinsics(*frame.size)
    overlay = Overlay(mesh=Renderer(model, "face"))
    overlay.draw(image, faces, "facetrack: skimage.data.astronaut()", camera)
    cv2.imwrite(str(Path(__file__).with_name("overlay.png")),
                cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


if __name__ == "__main__":
    main()
