"""Facetrack's own JSON files (camera files, face profiles, ground truth) carry a ``format`` and
a ``version``: reading one checks both, so a wrong or newer file is one line, not a KeyError."""

from __future__ import annotations

import json
from pathlib import Path

from streams.errors import FacetrackError


def load_versioned(path: str | Path, kind: str, file_format: str, version: int,
                   hint: str = "") -> dict:
    """The object in JSON file PATH, a KIND (\"camera file\") of FILE_FORMAT and VERSION; anything
    else is a one-line error, the format one ending in HINT (how to make the right file)."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as error:
        raise FacetrackError(f"cannot read {kind} {path}: {error.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FacetrackError(f"{path} is not a {kind}: not JSON ({error})") from None
    if not isinstance(data, dict) or data.get("format") != file_format:
        raise FacetrackError(f"{path} is not a {kind} (no \"format\": \"{file_format}\")"
                             + (f": {hint}" if hint else ""))
    if data.get("version") != version:
        raise FacetrackError(f"{path} is {kind} version {data.get('version')}, this facetrack "
                             f"reads version {version}")
    return data
