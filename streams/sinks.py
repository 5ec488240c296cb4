"""Where records go: `facetrack run` and `facetrack replay` both feed the sinks `open_sinks`
builds from their arguments, so an output added here works in both.

To add one (as streams/vmc.py did): give its class `send_header`, `send_frame`, `close` and
`dropped`, add its option in `add_sink_arguments` and one line in `open_sinks`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Protocol

from streams import livelink, vmc
from streams.publisher import DEFAULT_ENDPOINT, FORMATS, Publisher
from streams.recording import Recorder


class Sink(Protocol):
    """An output of per-frame records (tracker/records.py). It must not block the tracking
    loop longer than a file write: a network sink drops instead, and counts it."""

    dropped: int

    def send_header(self, header: dict) -> None: ...

    def send_frame(self, record: dict) -> None: ...

    def close(self) -> None: ...


class Sinks:
    """The sinks of one run, fed together; the header goes out once, before the first frame
    or, for a run that processed none, at the end."""

    def __init__(self, sinks: list[Sink]) -> None:
        self.sinks = sinks
        self.header_sent = False

    def send_header(self, header: dict) -> None:
        for sink in self.sinks:
            sink.send_header(header)
        self.header_sent = True

    def send_frame(self, record: dict) -> None:
        for sink in self.sinks:
            sink.send_frame(record)

    @property
    def dropped(self) -> int:
        return sum(sink.dropped for sink in self.sinks)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()

    def __bool__(self) -> bool:
        return bool(self.sinks)

    def __enter__(self) -> Sinks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def add_sink_arguments(parser: argparse.ArgumentParser) -> None:
    """The network outputs' options (``--record`` belongs to each command: it differs)."""
    group = parser.add_argument_group("publishing (docs/protocol.md)")
    group.add_argument("--publish", metavar="ENDPOINT", nargs="?", const=DEFAULT_ENDPOINT,
                       help=f"publish faces on a ZeroMQ endpoint (default {DEFAULT_ENDPOINT}; "
                            "ipc:///tmp/facetrack also works)")
    group.add_argument("--format", choices=FORMATS, default="msgpack",
                       help="payload encoding (default msgpack)")
    group.add_argument("--stream", default="0", metavar="NAME",
                       help="stream name in the topics, to tell several trackers apart "
                            "(default 0), and --livelink's subject (default facetrack)")
    group.add_argument("--publish-any-host", action="store_true",
                       help="allow an endpoint other machines can reach (tcp://0.0.0.0:5570)")
    group.add_argument("--curve", metavar="DIR",
                       help="encrypt, and admit only subscribers with a client key in DIR/clients "
                            "(keys from 'facetrack keys DIR')")
    group.add_argument("--wait-subscribers", type=int, default=0, metavar="N",
                       help="hold the first message until N subscribers have connected")
    group.add_argument("--vmc", metavar="HOST[:PORT]", nargs="?", const=vmc.DEFAULT_HOST,
                       help="send the first tracked face to a VMC receiver (VSeeFace...) over "
                            f"OSC/UDP (default {vmc.DEFAULT_HOST}:{vmc.DEFAULT_PORT}; "
                            "docs/vmc.md)")
    group.add_argument("--livelink", metavar="HOST[:PORT]", nargs="?",
                       const=livelink.DEFAULT_HOST,
                       help="send the first tracked face to Unreal Engine's Live Link as the "
                            "Live Link Face app does (default "
                            f"{livelink.DEFAULT_HOST}:{livelink.DEFAULT_PORT}; docs/livelink.md)")


def open_sinks(args: argparse.Namespace) -> Sinks:
    """Every sink the arguments ask for, opened; on a failure the ones opened are closed."""
    sinks = Sinks([])
    try:
        if args.record:
            sinks.sinks.append(Recorder(args.record))
        if args.publish:
            publisher = Publisher(args.publish, stream=args.stream, fmt=args.format,
                                  allow_remote=args.publish_any_host, curve=args.curve)
            sinks.sinks.append(publisher)
            if args.wait_subscribers > 0:
                print(f"facetrack: waiting for {args.wait_subscribers} subscriber(s) on "
                      f"{publisher.endpoint}", file=sys.stderr)
                publisher.wait_for_subscribers(args.wait_subscribers)
        if args.vmc:
            sinks.sinks.append(vmc.VMCSender(args.vmc))
        if args.livelink:
            subject = "facetrack" if args.stream == "0" else args.stream
            sinks.sinks.append(livelink.LiveLinkSender(args.livelink, subject))
    except BaseException:
        sinks.close()
        raise
    return sinks
