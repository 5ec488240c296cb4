"""Python SDK for Facetrack's ZeroMQ stream (docs/protocol.md): decoded face and metadata
messages, and head poses in Unity's and Unreal's conventions.

    from streams.subscriber import Subscriber, FaceMessage, to_unity
    for message in Subscriber("tcp://127.0.0.1:5570"):
        if isinstance(message, FaceMessage) and message.rotation is not None:
            position, quaternion = to_unity(message.rotation, message.translation)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import msgpack
import numpy as np
import orjson
import zmq
from scipy.spatial.transform import Rotation

from streams.errors import FacetrackError
from streams.publisher import (
    CLIENT_SECRET,
    DEFAULT_ENDPOINT,
    SERVER_KEY,
    endpoint_problem,
    is_ipv6,
    load_key,
    load_keypair,
)

MAX_MESSAGE_BYTES = 16 << 20  # a face with landmarks is ~15 kB; a bigger message is hostile


@dataclass(frozen=True)
class FaceMessage:
    """One face in one frame. Pose and coefficients are None/empty unless the face is
    ``tracking`` with a regressor; ``payload`` is everything received (bbox, score, landmarks
    and fields newer than this class)."""

    stream: str
    track: int
    frame: int
    time: float  # seconds, the frame's capture time
    status: str  # tracking, coasting or lost
    rotation: np.ndarray | None  # (3, 3) camera-from-model, p_camera = R @ p_model + t
    translation: np.ndarray | None  # (3,) cm, OpenCV camera axes (x right, y down, z forward)
    expression: dict[str, float]  # 53 ICT names, [0, 1]
    arkit: dict[str, float]  # 52 ARKit names, [0, 1]
    identity: np.ndarray | None  # (100,) ICT identity coefficients
    payload: dict


@dataclass(frozen=True)
class MetaMessage:
    """A stream's metadata: sent on subscribing, on a new header and when an identity changes."""

    stream: str
    schema: int
    image_size: list[int] | None
    intrinsics: dict | None
    expression_names: list[str]
    arkit_names: list[str]
    identity: dict[int, np.ndarray]  # per track
    payload: dict


Message = FaceMessage | MetaMessage


class Subscriber:
    """Receives one stream (``stream``) or all of them (None) from a Facetrack publisher.
    ``curve_dir``: the folder from ``facetrack keys`` (server.key, client.key_secret) when
    the publisher runs with ``--curve``. Iterating blocks; `receive` can time out."""

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, stream: str | None = None,
                 curve_dir: str | Path | None = None) -> None:
        if problem := endpoint_problem(endpoint, binding=False):
            raise FacetrackError(f"cannot subscribe to {endpoint}: {problem}")
        self.stream = stream
        self.invalid = 0  # messages that could not be decoded, skipped
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.IPV6, is_ipv6(endpoint))
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        try:
            if curve_dir is not None:
                keys = Path(curve_dir)
                public, secret = load_keypair(keys / CLIENT_SECRET, keys)
                self._socket.curve_publickey = public
                self._socket.curve_secretkey = secret
                self._socket.curve_serverkey = load_key(keys / SERVER_KEY, keys)[0]
            # Metadata first: a publisher waiting for a face subscription then has both.
            suffix = "" if stream is None else stream
            self._socket.subscribe(f"meta/{suffix}")
            self._socket.subscribe(f"face/{suffix}" + ("" if stream is None else "/"))
            self._socket.connect(endpoint)
        except zmq.ZMQError as error:
            self.close()
            raise FacetrackError(f"cannot subscribe to {endpoint}: {error.strerror}") from None
        except FacetrackError:
            self.close()
            raise

    def receive(self, timeout: float | None = None) -> Message | None:
        """The next message, or None after ``timeout`` seconds (None: wait for ever)."""
        if self._socket.closed:
            raise ValueError("this Subscriber is closed")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            if not self._socket.poll(None if wait is None else int(wait * 1000)):
                return None
            message = self._decode(self._socket.recv_multipart(zmq.NOBLOCK))
            if message is not None:
                return message

    def __iter__(self) -> Iterator[Message]:
        while True:
            message = self.receive()
            if message is not None:
                yield message

    def close(self) -> None:
        self._socket.close(linger=0)
        self._context.term()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _decode(self, parts: list[bytes]) -> Message | None:
        """A message from its frames; None (and counted) when it is not one we understand."""
        try:
            topic, payload = parts
            kind, stream, *_ = topic.decode().split("/")
            if self.stream is not None and stream != self.stream:
                return None  # a prefix match: meta/0 also matches meta/01
            data = decode_payload(payload)
            return face_from_payload(data) if kind == "face" else meta_from_payload(data)
        except (ValueError, TypeError, KeyError, msgpack.UnpackException):
            self.invalid += 1
            return None


def decode_payload(payload: bytes) -> dict:
    """A payload in either format: JSON objects start with '{', msgpack maps never do."""
    data = orjson.loads(payload) if payload[:1] == b"{" else msgpack.unpackb(payload)
    if not isinstance(data, dict):
        raise TypeError("payload is not a map")
    return data


def face_from_payload(data: dict) -> FaceMessage:
    rotation, translation, identity = (data.get(k) for k in ("rotation", "translation",
                                                             "identity"))
    return FaceMessage(
        stream=str(data["stream"]), track=int(data["track"]), frame=int(data["frame"]),
        time=float(data["time"]), status=str(data["status"]),
        rotation=None if rotation is None else np.asarray(rotation, dtype=float).reshape(3, 3),
        translation=(None if translation is None
                     else np.asarray(translation, dtype=float).reshape(3)),
        expression=dict(data.get("expression") or {}), arkit=dict(data.get("arkit") or {}),
        identity=None if identity is None else np.asarray(identity, dtype=float),
        payload=data)


def meta_from_payload(data: dict) -> MetaMessage:
    if data.get("type") != "meta":
        raise ValueError("not a metadata message")
    return MetaMessage(
        stream=str(data["stream"]), schema=int(data["schema"]), image_size=data.get("image_size"),
        intrinsics=data.get("intrinsics"), expression_names=list(data["expression_names"]),
        arkit_names=list(data.get("arkit_names", [])),
        identity={int(track): np.asarray(values, dtype=float)
                  for track, values in (data.get("identity") or {}).items()},
        payload=data)


# Camera (OpenCV: x right, y down, z forward) to the engines' camera axes, and the ICT model
# (x = the subject's left, y up, z out of the face) to the engines' head axes.
_CAMERA_TO_UNITY = np.diag([1.0, -1.0, 1.0])
_MODEL_TO_UNITY = np.diag([-1.0, 1.0, 1.0])
_CAMERA_TO_UNREAL = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
_MODEL_TO_UNREAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


class UnityPose(NamedTuple):
    position: np.ndarray  # (3,) metres
    rotation: np.ndarray  # (4,) quaternion x, y, z, w (Unity's Quaternion field order)


class UnrealPose(NamedTuple):
    location: np.ndarray  # (3,) centimetres
    rotator: np.ndarray  # (3,) degrees: pitch, yaw, roll (FRotator's argument order)
    quaternion: np.ndarray  # (4,) x, y, z, w (FQuat's field order)


def to_unity(rotation: np.ndarray, translation: np.ndarray) -> UnityPose:
    """The head pose as a Unity transform local to the camera that filmed it.

    Unity is left-handed, y up, metres. The camera's frame: x right on screen, y up, z forward
    (Unity cameras look along +z), so set the head's ``localPosition``/``localRotation`` under
    the Camera's transform. The head's frame is a Unity character's: +z out of the face, +y
    up, +x the subject's right. A frontal face 60 cm in front of the camera is at (0, 0, 0.6)
    with rotation (0, 1, 0, 0): turned 180° about y, looking back at the camera. Not mirrored:
    when the subject turns to their left, the head turns toward screen right, as filmed.
    """
    matrix = _CAMERA_TO_UNITY @ np.asarray(rotation, dtype=float) @ _MODEL_TO_UNITY.T
    position = _CAMERA_TO_UNITY @ np.asarray(translation, dtype=float) / 100.0
    return UnityPose(position, Rotation.from_matrix(matrix).as_quat())


def to_unreal(rotation: np.ndarray, translation: np.ndarray) -> UnrealPose:
    """The head pose as an Unreal transform relative to the camera that filmed it.

    Unreal is left-handed, z up, x forward, y right, centimetres. The camera's frame: +x the
    way it looks, +y screen right, +z screen up (a CameraComponent's own axes). The head's
    frame is an Unreal character's: +x out of the face, +y the subject's right, +z up.
    ``rotator`` is FRotator(pitch, yaw, roll) in degrees, as Unreal's ``FRotationMatrix``
    applies them: yaw about z turns x toward y, pitch about y lifts x toward z, roll about x
    turns z toward y. A frontal face 60 cm in front of the camera is at (60, 0, 0) with
    rotator (0, ±180, 0): looking back at the camera.
    """
    matrix = _CAMERA_TO_UNREAL @ np.asarray(rotation, dtype=float) @ _MODEL_TO_UNREAL.T
    location = _CAMERA_TO_UNREAL @ np.asarray(translation, dtype=float)
    turn = Rotation.from_matrix(matrix)
    # Unreal's matrix for (pitch P, yaw Y, roll R) is Rz(Y) @ Ry(-P) @ Rx(-R) in standard
    # right-handed terms, so scipy's intrinsic ZYX angles are (Y, -P, -R).
    yaw, minus_pitch, minus_roll = turn.as_euler("ZYX", degrees=True)
    return UnrealPose(location, np.array([-minus_pitch, yaw, -minus_roll]), turn.as_quat())
