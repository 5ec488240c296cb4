"""The source's sound in the annotated video: a file's first audio track, read by a demuxer of
its own and muxed in step with the annotated frames, so the video plays with its sound in sync
and ends where its frames end (a stopped run, a truncated file)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import av

from streams.sources import Source, VideoSource

log = logging.getLogger("facetrack.audio")

ENCODER = "aac"  # for a track the output's container cannot hold as it is


class AudioCopy:
    """Audio packets of PATH's first audio track, with times from ORIGIN (seconds of the file's
    clock at the video's first frame, where the annotated video's time is 0).

    The packets are copied unchanged where the output's container takes their codec (AAC or
    MP3 into MP4), and re-encoded as AAC where it does not (FLAC into MOV). A packet before the
    video's start is left out."""

    def __init__(self, path: str | Path, origin: float) -> None:
        self.path = Path(path)
        self._input = av.open(str(self.path))
        try:
            self._track = self._input.streams.audio[0]
        except IndexError:  # no audio track: nothing to hold open
            self._input.close()
            raise
        self._offset = round(origin / self._track.time_base)  # in the track's time base
        self._output: av.container.OutputContainer | None = None
        self._stream: av.audio.stream.AudioStream | None = None
        self._copy = True
        self._packets = self._demuxed()
        self._next = next(self._packets, None)

    def add_to(self, output: av.container.OutputContainer) -> None:
        """Add the track to OUTPUT, before its first packet (which writes the header)."""
        self._copy = _takes(output.format.name, self._track)
        if self._copy:
            self._stream = output.add_stream_from_template(self._track)
        else:
            self._stream = output.add_stream(ENCODER, rate=self._track.rate,
                                             layout=self._track.layout)
            log.info("%s: audio %s re-encoded as %s for %s", self.path.name,
                     self._track.codec_context.name, ENCODER, output.format.name)
        self._output = output

    def until(self, time: float) -> None:
        """Mux every packet that starts before TIME seconds of the annotated video."""
        end = round(time / self._track.time_base)
        while self._next is not None and self._next.pts < end:
            packet, self._next = self._next, next(self._packets, None)
            if self._copy:
                packet.stream = self._stream
                self._output.mux(packet)
            else:
                self._encode(packet)

    def finish(self, time: float) -> None:
        """Mux the track up to TIME and flush a re-encoding."""
        self.until(time)
        if not self._copy:
            self._output.mux(self._stream.encode(None))

    def close(self) -> None:
        self._input.close()

    def _encode(self, packet: av.Packet) -> None:
        for frame in self._track.codec_context.decode(packet):
            self._output.mux(self._stream.encode(frame))

    def _demuxed(self) -> Iterator[av.Packet]:
        """The track's packets with pts and dts from the video's start, from 0 on. Where the
        track's clock goes back (clips joined), its times run on from the packet before, as
        the video's do (`streams.sources.VideoSource`)."""
        shift = -self._offset
        last: av.Packet | None = None
        try:
            for packet in self._input.demux(self._track):
                if packet.pts is None:
                    continue  # the demuxer's flush packet, or one that cannot be placed
                if packet.dts is None:
                    packet.dts = packet.pts
                if last is not None and packet.dts + shift <= last.dts:
                    shift = last.dts + max(last.duration, 1) - packet.dts
                packet.pts += shift
                packet.dts += shift
                if packet.pts >= 0:
                    last = packet
                    yield packet
        except av.FFmpegError as error:
            log.warning("%s: the audio stops: %s", self.path.name, error)


def open_audio(source: Source) -> AudioCopy | None:
    """The audio of SOURCE when it is a video file with an audio track, else None. A live
    source's sound is not carried: its frames' times are the tracker's clock, not the
    stream's."""
    if not (isinstance(source, VideoSource) and not source.live
            and Path(source.name).is_file()):
        return None
    try:
        return AudioCopy(source.name, source.origin)
    except IndexError:  # no audio track
        return None
    except av.FFmpegError as error:
        log.warning("%s: its audio is left out: %s", source.name, error)
        return None


def _takes(container_format: str, track: av.audio.stream.AudioStream) -> bool:
    """Whether FFmpeg writes TRACK's codec, as it is, into a CONTAINER_FORMAT file: the
    header of an empty file in memory tells."""
    with av.open(io.BytesIO(), "w", format=container_format) as probe:
        try:
            probe.add_stream_from_template(track)
            probe.start_encoding()
        except (av.FFmpegError, ValueError):
            return False
    return True
