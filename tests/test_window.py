"""``--show`` on a real X server (Xvfb): the window opens at the frame's size and the run ends
normally; without a display the run warns once and goes on."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

FACETRACK = str(Path(sys.executable).parent / "facetrack")


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    if not shutil.which("Xvfb"):
        pytest.skip("Xvfb is not installed (Debian package xvfb); .ci/run installs it")
    name = f":{90 + os.getpid() % 100}"
    server = subprocess.Popen(["Xvfb", name, "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{name[1:]}").exists():
        if time.monotonic() > deadline or server.poll() is not None:
            pytest.fail("Xvfb did not start")
        time.sleep(0.05)
    yield name
    server.terminate()
    server.wait(timeout=10)


def test_window_shows_frames_at_their_size(display: str) -> None:
    script = (
        "import numpy as np\n"
        "import cv2\n"
        "from streams.window import Window\n"
        "w = Window('facetrack-test')\n"
        "image = np.zeros((240, 320, 3), np.uint8)\n"
        "assert all(w.show(image) for _ in range(5))\n"
        "x, y, width, height = cv2.getWindowImageRect('facetrack-test')\n"
        "print(width, height, int(cv2.getWindowProperty('facetrack-test', "
        "cv2.WND_PROP_VISIBLE)))\n"
        "w.close()\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "DISPLAY": display}, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["320", "240", "1"]


def test_run_with_show(display: str, footage_dir: Path) -> None:
    result = subprocess.run(
        [FACETRACK, "run", "--source", str(footage_dir / "single_face.mp4"), "--show"],
        capture_output=True, text=True, env={**os.environ, "DISPLAY": display}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr and "72 frames" in result.stderr


def test_photos_wait_for_a_key(display: str, footage_dir: Path, tmp_path: Path) -> None:
    """A photo stays on screen until a key: space shows the next, q ends the run."""
    if not shutil.which("xdotool"):
        pytest.skip("xdotool is not installed (Debian package xdotool); .ci/run installs it")
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        shutil.copy(footage_dir / "single_face.jpg", photos / name)
    record = tmp_path / "photos.jsonl"
    env = {**os.environ, "DISPLAY": display}
    run = subprocess.Popen([FACETRACK, "run", "--source", str(photos), "--show", "--record",
                            str(record)], stderr=subprocess.PIPE, text=True, env=env)

    def press(key: str) -> None:
        subprocess.run(["xdotool", "search", "--sync", "--name", "^facetrack$",
                        "windowfocus", "--sync", "key", key], env=env, check=True, timeout=60)
        time.sleep(2)

    def frames() -> int:
        return record.read_text().count('"frame"') if record.exists() else 0

    try:
        deadline = time.monotonic() + 60
        while frames() < 1:
            assert run.poll() is None and time.monotonic() < deadline, run.stderr.read()
            time.sleep(0.2)
        time.sleep(2)
        assert run.poll() is None and frames() == 1  # held on the first photo
        press("space")
        assert run.poll() is None and frames() == 2
        press("q")
        assert run.wait(30) == 0
    finally:
        run.kill()
    assert "2 frames" in run.stderr.read()


def test_show_without_display_warns_and_runs(footage_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    result = subprocess.run(
        [FACETRACK, "run", "--source", str(footage_dir / "single_face.jpg"), "--show"],
        capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == ["facetrack: warning: no display found, --show ignored"]


