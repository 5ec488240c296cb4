"""Choosing the board views a calibration uses.

A calibration is as good as its views: sharp, and spread over the picture, over distances and
over tilts (tilt is what separates the focal length from the distance). A video holds hundreds of
nearly identical views and some blurred ones, so views are kept one per pose (the sharpest),
blurred ones are dropped against the sharp ones seen, and at most ``max_views`` are chosen, each
as unlike those chosen before it as possible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from calibrate.boards import Board, BoardView

# One unit of the pose features: a change that makes a view new rather than a near-duplicate.
POSITION_STEP = 0.05  # of the image width or height
SCALE_STEP = 0.2  # in log board area (about 10% in size)
TILT_STEP = math.sin(math.radians(5))
# A view whose edges are this much wider than those of the sharp views is blurred.
BLUR_RATIO = 1.5
SHARP_PERCENTILE = 25


@dataclass
class Candidate:
    """A view worth keeping so far, with what decides whether it is used."""

    view: BoardView
    frame: int
    edge_width: float  # pixels; larger is blurrier
    pose: np.ndarray  # (5,) features in steps: position x, y, log area, tilt x, y
    outline: np.ndarray  # (4, 2) the whole board's outline in the image


@dataclass(frozen=True)
class Selection:
    """The views chosen, and what became of the others (for the summary and the file)."""

    views: list[Candidate]
    found: int
    duplicates: int
    blurred: int


class ViewSelector:
    """Collects detections one by one and keeps one candidate per distinct board pose."""

    def __init__(self, board: Board, size: tuple[int, int], max_views: int) -> None:
        self.board = board
        self.size = size
        self.max_views = max_views
        self.candidates: list[Candidate] = []
        self.found = 0
        # A guessed pinhole (about 53° across) is enough to tell tilts apart.
        focal = max(size)
        self._guess = np.array([[focal, 0, size[0] / 2], [0, focal, size[1] / 2], [0, 0, 1]])

    def add(self, view: BoardView, gray: np.ndarray, frame: int) -> None:
        """Keep a detection as a new pose, as a sharper view of a pose kept, or not at all."""
        self.found += 1
        candidate = self._candidate(view, gray, frame)
        if self.candidates:
            distances = np.abs(np.array([c.pose for c in self.candidates]) - candidate.pose)
            nearest = int(distances.max(axis=1).argmin())
            if distances[nearest].max() < 1.0:
                if candidate.edge_width < self.candidates[nearest].edge_width:
                    self.candidates[nearest] = candidate
                return
        self.candidates.append(candidate)

    def select(self) -> Selection:
        """The sharp candidates, at most ``max_views`` of them, spread as widely as possible."""
        sharp = []
        if self.candidates:
            widths = np.array([c.edge_width for c in self.candidates])
            limit = BLUR_RATIO * np.percentile(widths, SHARP_PERCENTILE)
            sharp = [c for c in self.candidates if c.edge_width <= limit]
        chosen = _spread(sharp, self.max_views)
        return Selection(sorted(chosen, key=lambda c: c.frame), self.found,
                         self.found - len(self.candidates), len(self.candidates) - len(sharp))

    def _candidate(self, view: BoardView, gray: np.ndarray, frame: int) -> Candidate:
        _, rvec, tvec = cv2.solvePnP(view.object_points, view.image_points, self._guess, None,
                                     flags=cv2.SOLVEPNP_IPPE)
        outline = cv2.projectPoints(self.board.outline, rvec, tvec, self._guess, None)[0][:, 0]
        normal = cv2.Rodrigues(rvec)[0][:, 2]
        width, height = self.size
        centre = outline.mean(axis=0) / (width, height)
        area = max(cv2.contourArea(outline.astype(np.float32)) / (width * height), 1e-6)
        pose = np.array([centre[0] / POSITION_STEP, centre[1] / POSITION_STEP,
                         math.log(area) / SCALE_STEP, normal[0] / TILT_STEP,
                         normal[1] / TILT_STEP])
        return Candidate(view, frame, edge_width(gray, view.image_points), pose, outline)


def edge_width(gray: np.ndarray, points: np.ndarray) -> float:
    """How wide the edges between the found corners are (relative, not in pixels): across a
    blurred step the gradient falls as 1/width and the Laplacian as 1/width², so their ratio
    measures the blur whatever the contrast, the lighting or the number of edges in view."""
    hull = cv2.convexHull(points.astype(np.float32)).astype(np.int32)
    x, y, w, h = cv2.boundingRect(hull)
    crop = gray[y:y + h, x:x + w].astype(np.float32)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(mask, hull - (x, y), 1)
    inside = mask.astype(bool)
    gradient = cv2.Sobel(crop, cv2.CV_32F, 1, 0) ** 2 + cv2.Sobel(crop, cv2.CV_32F, 0, 1) ** 2
    laplacian = cv2.Laplacian(crop, cv2.CV_32F) ** 2
    return float(np.sqrt(gradient[inside].mean() / max(laplacian[inside].mean(), 1e-9)))


def _spread(candidates: list[Candidate], count: int) -> list[Candidate]:
    """Up to ``count`` candidates by farthest-point sampling of their poses, starting from the
    sharpest: each next one is the least like any chosen so far."""
    if len(candidates) <= count:
        return candidates
    poses = np.array([c.pose for c in candidates])
    chosen = [int(np.argmin([c.edge_width for c in candidates]))]
    nearest = np.linalg.norm(poses - poses[chosen[0]], axis=1)
    while len(chosen) < count:
        pick = int(nearest.argmax())
        chosen.append(pick)
        nearest = np.minimum(nearest, np.linalg.norm(poses - poses[pick], axis=1))
    return [candidates[i] for i in chosen]
