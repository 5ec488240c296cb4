"""A person's face profile: who they are (identity) and how their face rests and moves
(expression offsets and ranges), written by ``facetrack calibrate face`` and applied by
``facetrack run --profile`` (format in docs/face-profile.md).

The regressor guesses the identity anew in every frame and reads expressions against the average
face's neutral; a profile holds the identity to what a still stretch of this person showed, and
rescales each expression so that their resting face reads 0 and their fullest reads 1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from calibrate.files import load_versioned
from streams.errors import FacetrackError, SinkError
from tracker.expressions import ICT_EXPRESSION_NAMES
from tracker.model_store import IDENTITY_COUNT
from tracker.regressor import FaceFit

PROFILE_FORMAT = "facetrack-face-profile"
PROFILE_VERSION = 1
# A range less than this above rest was not really shown (the routine did not move that shape):
# scaling by it would blow noise up to full, so that coefficient keeps the default range of 1.
MIN_SPAN = 0.1


@dataclass(frozen=True)
class FaceProfile:
    """Identity (100,), resting expression (53,) and personal maxima (53,) or None, ICT order;
    ``info`` is the rest of the file (source, created, frames, regressor)."""

    identity: np.ndarray
    rest: np.ndarray
    range: np.ndarray | None
    info: dict

    @classmethod
    def load(cls, path: str | Path) -> FaceProfile:
        """The profile in file PATH, checked: anything else is a one-line error."""
        data = load_versioned(path, "face profile", PROFILE_FORMAT, PROFILE_VERSION,
                              "make one with facetrack calibrate face")
        missing = [k for k in ("identity", "rest", "range") if k not in data]
        if missing:
            raise FacetrackError(f"{path} is not a complete face profile: no {', '.join(missing)}")
        try:
            identity = _vector(data["identity"], IDENTITY_COUNT, "identity")
            rest = _expressions(data["rest"], "rest")
            maxima = None if data["range"] is None else _expressions(data["range"], "range")
        except (TypeError, ValueError) as error:
            raise FacetrackError(f"{path} is not a valid face profile: {error}") from None
        info = {k: v for k, v in data.items() if k not in ("identity", "rest", "range")}
        return cls(identity, rest, maxima, info)

    def to_dict(self) -> dict:
        """The file's content: format, the three arrays (expressions by name), then ``info``."""
        return {"format": PROFILE_FORMAT, "version": PROFILE_VERSION,
                "identity": np.round(self.identity.astype(float), 6).tolist(),
                "rest": _named(self.rest),
                "range": None if self.range is None else _named(self.range),
                **self.info}

    def write(self, path: str | Path) -> None:
        try:
            Path(path).write_text(_one_field_a_line(self.to_dict()))
        except OSError as error:
            raise SinkError(f"cannot write face profile {path}: {error.strerror}") from None

    @property
    def span(self) -> np.ndarray:
        """(53,) what a full expression adds to rest: range - rest, or 1 - rest where the range
        is absent or under ``MIN_SPAN`` above rest."""
        full = 1.0 - self.rest
        if self.range is None:
            return np.maximum(full, MIN_SPAN)
        shown = self.range - self.rest
        return np.where(shown >= MIN_SPAN, shown, np.maximum(full, MIN_SPAN))

    def apply(self, fit: FaceFit) -> FaceFit:
        """FIT with this person's identity, and expressions measured from their rest to their
        range: (e - rest) / span, clipped to [0, 1]."""
        expression = np.clip((fit.expression - self.rest) / self.span, 0.0, 1.0)
        return replace(fit, identity=self.identity, expression=expression.astype(np.float32))

    def header(self, path: str | Path) -> dict:
        """What a recording's header says about the profile it was tracked with."""
        frames = self.info.get("frames")
        return {"file": Path(path).name, "created": self.info.get("created"),
                "frames": frames.get("used") if isinstance(frames, dict) else None,
                "regressor": self.info.get("regressor")}


def _vector(values: object, size: int, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)  # ValueError or TypeError when not numbers
    if array.shape != (size,):
        raise ValueError(f"{name} has shape {list(array.shape)}, expected [{size}]")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} has values that are not finite")
    return array.astype(np.float32)


def _expressions(values: object, name: str) -> np.ndarray:
    """(53,) from {ICT name: value}, every name present, every value in [0, 1]."""
    if not isinstance(values, dict):
        raise TypeError(f"{name} is not an object of expression names to values")
    missing = [n for n in ICT_EXPRESSION_NAMES if n not in values]
    unknown = sorted(set(values) - set(ICT_EXPRESSION_NAMES))
    if missing or unknown:
        raise ValueError(f"{name} lacks {len(missing)} of the 53 ICT expressions "
                         f"({', '.join(missing[:3]) or 'none'}) and has {len(unknown)} unknown "
                         f"({', '.join(unknown[:3]) or 'none'})")
    array = _vector([values[n] for n in ICT_EXPRESSION_NAMES], len(ICT_EXPRESSION_NAMES), name)
    if not ((array >= 0) & (array <= 1)).all():
        raise ValueError(f"{name} has values outside [0, 1]")
    return array


def _one_field_a_line(data: dict) -> str:
    """JSON with each top-level field on a line of its own: readable, and diffable per field."""
    fields = ",\n".join(f" {json.dumps(key)}: {json.dumps(value)}" for key, value in data.items())
    return "{\n" + fields + "\n}\n"


def _named(values: np.ndarray) -> dict[str, float]:
    return {n: round(float(v), 6) for n, v in zip(ICT_EXPRESSION_NAMES, values, strict=True)}

