"""Shared test fixtures."""

import signal
from pathlib import Path

import pytest

from tracker.model_store import install

# Real footage lives beside the checkout, never in it (see ../shared/footage/INDEX.md).
FOOTAGE = Path(__file__).resolve().parents[1].parent / "shared" / "footage"
# The ICT-FaceKit model, likewise (see ../shared/ict-facekit/NOTES.md).
ICT_FACEKIT = Path(__file__).resolve().parents[1].parent / "shared" / "ict-facekit"

# Tests send Ctrl-C to facetrack subprocesses. A shell starts a background job (`pytest &`)
# with SIGINT ignored, children inherit that, and Python then never raises KeyboardInterrupt:
# a caught signal, unlike an ignored one, is reset to the default in every child.
signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def footage_dir() -> Path:
    if not FOOTAGE.is_dir():
        pytest.skip(f"footage not found at {FOOTAGE}")
    return FOOTAGE


@pytest.fixture(scope="session")
def ict_facekit() -> Path:
    if not (ICT_FACEKIT / "FaceXModel").is_dir():
        pytest.skip(f"ICT-FaceKit not found at {ICT_FACEKIT}")
    return ICT_FACEKIT


@pytest.fixture(scope="session")
def installed_model(ict_facekit: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The runtime model file, installed once per session (converting takes ~5 s)."""
    return install(ict_facekit, dest=tmp_path_factory.mktemp("model"))
