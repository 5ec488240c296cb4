"""The live view of ``facetrack calibrate camera --show``: the frame, the corners found in it,
and the board outlines kept so far shaded in, so the user sees where the board has not been."""

from __future__ import annotations

import cv2
import numpy as np

from calibrate.boards import BoardView
from calibrate.views import ViewSelector
from streams.frame import Frame
from streams.window import Window

FOUND = (60, 220, 60)  # RGB
SHADE = (60, 140, 255)


class CoverageDisplay:
    """Draws one frame at a time into a window; ``show`` is False once the user closes it."""

    def __init__(self, window: Window, min_views: int) -> None:
        self.window = window
        self.min_views = min_views

    def show(self, frame: Frame, view: BoardView | None, selector: ViewSelector) -> bool:
        image = frame.image.copy()
        shade = np.zeros(image.shape[:2], np.uint8)
        for candidate in selector.candidates:
            cv2.fillConvexPoly(shade, candidate.outline.astype(np.int32), 1)
        image[shade > 0] = (0.6 * image[shade > 0] + 0.4 * np.array(SHADE)).astype(np.uint8)
        if view is not None:
            for x, y in view.image_points:
                cv2.circle(image, (round(x), round(y)), 3, FOUND, -1, cv2.LINE_AA)
        kept = len(selector.candidates)
        text = (f"views {kept} (need {self.min_views}, up to {selector.max_views} used)"
                "  q: solve")
        cv2.putText(image, text, (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2,
                    cv2.LINE_AA)
        return self.window.show(image)
