"""Running the real `facetrack` command in tests, and checking its one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FACETRACK = str(Path(sys.executable).parent / "facetrack")


def facetrack(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([FACETRACK, *args], capture_output=True, text=True, timeout=timeout)


def facetrack_ok(*args: str) -> subprocess.CompletedProcess:
    """`facetrack` that must succeed: the test fails with its stderr otherwise."""
    result = facetrack(*args)
    assert result.returncode == 0, result.stderr
    return result


def synth(folder: Path, clips: str, frames: int, seed: int, model: Path,
          *options: str) -> Path:
    """`facetrack synth` for real: CLIPS (comma-separated names) into FOLDER."""
    facetrack_ok("synth", str(folder), "--clips", clips, "--frames", str(frames),
                 "--seed", str(seed), "--model", str(model), *options)
    return folder


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> str:
    """RESULT failed with exactly one error line, no traceback, naming every one of WORDS."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]
