"""Relay Facetrack's ZeroMQ stream to Godot as JSON over UDP (Godot has no ZeroMQ).

    .venv/bin/python docs/clients/godot/relay.py [ENDPOINT] [--to 127.0.0.1:9870]

One datagram per message: the payload as JSON (docs/protocol.md); metadata has "type": "meta".
"""

from __future__ import annotations

import argparse
import contextlib
import socket

import orjson

from streams.publisher import DEFAULT_ENDPOINT
from streams.subscriber import Subscriber


def main() -> None:
    parser = argparse.ArgumentParser(description="Facetrack to Godot over UDP")
    parser.add_argument("endpoint", nargs="?", default=DEFAULT_ENDPOINT)
    parser.add_argument("--to", default="127.0.0.1:9870", help="Godot's HOST:PORT")
    parser.add_argument("--stream", help="only this stream")
    args = parser.parse_args()
    host, port = args.to.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, \
            Subscriber(args.endpoint, args.stream) as subscriber:
        for message in subscriber:
            udp.sendto(orjson.dumps(message.payload), (host, int(port)))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
