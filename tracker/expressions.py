"""Expression names: the ICT model's 53 blendshapes and the ARKit-52 view of them.

Facetrack works in ICT's names and order everywhere (DESIGN.md, Conventions); the ARKit view is
a fixed linear map so it applies to a batch, and later to a tensor, in one matrix product.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike

# The `expressions` list of ICT-FaceKit's FaceXModel/vertex_indices.json, in its order.
ICT_EXPRESSION_NAMES: tuple[str, ...] = (
    "browDown_L", "browDown_R", "browInnerUp_L", "browInnerUp_R", "browOuterUp_L",
    "browOuterUp_R", "cheekPuff_L", "cheekPuff_R", "cheekSquint_L", "cheekSquint_R",
    "eyeBlink_L", "eyeBlink_R", "eyeLookDown_L", "eyeLookDown_R", "eyeLookIn_L", "eyeLookIn_R",
    "eyeLookOut_L", "eyeLookOut_R", "eyeLookUp_L", "eyeLookUp_R", "eyeSquint_L", "eyeSquint_R",
    "eyeWide_L", "eyeWide_R", "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose",
    "mouthDimple_L", "mouthDimple_R", "mouthFrown_L", "mouthFrown_R", "mouthFunnel", "mouthLeft",
    "mouthLowerDown_L", "mouthLowerDown_R", "mouthPress_L", "mouthPress_R", "mouthPucker",
    "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthSmile_L", "mouthSmile_R", "mouthStretch_L", "mouthStretch_R", "mouthUpperUp_L",
    "mouthUpperUp_R", "noseSneer_L", "noseSneer_R",
)

# ARFaceAnchor.BlendShapeLocation in the order of Apple's documentation.
ARKIT_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawLeft", "jawRight", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)

# ICT splits these into _L/_R; ARKit has one value for both sides.
_SPLIT_IN_ICT = ("browInnerUp", "cheekPuff")
_SIDES = {"_L": "Left", "_R": "Right"}


def _arkit_target(ict_name: str) -> tuple[str, float]:
    """The ARKit name an ICT expression feeds, and its weight (1/2 for the split shapes)."""
    base, suffix = ict_name[:-2], ict_name[-2:]
    if suffix not in _SIDES:
        return ict_name, 1.0
    if base in _SPLIT_IN_ICT:
        return base, 0.5
    return base + _SIDES[suffix], 1.0


def _arkit_from_ict() -> np.ndarray:
    """The (53, 52) matrix M with arkit = ict @ M; tongueOut's column stays zero (not tracked)."""
    matrix = np.zeros((len(ICT_EXPRESSION_NAMES), len(ARKIT_NAMES)), dtype=np.float32)
    for row, ict_name in enumerate(ICT_EXPRESSION_NAMES):
        arkit_name, weight = _arkit_target(ict_name)
        matrix[row, ARKIT_NAMES.index(arkit_name)] = weight
    return matrix


ARKIT_FROM_ICT: np.ndarray = _arkit_from_ict()
ARKIT_FROM_ICT.flags.writeable = False


def to_arkit(expression: ArrayLike | Mapping[str, float]) -> np.ndarray:
    """ICT expression values (..., 53), or a record's expression object ({ICT name: value}), as
    ARKit-52 values (..., 52) in `ARKIT_NAMES` order."""
    if isinstance(expression, Mapping):
        expression = [expression[name] for name in ICT_EXPRESSION_NAMES]
    values = np.asarray(expression, dtype=np.float32)
    if values.shape[-1:] != (len(ICT_EXPRESSION_NAMES),):
        raise ValueError(f"expected (..., {len(ICT_EXPRESSION_NAMES)}) ICT expression values, "
                         f"got shape {values.shape}")
    return values @ ARKIT_FROM_ICT
