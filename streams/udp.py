"""Fire-and-forget UDP senders (`streams.vmc`, `streams.livelink`): a sink that sends one
datagram per frame and never waits on the network."""

from __future__ import annotations

import socket

from streams.errors import SinkError


def parse_address(address: str, option: str, default_port: int) -> tuple[str, int]:
    """HOST[:PORT] (IPv6 as [HOST]:PORT) as (host, port), the port DEFAULT_PORT when not given;
    a bad one is a one-line error naming OPTION."""
    host, port = address, str(default_port)
    if address.startswith("["):
        host, bracket, rest = address[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            host = ""  # unclosed, or junk after the bracket
        elif rest:
            port = rest[1:]
    elif address.count(":") == 1:
        host, port = address.split(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SinkError(f"bad {option} address {address!r}: use HOST or HOST:PORT "
                        f"(port 1-65535, default {default_port})")
    return host, int(port)


class UDPSender:
    """Sends datagrams to ADDRESS (HOST[:PORT]); what the socket cannot take at once is
    dropped and counted in ``dropped``. The host may be any address: a UDP sender opens no
    port. Subclasses make each frame's datagram in ``send_frame``."""

    def __init__(self, address: str, option: str, default_port: int) -> None:
        host, port = parse_address(address, option, default_port)
        try:
            family, kind, proto, _, target = socket.getaddrinfo(
                host, port, type=socket.SOCK_DGRAM)[0]
        except (socket.gaierror, UnicodeError) as error:
            raise SinkError(f"bad {option} address {address!r}: {error}") from None
        self.target = target
        self.dropped = 0
        self._socket = socket.socket(family, kind, proto)
        self._socket.setblocking(False)

    def send(self, datagram: bytes) -> None:
        try:
            self._socket.sendto(datagram, self.target)
        except OSError:  # a full buffer, or an ICMP error from an earlier send: drop it
            self.dropped += 1

    def send_header(self, header: dict) -> None:
        """No stream metadata goes out: nothing to send."""

    def close(self) -> None:
        self._socket.close()
