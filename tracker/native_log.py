"""Keeps MediaPipe's native start-up notices off the user's terminal.

MediaPipe's C++ side (TFLite, absl) writes notices such as "Created TensorFlow Lite XNNPACK
delegate" straight to file descriptor 2, from its own threads, at moments Python cannot see.
The command line therefore points fd 2 at a pipe whose reader forwards every line except those
known notices, while Python's own ``sys.stderr`` writes to the real stderr directly, so nothing
of ours is ever delayed or lost.
"""

from __future__ import annotations

import os
import re
import sys
import threading

# TFLite's start-up line, absl's note about its own set-up, and absl INFO and WARNING lines
# (I/W, then the date): MediaPipe's errors (E, F) still come through. Also libpng's warning
# about a photo's colour profile (an RGB one in a grey PNG, common from photo tools), which
# OpenCV's reading of the pixels ignores: a folder of such photos gave a line per photo.
NOTICES = re.compile(rb"XNNPACK delegate|absl::InitializeLog|^[IW]\d{4} \d\d:\d\d:"
                     rb"|^libpng warning: iCCP: ")


def filter_native_stderr() -> None:
    """Drop MediaPipe's known notices from fd 2 for the rest of the process (CLI only:
    it replaces ``sys.stderr``, which test runners and host applications own)."""
    real = os.dup(2)
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)
    sys.stderr = os.fdopen(os.dup(real), "w", buffering=1, errors="backslashreplace")
    threading.Thread(target=_forward, args=(read, real), name="native-stderr",
                     daemon=True).start()


def _forward(read: int, real: int) -> None:
    with os.fdopen(read, "rb") as pipe:
        for line in pipe:
            if not NOTICES.search(line):
                os.write(real, line)
