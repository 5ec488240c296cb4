"""``facetrack listen``, ``replay`` and ``keys``: the other ends of the ZeroMQ stream (see
docs/protocol.md), for checking a stream, re-sending a recording and making CURVE keys."""

from __future__ import annotations

import argparse
import contextlib
import csv
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

import zmq.auth

from streams.errors import FacetrackError, SinkError
from streams.publisher import (
    CLIENT_SECRET,
    CLIENTS_DIR,
    DEFAULT_ENDPOINT,
    SERVER_SECRET,
)
from streams.recording import STDOUT, read_records, to_devnull
from streams.sinks import Sinks, add_sink_arguments, open_sinks
from streams.subscriber import FaceMessage, Message, MetaMessage, Subscriber
from tracker.cli import stop_signals_as_interrupt, warn
from tracker.expressions import ICT_EXPRESSION_NAMES
from tracker.pose import angles

QUIET_SECONDS = 5.0  # listen says so when nothing has come by then
CSV_COLUMNS = ("frame", "time", "stream", "track", "status", "yaw", "pitch", "roll",
               "x_cm", "y_cm", "z_cm", *ICT_EXPRESSION_NAMES)


def add_listen_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("listen",
                       description="Subscribe to a facetrack publisher and print one line per "
                                   "face message (or write CSV). Ctrl-C ends.")
    p.add_argument("endpoint", nargs="?", default=DEFAULT_ENDPOINT,
                   help=f"publisher endpoint (default {DEFAULT_ENDPOINT})")
    p.add_argument("--csv", metavar="FILE",
                   help="write rows to FILE instead of printing (-: as CSV to standard output)")
    p.add_argument("--stream", metavar="NAME", help="only this stream (default: all)")
    p.add_argument("--curve", metavar="DIR",
                   help="keys from 'facetrack keys' (server.key, client.key_secret)")
    p.set_defaults(func=_listen)


def add_replay_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay",
                       description="Send a recording's frames to the sinks (as 'facetrack run' "
                                   "would have) at the pace of their time stamps.")
    p.add_argument("recording", metavar="FILE.jsonl", help="a recording from 'facetrack run'")
    p.add_argument("--speed", type=float, default=1.0,
                   help="play faster (2) or slower (0.5) than recorded (default 1)")
    add_sink_arguments(p)
    p.set_defaults(func=_replay, record=None)


def add_keys_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keys",
                       description="Write a server and a client key pair into DIR; the "
                                   "client's public key goes into DIR/clients, the folder of "
                                   "keys the publisher admits.")
    p.add_argument("dir", metavar="DIR", help="folder for the keys (made if missing)")
    p.set_defaults(func=_keys)


def _listen(args: argparse.Namespace) -> int:
    received, status = 0, 0
    described: dict[str, str] = {}  # per stream; a new identity alone resends the metadata
    with Subscriber(args.endpoint, args.stream, args.curve) as subscriber:
        print(f"facetrack: listening on {args.endpoint}", file=sys.stderr, flush=True)
        output = _open_csv(args.csv) if args.csv else sys.stdout
        try:
            show = _csv_writer(output) if args.csv else _print_line(output)
            with stop_signals_as_interrupt():  # the rows received so far written out, exit 130
                for message in _messages(subscriber, args.endpoint, args.stream):
                    if isinstance(message, MetaMessage):
                        line = _describe(message)
                        if described.get(message.stream) != line:
                            print(line, file=sys.stderr, flush=True)
                        described[message.stream] = line
                        continue
                    show(message)
                    received += 1
        except KeyboardInterrupt:
            status = 130
        except BrokenPipeError:  # the reader went away (`facetrack listen | head`): done
            to_devnull(output)
        except OSError as error:  # a full disk
            raise SinkError(f"cannot write {args.csv or 'standard output'}: "
                            f"{error.strerror}") from None
        finally:
            if output is not sys.stdout:
                with contextlib.suppress(OSError):  # each row was flushed, or its error raised
                    output.close()
    print(f"facetrack: {received} face messages", file=sys.stderr)
    return status


def _messages(subscriber: Subscriber, endpoint: str, stream: str | None) -> Iterator[Message]:
    """SUBSCRIBER's messages; one line on stderr when none has come in QUIET_SECONDS, since
    pub/sub waits in silence for a publisher that is not running, or sends elsewhere."""
    first = subscriber.receive(timeout=QUIET_SECONDS)
    if first is None:
        sent = f"stream {stream} on {endpoint}" if stream else endpoint
        print(f"facetrack: nothing yet in {QUIET_SECONDS:g} s; still listening (is a "
              f"'facetrack run --publish' or 'replay --publish' sending {sent}?)",
              file=sys.stderr, flush=True)
    else:
        yield first
    yield from subscriber


def _open_csv(path: str) -> TextIO:
    if path == STDOUT:
        return sys.stdout
    try:
        return open(path, "w", newline="")  # noqa: SIM115 (closed by _listen)
    except OSError as error:
        raise SinkError(f"cannot write {path}: {error.strerror}") from None


def _describe(meta: MetaMessage) -> str:
    payload = meta.payload
    return (f"facetrack: stream {meta.stream}: {payload.get('source')}, "
            f"regressor {payload.get('regressor')}, {len(meta.expression_names)} expressions")


def _pose(message: FaceMessage) -> tuple[list[float], list[float]]:
    if message.rotation is None or message.translation is None:
        return [], []
    return angles(message.rotation).tolist(), message.translation.tolist()


def _print_line(output: TextIO) -> Callable[[FaceMessage], None]:
    def show(message: FaceMessage) -> None:
        line = (f"{message.frame:6d} {message.time:9.3f}s  stream {message.stream} "
                f"track {message.track}  {message.status:8s}")
        turn, position = _pose(message)
        if turn:
            line += "  yaw {:6.1f} pitch {:6.1f} roll {:6.1f}".format(*turn)
            line += "  x {:6.1f} y {:6.1f} z {:6.1f} cm".format(*position)
        top = sorted(message.expression.items(), key=lambda item: -item[1])[:3]
        line += "".join(f"  {name} {value:.2f}" for name, value in top)
        print(line, file=output, flush=True)
    return show


def _csv_writer(output: TextIO) -> Callable[[FaceMessage], None]:
    writer = csv.writer(output)
    writer.writerow(CSV_COLUMNS)

    def show(message: FaceMessage) -> None:
        turn, position = _pose(message)
        expression = [message.expression.get(name, "") for name in ICT_EXPRESSION_NAMES]
        writer.writerow([message.frame, message.time, message.stream, message.track,
                         message.status, *(turn or [""] * 3), *(position or [""] * 3),
                         *expression])
        output.flush()  # an interrupted listen keeps every row
    return show


def _replay(args: argparse.Namespace) -> int:
    warnings: list[str] = []
    header, records = read_records(args.recording, warnings)
    if args.speed <= 0:
        raise FacetrackError(f"--speed must be positive, got {args.speed}")
    if not (args.publish or args.vmc or args.livelink):
        raise FacetrackError("nothing to replay to: add --publish ENDPOINT, --vmc HOST and/or "
                             "--livelink HOST")
    with open_sinks(args) as sinks:
        replay(header, records, sinks, args.speed)
    return warn(warnings)


def replay(header: dict, records: list[dict], sinks: Sinks, speed: float = 1.0) -> None:
    """Send a recording to sinks, each frame when its ``time`` (relative to the first frame,
    divided by ``speed``) comes; a replay that falls behind sends late, never skips."""
    sinks.send_header(header)
    started = time.perf_counter()
    first = records[0]["time"] if records else 0.0
    for record in records:
        delay = (record["time"] - first) / speed - (time.perf_counter() - started)
        if delay > 0:
            time.sleep(delay)
        sinks.send_frame(record)


def _keys(args: argparse.Namespace) -> int:
    keys = Path(args.dir)
    if (keys / SERVER_SECRET).exists():
        raise FacetrackError(f"{keys} already holds keys: choose another folder")
    try:
        (keys / CLIENTS_DIR).mkdir(parents=True, exist_ok=True)
        zmq.auth.create_certificates(keys, "server")
        public, secret = zmq.auth.create_certificates(keys, "client")
        shutil.move(public, keys / CLIENTS_DIR / Path(public).name)
        for path in (keys / SERVER_SECRET, Path(secret)):
            path.chmod(0o600)  # secret keys: readable by their owner only
    except OSError as error:
        raise FacetrackError(f"cannot write keys in {keys}: {error.strerror}") from None
    print(f"facetrack: keys in {keys}: publish with --curve {keys}; give subscribers "
          f"{keys / 'server.key'} and {keys / CLIENT_SECRET}", file=sys.stderr)
    return 0
