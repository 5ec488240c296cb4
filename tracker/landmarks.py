"""MediaPipe face mesh as numpy: 478 landmarks per face, in pixels.

We drive the legacy ``solutions`` graph directly (as ``solutions.face_mesh.FaceMesh`` does) so
we can also read its ``face_detections`` stream: the detector's score is the only presence
score the graph exposes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import mediapipe
import numpy as np
from mediapipe.framework import calculator_pb2
from mediapipe.python.solution_base import SolutionBase
from mediapipe.python.solutions import face_detection, face_mesh

LANDMARK_COUNT = 478  # 468 mesh points + 10 iris points (refine_landmarks=True)
# The face oval: the jaw line and forehead edge, a silhouette that MediaPipe places least surely.
CONTOUR = np.array(sorted({i for edge in face_mesh.FACEMESH_FACE_OVAL for i in edge}))
CONTOUR_WEIGHT = 0.3  # what a contour landmark counts for in a fit to the landmarks
# MediaPipe's face detectors: short-range for faces within about 2 m (the face mesh's own),
# full-range to about 5 m, and the small faces of a group photo. Each is a graph file that
# holds one node, the detector's subgraph, and where its score threshold sits in the mesh.
DETECTORS = {
    "short-range": (face_detection._SHORT_RANGE_GRAPH_FILE_PATH,
                    "facedetectionshortrange__facedetection"),
    "full-range": (face_detection._FULL_RANGE_GRAPH_FILE_PATH,
                   "facedetectionfullrange__facedetection"),
}


def fit_weights() -> np.ndarray:
    """(478,) what each landmark counts for in a fit to the landmarks (the refinement, and
    measuring MediaPipe's response): 1, and CONTOUR_WEIGHT on the face oval."""
    weights = np.ones(LANDMARK_COUNT, np.float32)
    weights[CONTOUR] = CONTOUR_WEIGHT
    return weights


@dataclass(frozen=True)
class FaceObservation:
    """One face in one frame, as DESIGN.md defines it.

    ``landmarks`` is (478, 3) float32: x, y in pixels and MediaPipe's z scaled by the image
    width, like x. ``bbox`` is (x0, y0, x1, y1) of the landmarks. ``score`` is the face
    detector's confidence from the detection that found or last re-found the face, or None
    when the detector has not run for it (MediaPipe tracks without re-detecting). ``shading``
    is (478,) float32, the image's standardised brightness at each landmark
    (`tracker.shading`), once the tracker has read it for the regressor.
    """

    track: int
    landmarks: np.ndarray
    bbox: tuple[float, float, float, float]
    score: float | None
    shading: np.ndarray | None = None


class FaceMesh:
    """Finds up to ``max_faces`` faces per frame, tracking them between frames.

    Tracking mode (``static_image_mode=False``) lets MediaPipe reuse the previous frame's
    landmarks as the next region of interest and skip the detector: about half the cost of
    detecting every frame, and steadier landmarks. Unrelated images need the static mode: a
    face where the last image had none would be missed. ``detector`` is one of DETECTORS.
    """

    def __init__(self, max_faces: int = 1, *, static_image_mode: bool = False,
                 detector: str = "short-range", min_detection_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5) -> None:
        self.max_faces = max_faces
        graph_file, detection = DETECTORS[detector]
        self._graph = SolutionBase(
            graph_config=_mesh_graph(graph_file),
            side_inputs={
                "num_faces": max_faces,
                "with_attention": True,
                "use_prev_landmarks": not static_image_mode,
            },
            calculator_params={
                f"{detection}__TensorsToDetectionsCalculator.min_score_thresh":
                    min_detection_confidence,
                "facelandmarkcpu__ThresholdingCalculator.threshold": min_tracking_confidence,
            },
            outputs=["multi_face_landmarks", "face_detections"],
        )

    def process(self, image: np.ndarray) -> list[FaceObservation]:
        """Landmarks of each face in an RGB uint8 image; ``track`` is -1 (see ``TrackIds``)."""
        height, width = image.shape[:2]
        result = self._graph.process({"image": image})
        if not result.multi_face_landmarks:
            return []
        scale = np.array([width, height, width], np.float32)
        faces = []
        for face in result.multi_face_landmarks:
            points = landmarks_to_array(face) * scale
            x0, y0 = points[:, :2].min(axis=0)
            x1, y1 = points[:, :2].max(axis=0)
            faces.append(FaceObservation(-1, points, (float(x0), float(y0), float(x1), float(y1)),
                                         None))
        if result.face_detections:
            faces = _attach_scores(faces, result.face_detections, width, height)
        return faces

    def close(self) -> None:
        self._graph.close()

    def __enter__(self) -> FaceMesh:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _mesh_graph(detector_file: str) -> calculator_pb2.CalculatorGraphConfig:
    """The face mesh's graph with its detector node replaced by DETECTOR_FILE's one node."""
    graph, (detector,) = (_graph_file(face_mesh._BINARYPB_FILE_PATH),
                          _graph_file(detector_file).node)
    (node,) = (n for n in graph.node if n.calculator == "FaceDetectionShortRangeCpu")
    node.calculator = detector.calculator
    del node.node_options[:]
    node.node_options.extend(detector.node_options)
    return graph


def _graph_file(path: str) -> calculator_pb2.CalculatorGraphConfig:
    """A graph MediaPipe ships, by the path its solutions name it with (mediapipe/...)."""
    graph = calculator_pb2.CalculatorGraphConfig()
    graph.ParseFromString((Path(mediapipe.__file__).parents[1] / path).read_bytes())
    return graph


def landmarks_to_array(landmark_list) -> np.ndarray:
    """(N, 3) float32 of a NormalizedLandmarkList, without a Python loop over its fields.

    Each landmark serialises as the same 17 bytes (a tag, a length, then x, y, z as tagged
    little-endian floats), so the floats are strided reads of one buffer: 20 µs instead of
    the 200 µs of a per-landmark comprehension. Any other layout takes the slow path.
    """
    count = len(landmark_list.landmark)
    data = landmark_list.SerializeToString()
    if len(data) == count * 17:
        raw = np.frombuffer(data, np.uint8).reshape(count, 17)
        if (raw[:, [0, 1, 2, 7, 12]] == [0x0A, 15, 0x0D, 0x15, 0x1D]).all():
            floats = raw[:, [3, 4, 5, 6, 8, 9, 10, 11, 13, 14, 15, 16]].copy()
            return floats.view("<f4").reshape(count, 3).astype(np.float32)
    return np.array([(p.x, p.y, p.z) for p in landmark_list.landmark], np.float32)


def _attach_scores(faces: list[FaceObservation], detections, width: int,
                   height: int) -> list[FaceObservation]:
    """Give each face the score of the detection box that overlaps it most."""
    boxes, scores = [], []
    for detection in detections:
        box = detection.location_data.relative_bounding_box
        x0, y0 = box.xmin * width, box.ymin * height
        boxes.append((x0, y0, x0 + box.width * width, y0 + box.height * height))
        scores.append(float(detection.score[0]))
    overlap = box_iou(np.array([f.bbox for f in faces]), np.array(boxes))
    best = overlap.argmax(axis=1)
    return [replace(face, score=scores[b] if overlap[i, b] > 0.2 else None)
            for i, (face, b) in enumerate(zip(faces, best, strict=True))]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every (x0, y0, x1, y1) box of ``a`` with every one of ``b``."""
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)
