"""A live preview window (OpenCV HighGUI), for ``--show``."""

from __future__ import annotations

import os
import sys

import cv2
import numpy as np

QUIT_KEYS = {ord("q"), 27}  # q or Esc


def display_available() -> bool:
    """HighGUI on Linux needs an X11 or Wayland display; elsewhere assume one."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class Window:
    """Shows RGB frames; ``show`` returns False once the user closes it or presses q/Esc.
    Photos wait for a key: any other key shows the next.

    HighGUI must be driven from the thread that created the window, so this runs in the
    tracking loop; ``waitKey(1)`` is what lets the window repaint.
    """

    def __init__(self, title: str = "facetrack") -> None:
        self.title = title
        self._sized = False
        cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)

    def show(self, image: np.ndarray, wait: bool = False) -> bool:
        """Show IMAGE; with WAIT (a photo, not a moving picture), until a key is pressed."""
        if not self._sized:  # resizable, but first at the frame's own size
            cv2.resizeWindow(self.title, image.shape[1], image.shape[0])
            self._sized = True
        cv2.imshow(self.title, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        key = cv2.waitKey(1)
        while wait and key == -1 and self._open():  # polled: a closed window sends no key
            key = cv2.waitKey(100)
        return key & 0xFF not in QUIT_KEYS and self._open()

    def _open(self) -> bool:
        return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1

    def close(self) -> None:
        cv2.destroyWindow(self.title)
