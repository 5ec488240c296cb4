"""ZeroMQ publisher: every face of every frame as one message on ``face/<stream>/<track>``, and
the stream's metadata on ``meta/<stream>`` (see docs/protocol.md).

It sits in the tracking loop, so nothing here may wait: sends never block, a subscriber whose
queue is full misses messages (counted in ``dropped``) while the others still get them, and
what peers send back is only read to spot new subscribers, never acted on beyond that.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import msgpack
import numpy as np
import orjson
import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from streams.errors import SinkError
from tracker.expressions import ARKIT_NAMES, to_arkit

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5570"
FORMATS = ("msgpack", "json")
SEND_HWM = 1000  # messages queued per subscriber: over 30 s of one face at 30 fps
LINGER_MS = 100  # close waits this long at most for queued messages
MAX_INCOMING_BYTES = 4096  # subscriptions are short; ZeroMQ disconnects a peer sending more
INCOMING_PER_FRAME = 64  # bounds the work a flood of subscriptions can put on one frame
IDENTITY_TOLERANCE = 0.05  # a track's identity moving further than this re-sends the metadata
IDENTITY_CHECK_FRAMES = 10  # how often that is checked: an identity settles over seconds
# Key files `facetrack keys` writes (zmq.auth certificates) and subscribers read.
SERVER_KEY = "server.key"
SERVER_SECRET = "server.key_secret"
CLIENT_SECRET = "client.key_secret"
CLIENTS_DIR = "clients"


class Publisher:
    """A sink publishing records on a ZeroMQ XPUB socket bound to ``endpoint``.

    ``allow_remote``: bind to addresses other machines can reach (refused otherwise, so a
    typo cannot expose the stream); ``curve``: a directory from ``facetrack keys`` that turns
    on CURVE encryption and admits only the client keys in its ``clients`` folder.
    """

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, stream: str = "0", fmt: str = "msgpack",
                 allow_remote: bool = False, curve: str | Path | None = None) -> None:
        if not stream or "/" in stream:
            raise SinkError(f"stream name {stream!r} must be non-empty and without '/'")
        if fmt not in FORMATS:
            raise SinkError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
        if problem := endpoint_problem(endpoint, binding=True):
            raise SinkError(f"cannot publish on {endpoint}: {problem}")
        if not allow_remote and not is_local(endpoint):
            raise SinkError(f"{endpoint} can be reached from other machines: add "
                            "--publish-any-host to publish there (and consider --curve)")
        self.stream = stream
        self.dropped = 0
        self._pack = _packer(fmt)
        self._face_topic = f"face/{stream}/"
        self._meta_topic = f"meta/{stream}".encode()
        self._meta: dict | None = None
        self._identities: dict[int, np.ndarray] = {}
        self._frames = 0
        self._context = zmq.Context()
        self._auth: ThreadAuthenticator | None = None
        self._socket = self._context.socket(zmq.XPUB)
        self._socket.setsockopt(zmq.IPV6, is_ipv6(endpoint))
        try:
            self._configure(curve)
            self._socket.bind(endpoint)
        except zmq.ZMQError as error:
            self.close()
            raise SinkError(f"cannot publish on {endpoint}: {error.strerror}") from None
        except SinkError:
            self.close()
            raise
        self.endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)

    def _configure(self, curve: str | Path | None) -> None:
        socket = self._socket
        socket.setsockopt(zmq.LINGER, LINGER_MS)
        socket.setsockopt(zmq.SNDHWM, SEND_HWM)
        socket.setsockopt(zmq.MAXMSGSIZE, MAX_INCOMING_BYTES)
        # Every subscription reaches us, not only the first per topic: late joiners need meta.
        socket.setsockopt(zmq.XPUB_VERBOSE, 1)
        # A full queue fails the send (zmq.Again) instead of skipping silently: see _send.
        socket.setsockopt(zmq.XPUB_NODROP, 1)
        if curve is None:
            return
        keys = Path(curve)
        public, secret = load_keypair(keys / SERVER_SECRET, keys)
        if not (keys / CLIENTS_DIR).is_dir():
            raise SinkError(f"no {CLIENTS_DIR} folder in {keys}: make keys with facetrack keys")
        self._auth = ThreadAuthenticator(self._context)
        self._auth.start()
        self._auth.configure_curve(domain="*", location=str(keys / CLIENTS_DIR))
        socket.curve_publickey = public
        socket.curve_secretkey = secret
        socket.curve_server = True

    def send_header(self, header: dict) -> None:
        """Publish the stream's metadata (the recording header's fields) and keep it for
        subscribers that join later."""
        self._meta = meta_message(header, self.stream)
        self._publish_meta()

    def send_frame(self, record: dict) -> None:
        """Publish each face of a frame record; answers new subscribers with the metadata."""
        # Each is called every frame: the first reads the subscriptions, the others keep state.
        wanted = self._serve_subscriptions()
        changed = self._identity_changed(record["faces"])
        if wanted | changed | self._camera_changed(record):
            self._publish_meta()
        frame, time = record["frame"], record["time"]
        for face in record["faces"]:
            self._send(f"{self._face_topic}{face['track']}".encode(),
                       self._pack(face_message(face, frame, time, self.stream)))

    def wait_for_subscribers(self, count: int) -> None:
        """Block until ``count`` subscriptions to this stream's faces have arrived: a run or a
        replay otherwise sends its first messages before its consumers have connected."""
        prefix = self._face_topic.encode()
        while count > 0:
            message = self._socket.recv()
            if message[:1] == b"\x01" and _overlaps(message[1:], prefix):
                count -= 1

    def close(self) -> None:
        if not self._socket.closed:
            self._socket.close(linger=LINGER_MS)
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        self._context.term()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _serve_subscriptions(self) -> bool:
        """Read what peers sent (never waiting); True when one subscribed to our metadata.
        Unsubscriptions and anything that is not a subscription are read and dropped."""
        wants_meta = False
        for _ in range(INCOMING_PER_FRAME):
            if not self._socket.getsockopt(zmq.EVENTS) & zmq.POLLIN:  # cheaper than zmq.Again
                break
            message = self._socket.recv(zmq.NOBLOCK)
            if message[:1] == b"\x01" and self._meta_topic.startswith(message[1:]):
                wants_meta = True
        return wants_meta and self._meta is not None

    def _camera_changed(self, record: dict) -> bool:
        """Take a frame's own size and intrinsics (a stream whose size changed, a photo) into
        the metadata; True when they differ from what subscribers have."""
        if "intrinsics" not in record or self._meta is None:
            return False
        camera = {"image_size": record["image_size"], "intrinsics": record["intrinsics"]}
        if all(self._meta.get(key) == value for key, value in camera.items()):
            return False
        self._meta.update(camera)
        return True

    def _identity_changed(self, faces: list[dict]) -> bool:
        """Track identities for the metadata; True when one is new or has moved noticeably."""
        changed = False
        self._frames += 1
        check = self._frames % IDENTITY_CHECK_FRAMES == 0
        current = {face["track"] for face in faces}
        for track in [t for t in self._identities if t not in current]:
            del self._identities[track]
        for face in faces:
            previous = self._identities.get(face["track"])
            if "identity" not in face or (previous is not None and not check):
                continue
            identity = np.asarray(face["identity"], dtype=float)
            if previous is None or np.abs(identity - previous).max() > IDENTITY_TOLERANCE:
                self._identities[face["track"]] = identity
                changed = True
        return changed and self._meta is not None

    def _publish_meta(self) -> None:
        assert self._meta is not None
        identity = {str(track): value for track, value in self._identities.items()}
        self._send(self._meta_topic, self._pack({**self._meta, "identity": identity}))

    def _send(self, topic: bytes, payload: bytes) -> None:
        try:
            self._socket.send(topic, zmq.SNDMORE | zmq.NOBLOCK)
        except zmq.Again:
            # Some subscriber's queue is full. Count it, then send in lossy mode, where ZeroMQ
            # skips the full queues: one stuck subscriber must not starve the others.
            self.dropped += 1
            self._socket.setsockopt(zmq.XPUB_NODROP, 0)
            try:
                self._socket.send(topic, zmq.SNDMORE | zmq.NOBLOCK)
            finally:
                self._socket.setsockopt(zmq.XPUB_NODROP, 1)
        # A multipart message goes out whole once its first part did.
        self._socket.send(payload, zmq.NOBLOCK)


def face_message(face: dict, frame: int, time: float, stream: str) -> dict:
    """A face record as published: with its frame, time, stream and the ARKit-52 view."""
    message = {**face, "frame": frame, "time": time, "stream": stream}
    expression = face.get("expression")
    if expression is not None:
        arkit = to_arkit(expression)
        message["arkit"] = dict(zip(ARKIT_NAMES, arkit.astype(float).round(4).tolist(),
                                    strict=True))
    return message


def meta_message(header: dict, stream: str) -> dict:
    """The metadata of a stream from a recording header (without identities, added per send).
    A source URL loses its user name and password: subscribers need not see them."""
    meta = {key: value for key, value in header.items() if key != "type"}
    meta["source"] = _without_credentials(str(header.get("source", "")))
    meta.update(type="meta", stream=stream,
                arkit_names=list(ARKIT_NAMES) if header.get("expression_names") else [])
    return meta


def endpoint_problem(endpoint: str, binding: bool) -> str | None:
    """Why ZeroMQ would take a tcp:// ENDPOINT and then never be reached there, or None: a
    port past 65535 (it silently wraps round to another), no port, or, to connect, a host
    name that does not resolve (ZeroMQ would retry it in silence for ever); or no transport
    at all (``5570``, ``localhost:5570``), which ZeroMQ calls only an invalid argument."""
    transport, scheme, address = endpoint.partition("://")
    if not scheme:
        return "a ZeroMQ endpoint names its transport, as in " + DEFAULT_ENDPOINT
    if transport != "tcp":
        return None  # ipc:// and the rest: ZeroMQ's own error says it
    host, _, port = address.rpartition(":")
    host = host.rpartition(";")[2].strip("[]")  # a connect may name its source: "src;host"
    wildcard = binding and port in ("*", "0")
    if not host or not (wildcard or (port.isdigit() and 1 <= int(port) <= 65535)):
        return "give a host and a port from 1 to 65535, as in " + DEFAULT_ENDPOINT
    if not binding:
        try:
            socket.getaddrinfo(host, int(port))
        except socket.gaierror:
            return f"no host {host} is known"
    return None


def is_ipv6(endpoint: str) -> bool:
    """Whether ENDPOINT names an IPv6 address (``tcp://[::1]:5570``), for ZeroMQ's IPV6 socket
    option: set only then, since with it on ZeroMQ names an IPv4 endpoint [::ffff:127.0.0.1]."""
    return "[" in endpoint


def is_local(endpoint: str) -> bool:
    """Whether only this machine can reach ``endpoint``: ipc://, inproc:// or loopback tcp."""
    transport, _, address = endpoint.partition("://")
    if transport in ("ipc", "inproc"):
        return True
    if transport != "tcp":
        return False
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "*", an interface name, a host name
        return False


def load_keypair(path: Path, keys: Path) -> tuple[bytes, bytes]:
    """(public, secret) of a zmq.auth certificate; a missing or broken file is a one-line
    error that says how to make keys."""
    public, secret = load_key(path, keys)
    if secret is None:
        raise SinkError(f"{path} holds no secret key: make keys with facetrack keys {keys}")
    return public, secret


def load_key(path: Path, keys: Path) -> tuple[bytes, bytes | None]:
    """(public, secret or None) of a zmq.auth certificate file."""
    try:
        return zmq.auth.load_certificate(path)
    except (OSError, ValueError):
        raise SinkError(f"no usable key {path}: make keys with facetrack keys {keys}") from None


def _overlaps(subscription: bytes, prefix: bytes) -> bool:
    """Whether a subscription prefix matches some topic starting with ``prefix``."""
    return prefix.startswith(subscription) or subscription.startswith(prefix)


def _without_credentials(source: str) -> str:
    parts = urlsplit(source)
    if "@" not in parts.netloc:
        return source
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _packer(fmt: str) -> Callable[[dict], bytes]:
    if fmt == "json":
        return lambda message: orjson.dumps(message, option=orjson.OPT_SERIALIZE_NUMPY)
    packer = msgpack.Packer(default=_plain)
    return packer.pack


def _plain(value: object) -> object:
    """numpy arrays and scalars as lists and floats, for msgpack."""
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"cannot publish a {type(value).__name__}")
