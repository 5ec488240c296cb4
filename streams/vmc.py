"""VMC protocol bridge: the first tracked face of every frame as one OSC bundle over UDP, for
VSeeFace, VMagicMirror, Warudo and other VMC receivers (docs/vmc.md).

Per frame: 52 ``/VMC/Ext/Blend/Val`` (ARKit name, value) and one ``/VMC/Ext/Blend/Apply``, the
head as ``/VMC/Ext/Bone/Pos "Head"`` (metres, Unity quaternion), ``/VMC/Ext/OK 1`` and
``/VMC/Ext/T`` (the frame's time). A frame without a tracked face sends only OK and T, so the
avatar holds its last pose. UDP is fire-and-forget: a send that would block is dropped and
counted, never waited for.
"""

from __future__ import annotations

import numpy as np
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder
from scipy.spatial.transform import Rotation

from streams.recording import tracked_face
from streams.subscriber import to_unity
from streams.udp import UDPSender
from tracker.expressions import ARKIT_NAMES, to_arkit

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 39539  # the VMC protocol's usual receiving port (VSeeFace, VMagicMirror)


def _swap_sides(name: str) -> str:
    return name.replace("Left", "\0").replace("Right", "Left").replace("\0", "Right")


# ARKit-52 values of the mirror image: position i takes the value of MIRRORED[i].
MIRRORED = np.array([ARKIT_NAMES.index(_swap_sides(name)) for name in ARKIT_NAMES])
# From to_unity's camera-local head rotation M to the avatar's: the avatar stands at the camera
# facing it (its frame is the camera's turned 180° about y), and mirroring reflects x. The
# rotation is FLIP @ M @ REFLECT_X (identity for a face looking into the camera), the position
# FLIP @ p.
_FLIP = np.diag([1.0, 1.0, -1.0])
_REFLECT_X = np.diag([-1.0, 1.0, 1.0])


def avatar_head(rotation: np.ndarray, translation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position in metres, quaternion x, y, z, w) of the head for a VMC avatar, mirrored.

    Unity axes (left-handed, y up). The frame is the avatar's, standing at the camera and
    facing it: a face 60 cm in front of the camera looking into it is at (0, 0, -0.6) with the
    identity rotation. Mirrored, as a webcam user facing the screen expects: turning to your
    left turns the avatar to its right, so on screen it moves like your mirror image.
    """
    pose = to_unity(rotation, translation)
    matrix = _FLIP @ Rotation.from_quat(pose.rotation).as_matrix() @ _REFLECT_X
    return _FLIP @ pose.position, Rotation.from_matrix(matrix).as_quat()


def vmc_bundle(record: dict) -> bytes:
    """The OSC bundle of one frame record (see the module docstring)."""
    bundle = OscBundleBuilder(IMMEDIATELY)
    face = tracked_face(record)
    if face is not None:
        values = np.clip(to_arkit(face["expression"])[MIRRORED], 0.0, 1.0)
        for name, value in zip(ARKIT_NAMES, values.tolist(), strict=True):
            bundle.add_content(_message("/VMC/Ext/Blend/Val", name, value))
        bundle.add_content(_message("/VMC/Ext/Blend/Apply"))
        position, quaternion = avatar_head(np.asarray(face["rotation"], dtype=float),
                                           np.asarray(face["translation"], dtype=float))
        bundle.add_content(_message("/VMC/Ext/Bone/Pos", "Head", *position.tolist(),
                                    *quaternion.tolist()))
    bundle.add_content(_message("/VMC/Ext/OK", 1))
    bundle.add_content(_message("/VMC/Ext/T", float(record["time"])))
    return bundle.build().dgram


def _message(address: str, *args: object) -> object:
    message = OscMessageBuilder(address)
    for arg in args:
        message.add_arg(arg)
    return message.build()


class VMCSender(UDPSender):
    """A sink sending each frame to a VMC receiver at ``address`` (HOST[:PORT], default port
    39539), never waiting (`streams.udp.UDPSender`)."""

    def __init__(self, address: str) -> None:
        super().__init__(address, "--vmc", DEFAULT_PORT)

    def send_frame(self, record: dict) -> None:
        self.send(vmc_bundle(record))
