"""The source's sound in the annotated video: `facetrack run --output` on real footage."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from cli_helpers import facetrack_ok
from stream_helpers import decoded, sound, video_end, write_video


def test_the_sound_is_copied_in_step_with_the_frames(footage_dir: Path, tmp_path: Path) -> None:
    """An HEVC clip whose AAC track starts 2.4 s in: the annotated MP4 has the same packets,
    starting as far into the video, and ending with the source's sound."""
    source = footage_dir / "face_noface.mov"
    output = tmp_path / "annotated.mp4"
    facetrack_ok("run", "--source", str(source), "--output", str(output), "--quiet")
    codec, start, end, packets = sound(output)
    original = sound(source)
    assert codec == original[0] == "aac"
    assert packets == original[3]  # copied, not re-encoded
    # MP4 keeps an audio track's start in its edit list, to the millisecond.
    assert abs(start - 2.4018) < 0.002 and abs(end - original[2]) < 0.002
    assert abs(end - video_end(output)) < 0.05


def test_an_mp3_track_loses_only_what_comes_before_the_first_frame(footage_dir: Path,
                                                                  tmp_path: Path) -> None:
    source = footage_dir / "single_face.mp4"  # its first MP3 packet starts 11 ms before 0
    output = tmp_path / "annotated.mp4"
    facetrack_ok("run", "--source", str(source), "--output", str(output), "--quiet")
    codec, start, end, packets = sound(output)
    assert codec.startswith("mp3") and packets == sound(source)[3][1:]
    assert 0 <= start < 0.03 and abs(end - video_end(output)) < 0.05


def test_no_audio_leaves_the_sound_out(footage_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "silent.mp4"
    facetrack_ok("run", "--source", str(footage_dir / "single_face.mp4"), "--output",
                 str(output), "--no-audio", "--quiet")
    assert sound(output) is None and video_end(output) > 2.3


def test_a_sound_the_container_cannot_hold_is_re_encoded(footage_dir: Path,
                                                         tmp_path: Path) -> None:
    """FLAC does not go into a MOV file: it becomes AAC there, as long as the frames and
    as loud at each moment as the source."""
    clip = footage_dir / "single_face.mp4"
    source, output = tmp_path / "flac.mkv", tmp_path / "annotated.mov"
    write_video(source, decoded(clip), sound=clip, sound_codec="flac")
    facetrack_ok("run", "--source", str(source), "--output", str(output), "--quiet")
    codec, start, end, _ = sound(output)
    assert codec == "aac" and start < 0.01 and abs(end - video_end(output)) < 0.05
    heard, played = _loudness(source), _loudness(output)
    count = min(len(heard), len(played))
    assert abs(len(heard) - len(played)) <= 2
    assert np.corrcoef(heard[:count], played[:count])[0, 1] > 0.95


def _loudness(path: Path, window: float = 0.05) -> np.ndarray:
    """The RMS of the first audio track, mixed to mono, over windows of WINDOW seconds."""
    with av.open(str(path)) as container:
        rate = container.streams.audio[0].rate
        mono = av.AudioResampler(format="flt", layout="mono", rate=rate)
        samples = np.concatenate([mixed.to_ndarray()[0] for frame in container.decode(audio=0)
                                  for mixed in mono.resample(frame)])
    size = round(rate * window)
    windows = samples[: len(samples) // size * size].reshape(-1, size).astype(float)
    return np.sqrt((windows ** 2).mean(axis=1))
