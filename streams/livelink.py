"""Unreal Engine's Live Link Face source: the first tracked face of every frame as the UDP
datagram Epic's Live Link Face app sends, so Unreal's Live Link (MetaHumans, ARKit-curve
characters) takes Facetrack as it takes the app, with no plugin (docs/livelink.md).

A datagram, in network byte order: the packet version (uint8, 6); the device id and the subject
name, each an int32 length then UTF-8; the frame time (int32 frame, float32 sub-frame, int32
rate numerator and denominator); the value count (uint8, 61); the 61 values as float32, those
of a Live Link Face CSV row (`streams.exports.llf_values`).
"""

from __future__ import annotations

import math
import socket
import struct
import uuid

from streams.exports import TIMECODE_FPS, llf_values
from streams.recording import tracked_face
from streams.udp import UDPSender

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 11111  # where Unreal's Live Link Face source listens
PACKET_VERSION = 6


def livelink_packet(face: dict, seconds: float, subject: str, device: str) -> bytes:
    """The datagram of a record's FACE, SECONDS after the first frame sent; frames are counted
    at `TIMECODE_FPS`, as in the CSV."""
    values = llf_values(face)
    subframe, frame = math.modf(max(seconds, 0.0) * TIMECODE_FPS)
    return b"".join([
        struct.pack("!B", PACKET_VERSION), _string(device), _string(subject),
        struct.pack("!ifii", int(frame), subframe, TIMECODE_FPS, 1),
        struct.pack(f"!B{len(values)}f", len(values), *values)])


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!i", len(data)) + data


class LiveLinkSender(UDPSender):
    """A sink sending each frame's face to Unreal's Live Link at ``address`` (HOST[:PORT],
    default port 11111) as subject ``subject``, never waiting (`streams.udp.UDPSender`).

    The device id is the same for a machine and subject from run to run, so Unreal keeps
    one source for them. Frame times count from the first frame sent, as the CSV's do: a
    live source's times are a monotonic clock's, not a time of day."""

    def __init__(self, address: str, subject: str = "facetrack") -> None:
        super().__init__(address, "--livelink", DEFAULT_PORT)
        self.subject = subject
        self.device = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{subject}.{socket.gethostname()}"))
        self._start: float | None = None

    def send_frame(self, record: dict) -> None:
        """A frame without a tracked face sends nothing: Unreal holds the last pose."""
        face = tracked_face(record)
        if face is None:
            return
        if self._start is None:
            self._start = float(record["time"])
        self.send(livelink_packet(face, float(record["time"]) - self._start, self.subject,
                                  self.device))
