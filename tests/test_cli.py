"""The ``facetrack`` command as a user runs it: a real subprocess on real files."""

from __future__ import annotations

import contextlib
import gzip
import json
import shutil
import signal
import subprocess
import sys
import time
import zipfile
import zlib
from importlib.metadata import version
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from streams.errors import SinkError
from streams.recording import read_records
from tracker import run as run_command
from tracker import solution
from tracker.cli import COMMANDS, build_parser, main
from tracker.face_model import FaceModel
from tracker.regressor import DEFAULT_MODEL, Manifest

from cli_helpers import FACETRACK, assert_one_line_error, facetrack, facetrack_ok
from stream_helpers import decoded, mpegts, sound, video_end, write_video


def test_version_names_what_a_bug_report_needs() -> None:
    """`facetrack --version`: one line on standard output with facetrack's version, the
    committed regressor's (from its manifest) and the libraries' it runs on."""
    result = facetrack_ok("--version")
    assert result.stdout.startswith(f"facetrack {version('facetrack')}, regressor "
                                    f"{Manifest.load(DEFAULT_MODEL).model_version}; ")
    for library in ("mediapipe", "onnxruntime", "av"):
        assert f" {library} {version(library)}" in result.stdout
    assert result.stdout.count("\n") == 1 and result.stderr == ""


def test_record_of_a_video(footage_dir: Path, tmp_path: Path) -> None:
    record = tmp_path / "faces.jsonl"
    result = facetrack("run", "--source", str(footage_dir / "single_face.mp4"),
                       "--record", str(record), "--record-landmarks")
    assert result.returncode == 0, result.stderr
    header, frames = read_records(record)
    assert header["schema"] == 1 and header["image_size"] == [640, 360]
    assert header["intrinsics"]["assumed"] is True
    assert header["intrinsics"]["cx"] == 320
    assert [f["frame"] for f in frames] == list(range(72))
    times = [f["time"] for f in frames]
    assert times == sorted(times) and abs(times[1] - times[0] - 1 / 30) < 1e-3
    face = frames[10]["faces"][0]
    assert face["track"] == 0 and face["status"] == "tracking"
    assert len(face["landmarks"]) == 478 and len(face["landmarks"][0]) == 3


def test_clips_joined_with_their_clocks_restarting_and_another_size(footage_dir: Path,
                                                                     tmp_path: Path) -> None:
    """Two MPEG-TS clips joined (as `cat a.ts b.ts` or a camera's stream after a reset gives):
    the second's clock starts again at 0 and its frames are smaller. The run goes on (it ended
    in a traceback from the smoother: time went back); times run on; the frames of the new
    size carry their own size and intrinsics, as the header has the first's; the sound of both
    clips runs on with the frames."""
    clip = footage_dir / "single_face.mp4"
    images = decoded(clip, 20)
    source = tmp_path / "joined.ts"
    source.write_bytes(mpegts(images, sound=clip)
                       + mpegts([cv2.resize(image, (480, 270)) for image in images], sound=clip))
    record, output = tmp_path / "joined.jsonl", tmp_path / "joined.mp4"
    result = facetrack_ok("run", "--source", str(source), "--record", str(record),
                          "--output", str(output), "--quiet")
    assert "timestamps go back at frame 20" in result.stderr
    header, frames = read_records(record)
    times = [frame["time"] for frame in frames]
    assert len(frames) == 40 and (np.diff(times) > 0.03).all()
    assert header["image_size"] == [640, 360]
    assert [frame.get("image_size") for frame in frames] == [None] * 20 + [[480, 270]] * 20
    assert {frame["intrinsics"]["cx"] for frame in frames[20:]} == {240}
    assert all(frame["faces"][0]["status"] == "tracking" for frame in frames[22:])
    with av.open(str(output)) as video:
        assert sum(1 for _ in video.decode(video=0)) == 40
    assert abs(sound(output)[2] - video_end(output)) < 0.05


def test_a_record_to_standard_output(footage_dir: Path, tmp_path: Path) -> None:
    """--record -: the record's lines on standard output, nothing else there, to pipe into
    another program; a batch's records one after the other, each with its header."""
    video = footage_dir / "single_face.mp4"
    takes = tmp_path / "takes"
    takes.mkdir()
    for name in ("a.mp4", "b.mp4"):
        shutil.copy(video, takes / name)
    lines = [json.loads(line) for line in
             facetrack_ok("run", "--source", str(takes), "--record", "-").stdout.splitlines()]
    assert [line["source"] for line in lines if line.get("type") == "header"] == [
        str(takes / "a.mp4"), str(takes / "b.mp4")]
    assert len(lines) == 2 * 73 and not (Path.cwd() / "-").exists()
    assert lines[1:73] == lines[74:]  # the same video twice, tracked the same
    assert [line["frame"] for line in lines[1:73]] == list(range(72))
    assert all(line["faces"][0]["status"] == "tracking" for line in lines[1:73])


def test_a_record_reader_that_stops_ends_the_run_quietly(footage_dir: Path,
                                                        tmp_path: Path) -> None:
    """`--record - | head`: when the reader has had enough the run ends there, with no error
    and exit status 0, its other outputs whole; a batch stops there too."""
    takes, out = tmp_path / "takes", tmp_path / "annotated"
    takes.mkdir()
    for name in ("a.mp4", "b.mp4"):
        shutil.copy(footage_dir / "single_face.mp4", takes / name)
    process = subprocess.Popen([FACETRACK, "run", "--source", str(takes), "--record", "-",
                                "--output", f"{out}/", "--quiet"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = [json.loads(process.stdout.readline()) for _ in range(6)]  # header, 5 frames
    process.stdout.close()
    assert process.wait(timeout=120) == 0
    assert process.stderr.read() == ""
    assert lines[0]["type"] == "header" and lines[5]["frame"] == 4
    assert 5 <= len(decoded(out / "a.mp4")) < 72  # those written before the reader left
    assert not (out / "b.mp4").exists()


def test_a_gzip_record(footage_dir: Path, tmp_path: Path) -> None:
    """--record NAME.jsonl.gz: the same lines, compressed; export and replay read it."""
    plain, packed = tmp_path / "faces.jsonl", tmp_path / "faces.jsonl.gz"
    for record in (plain, packed):
        facetrack_ok("run", "--source", str(footage_dir / "single_face.mp4"), "--quiet",
                     "--record", str(record))
    assert gzip.decompress(packed.read_bytes()) == plain.read_bytes()
    assert packed.stat().st_size < plain.stat().st_size / 3
    for record in (plain, packed):
        facetrack_ok("export", str(record), "--csv", str(record.with_suffix(".csv")))
    assert plain.with_suffix(".csv").read_text() == packed.with_suffix(".csv").read_text()
    wrong = tmp_path / "plain.jsonl.gz"
    wrong.write_bytes(plain.read_bytes())
    assert_one_line_error(facetrack("replay", str(wrong), "--publish"), "not gzip data")


def test_a_gzip_record_of_a_killed_run_keeps_its_frames(footage_dir: Path,
                                                        tmp_path: Path) -> None:
    """SIGKILL leaves the .gz without its end: every frame flushed before reads back, with a
    warning (exit status 1)."""
    record = tmp_path / "live.jsonl.gz"
    process = subprocess.Popen(
        [FACETRACK, "run", "--source", str(footage_dir / "WolfgangLanger_Pexels.mp4"),
         "--realtime", "--quiet", "--record", str(record)])
    frames: list[dict] = []
    deadline = time.monotonic() + 60
    while len(frames) < 20 and time.monotonic() < deadline:
        time.sleep(0.2)
        with contextlib.suppress(SinkError):  # not there yet, or no line flushed yet
            frames = read_records(record, [])[1]
    process.kill()
    process.wait(timeout=30)
    warnings: list[str] = []
    _, frames = read_records(record, warnings)
    assert 20 <= len(frames) < 472 and [f["frame"] for f in frames] == list(range(len(frames)))
    assert warnings and "cut short" in warnings[0]
    result = facetrack("export", str(record), "--csv", str(tmp_path / "live.csv"))
    assert result.returncode == 1 and "cut short" in result.stderr
    assert len((tmp_path / "live.csv").read_text().splitlines()) == len(frames) + 1


def test_a_section_of_a_video(footage_dir: Path, tmp_path: Path) -> None:
    """--start 0:05 --end 7: the record and the annotated video (with its sound) hold the 48
    frames from 5 s up to 7 s, counted from 5 s, and the header says where that is."""
    record, output = tmp_path / "part.jsonl", tmp_path / "part.mp4"
    facetrack_ok("run", "--source", str(footage_dir / "WolfgangLanger_Pexels.mp4"), "--quiet",
                 "--start", "0:05", "--end", "7", "--record", str(record), "--output",
                 str(output))
    header, frames = read_records(record)
    assert header["start"] == 5.0 and header["frame_count"] == 48
    assert [frame["frame"] for frame in frames] == list(range(48))
    assert 0 <= frames[0]["time"] < 0.05 and 1.9 < frames[-1]["time"] < 2.0
    assert all(frame["faces"][0]["status"] == "tracking" for frame in frames)
    assert len(decoded(output)) == 48
    assert abs(sound(output)[2] - video_end(output)) < 0.05


@pytest.mark.parametrize(("source", "flags", "words"), [
    ("single_face.mp4", ["--start", "3", "--end", "2"], ["--end 2 s is not after --start 3 s"]),
    ("single_face.mp4", ["--start", "1:75"], ["--start", "not a time"]),
    ("single_face.mp4", ["--start", "30"], ["no frames from 30 s on"]),  # it lasts 2.4 s
    ("single_face.jpg", ["--end", "30"], ["need a video file"]),
])
def test_a_bad_section_is_one_line(footage_dir: Path, tmp_path: Path, source: str,
                                   flags: list[str], words: list[str]) -> None:
    result = facetrack("run", "--source", str(footage_dir / source),
                       "--record", str(tmp_path / "r.jsonl"), *flags)
    assert_one_line_error(result, *words)
    assert not (tmp_path / "r.jsonl").exists()


def test_a_large_video_tracked_at_a_smaller_size(footage_dir: Path, tmp_path: Path) -> None:
    """--max-size 640 on a clip at twice the footage's size: records and the annotated video
    at 640x360, the intrinsics those of that size, the face found in every frame."""
    large = tmp_path / "large.mp4"
    write_video(large, [cv2.resize(image, (1280, 720))
                        for image in decoded(footage_dir / "single_face.mp4", 30)])
    record, output = tmp_path / "faces.jsonl", tmp_path / "out.mp4"
    facetrack_ok("run", "--source", str(large), "--max-size", "640", "--quiet",
                 "--record", str(record), "--output", str(output))
    header, frames = read_records(record)
    assert header["image_size"] == [640, 360] and header["intrinsics"]["cx"] == 320
    assert all(frame["faces"][0]["status"] == "tracking" for frame in frames)
    assert {image.shape for image in decoded(output)} == {(360, 640, 3)}
    assert sound(output) is None  # a source without sound: a video without it
    result = facetrack("run", "--source", str(large), "--max-size", "640", "--focal", "900",
                       "--record", str(record))
    assert_one_line_error(result, "--focal", "--max-size")


def test_annotated_output_video(footage_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "annotated.mp4"
    result = facetrack("run", "--source", str(footage_dir / "single_face.mp4"),
                       "--output", str(output), "--quiet")
    assert result.returncode == 0, result.stderr
    with av.open(str(output)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    with av.open(str(footage_dir / "single_face.mp4")) as original:
        first = next(original.decode(video=0)).to_ndarray(format="rgb24")
    assert len(frames) == 72 and frames[0].shape == (360, 640, 3)
    # The overlay changed the picture (points, contours, status line), not the whole of it.
    changed = (abs(frames[0].astype(int) - first.astype(int)).max(axis=2) > 60).mean()
    assert 0.002 < changed < 0.2


def test_hidden_layers(footage_dir: Path, tmp_path: Path) -> None:
    """--hide every layer: the frames come out as they went in; with --mesh, only the head
    changes, under the fitted mesh."""
    video = footage_dir / "single_face.mp4"
    originals = decoded(video, 15)
    hide = ["--hide", "landmarks,axes,ids,status", "--end", "0.5"]
    facetrack_ok("run", "--source", str(video), "--quiet", *hide,
                 "--output", str(tmp_path / "plain_%02d.png"))
    facetrack_ok("run", "--source", str(video), "--quiet", "--mesh", *hide,
                 "--record", str(tmp_path / "faces.jsonl"),
                 "--output", str(tmp_path / "mesh_%02d.png"))
    _, records = read_records(tmp_path / "faces.jsonl")
    assert len(records) == len(originals) == 15
    for number, (original, record) in enumerate(zip(originals, records, strict=True)):
        plain = cv2.cvtColor(cv2.imread(str(tmp_path / f"plain_{number:02d}.png")),
                             cv2.COLOR_BGR2RGB)
        assert (plain == original).all()
        meshed = cv2.cvtColor(cv2.imread(str(tmp_path / f"mesh_{number:02d}.png")),
                              cv2.COLOR_BGR2RGB)
        rows, columns = np.nonzero((meshed != original).any(axis=2))
        x0, y0, x1, y1 = record["faces"][0]["bbox"]
        width, height = x1 - x0, y1 - y0
        assert len(rows) > 0.2 * width * height
        # The head and neck: around the face found, down to the picture's edge.
        assert x0 - 0.3 * width < columns.min() and columns.max() < x1 + 0.3 * width
        assert y0 - 0.5 * height < rows.min()


@pytest.mark.parametrize(("detector", "faces"), [("auto", 5), ("short-range", 1)])
def test_a_group_photo_annotated_as_a_photo(footage_dir: Path, tmp_path: Path, detector: str,
                                            faces: int) -> None:
    """Five people a few metres away: the short-range detector that suits a webcam finds one;
    for images the full-range one is the default and finds all five. `--output NAME.jpg`
    writes the annotated photo itself."""
    record, output = tmp_path / "group.jsonl", tmp_path / "group.jpg"
    facetrack_ok("run", "--source", str(footage_dir / "multi_face.jpg"), "--max-faces", "5",
                 "--detector", detector, "--record", str(record), "--output", str(output))
    _, (frame,) = read_records(record)
    assert sum(face["status"] == "tracking" for face in frame["faces"]) == faces
    annotated = cv2.imread(str(output))
    photo = cv2.imread(str(footage_dir / "multi_face.jpg"))
    assert annotated.shape == photo.shape
    changed = (abs(annotated.astype(int) - photo.astype(int)).max(axis=2) > 60).mean()
    assert 0.002 * faces < changed < 0.2


def test_each_photo_of_a_folder_is_searched_afresh(footage_dir: Path, tmp_path: Path) -> None:
    """Unrelated photos, the face on the left, then the right, then the left: a tracker that
    looked where the last photo's face was would miss the second."""
    portrait = cv2.imread(str(footage_dir / "single_face.jpg"))
    height, width = portrait.shape[:2]
    photos = tmp_path / "photos"
    photos.mkdir()
    for number, side in enumerate(["left", "right", "left"]):
        canvas = np.full((height, 2 * width, 3), 90, np.uint8)
        canvas[:, (width if side == "right" else 0):][:, :width] = portrait
        cv2.imwrite(str(photos / f"{number}_{side}.png"), canvas)
    record = tmp_path / "photos.jsonl"
    facetrack_ok("run", "--source", str(photos), "--record", str(record),
                 "--output", str(tmp_path / "annotated_%02d.png"))
    _, frames = read_records(record)
    centres = [[(face["bbox"][0] + face["bbox"][2]) / 2 for face in frame["faces"]
                if face["status"] == "tracking"] for frame in frames]
    assert [len(found) for found in centres] == [1, 1, 1]
    assert [x[0] > width for x in centres] == [False, True, False]
    assert sorted(p.name for p in tmp_path.glob("annotated_*.png")) == [
        "annotated_00.png", "annotated_01.png", "annotated_02.png"]


def test_each_photo_is_read_on_its_own(footage_dir: Path, tmp_path: Path) -> None:
    """A portrait, a group photo of another size, the portrait again: each photo's faces are
    all found by default, numbered from 0, left to right, none carried over or reported lost
    from the photo before, each read as it is alone (no smoothing or identity pooled across
    photos); each record names its photo with that photo's size and intrinsics."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, original in [("1.jpg", "single_face.jpg"), ("2.jpg", "multi_face.jpg"),
                           ("3.jpg", "single_face.jpg")]:
        shutil.copy(footage_dir / original, photos / name)
    facetrack_ok("run", "--source", str(photos), "--record", str(tmp_path / "photos.jsonl"))
    facetrack_ok("run", "--source", str(photos / "2.jpg"),
                 "--record", str(tmp_path / "alone.jsonl"))
    _, frames = read_records(tmp_path / "photos.jsonl")
    assert [frame["image"] for frame in frames] == [str(photos / n) for n in
                                                     ("1.jpg", "2.jpg", "3.jpg")]
    assert [frame["image_size"] for frame in frames] == [[572, 562], [1000, 667], [572, 562]]
    assert [frame["intrinsics"]["cx"] for frame in frames] == [286, 500, 286]
    assert [[(face["track"], face["status"]) for face in frame["faces"]] for frame in frames] == [
        [(0, "tracking")], [(n, "tracking") for n in range(5)], [(0, "tracking")]]
    lefts = [face["bbox"][0] for face in frames[1]["faces"]]
    assert lefts == sorted(lefts)
    assert frames[1]["faces"] == read_records(tmp_path / "alone.jsonl")[1][0]["faces"]
    assert frames[2]["faces"] == frames[0]["faces"]


def test_a_folder_of_photos_annotated_into_a_folder(footage_dir: Path, tmp_path: Path) -> None:
    """Each photo's annotated copy under the photo's own name and format, also after an
    unreadable photo, each the same as from a run on that photo alone."""
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(footage_dir / "single_face.jpg", photos / "1_portrait.jpg")
    (photos / "2_broken.png").write_bytes(b"not a PNG")
    cv2.imwrite(str(photos / "3_group.png"), cv2.imread(str(footage_dir / "multi_face.jpg")))
    result = facetrack("run", "--source", str(photos), "--output", f"{tmp_path / 'out'}/")
    assert result.returncode == 1 and "skipped unreadable image" in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["1_portrait.jpg",
                                                                    "3_group.png"]
    facetrack_ok("run", "--source", str(photos / "3_group.png"),
                 "--output", str(tmp_path / "alone.png"))
    group = cv2.imread(str(tmp_path / "out" / "3_group.png"))
    assert (group == cv2.imread(str(tmp_path / "alone.png"))).all()
    assert (group != cv2.imread(str(photos / "3_group.png"))).any(axis=2).mean() > 0.01


@pytest.mark.parametrize("case", ["shared names", "the photos' own folder"])
def test_photos_are_never_written_over(footage_dir: Path, tmp_path: Path, case: str) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(footage_dir / "single_face.jpg", tmp_path / folder / "face.jpg")
    if case == "shared names":
        result = facetrack("run", "--source", str(tmp_path / "*" / "face.jpg"),
                           "--output", f"{tmp_path / 'out'}/")
        assert_one_line_error(result, "share the names face.jpg")
    else:
        result = facetrack("run", "--source", str(tmp_path / "a"), "--output", str(tmp_path / "a"))
        assert_one_line_error(result, "written over")
    assert not (tmp_path / "out").exists()
    assert [p.read_bytes() for p in tmp_path.glob("*/face.jpg")] == [
        (footage_dir / "single_face.jpg").read_bytes()] * 2


def icc_profile(jpeg: bytes) -> bytes:
    """The ICC colour profile a JPEG carries (its APP2 ICC_PROFILE segments, in order)."""
    parts, at = [], 2
    while jpeg[at] == 0xFF and jpeg[at + 1] not in (0xD9, 0xDA):  # up to the scan
        length = int.from_bytes(jpeg[at + 2:at + 4], "big")
        data = jpeg[at + 4:at + 2 + length]
        if jpeg[at + 1] == 0xE2 and data.startswith(b"ICC_PROFILE\0"):
            parts.append((data[12], data[14:]))
        at += 2 + length
    return b"".join(part for _, part in sorted(parts))


def with_chunk(png: bytes, kind: bytes, data: bytes) -> bytes:
    """PNG with a chunk added after its header chunk."""
    chunk = (len(data).to_bytes(4, "big") + kind + data
             + zlib.crc32(kind + data).to_bytes(4, "big"))
    return png[:33] + chunk + png[33:]  # 8 bytes of signature, 25 of IHDR


def test_a_quiet_run_prints_nothing_of_mediapipes_or_libpngs(footage_dir: Path,
                                                            tmp_path: Path) -> None:
    """A grey photo carrying the RGB colour profile it was taken with, as photo tools save
    them: libpng warns of it, once per photo, and MediaPipe notes its own start-up; a quiet
    run shows neither."""
    jpeg = (footage_dir / "single_face.jpg").read_bytes()
    profile = icc_profile(jpeg)
    assert profile[16:20] == b"RGB "
    grey = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR),
                        cv2.COLOR_BGR2GRAY)
    png = cv2.imencode(".png", grey)[1].tobytes()
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("1.png", "2.png"):
        (photos / name).write_bytes(with_chunk(png, b"iCCP",
                                               b"ICC Profile\0\0" + zlib.compress(profile)))
    record = tmp_path / "grey.jsonl"
    result = facetrack("run", "--source", str(photos), "--record", str(record), "--quiet")
    assert result.returncode == 0 and result.stderr == ""
    _, frames = read_records(record)
    assert [len(frame["faces"]) for frame in frames] == [1, 1]


def test_images_from_a_video_need_a_number_in_the_name(footage_dir: Path,
                                                       tmp_path: Path) -> None:
    result = facetrack("run", "--source", str(footage_dir / "single_face.mp4"),
                       "--output", str(tmp_path / "frame.png"))
    assert_one_line_error(result, "72 frames", "%04d")
    assert not list(tmp_path.iterdir())


def test_a_video_recorded_into_folders_is_named_after_it(footage_dir: Path,
                                                        tmp_path: Path) -> None:
    """'--record records/' for one video, as for a batch: records/<video>.jsonl (it was a file
    named 'records'); a record of photos is one file, and a folder for it is refused."""
    facetrack_ok("run", "--source", str(footage_dir / "single_face.mp4"), "--quiet",
                 "--record", f"{tmp_path / 'records'}/", "--output", str(tmp_path / "out.mp4"))
    _, frames = read_records(tmp_path / "records" / "single_face.jsonl")
    assert len(frames) == 72 and (tmp_path / "out.mp4").is_file()
    result = facetrack("run", "--source", str(footage_dir / "single_face.jpg"),
                       "--record", f"{tmp_path / 'photos'}/")
    assert_one_line_error(result, "photos/: it is a folder")
    assert not (tmp_path / "photos").exists()


def test_a_folder_of_videos_is_run_video_by_video(footage_dir: Path, tmp_path: Path) -> None:
    """A batch: each video tracked on its own, in natural order, its record and annotated video
    named after it; one that cannot be read is a warning, and the others are still done."""
    takes = tmp_path / "takes"
    takes.mkdir()
    clip = (footage_dir / "single_face.mp4").read_bytes()
    (takes / "take_2.mp4").write_bytes(clip)
    (takes / "take_10.mkv").write_bytes(clip)  # FFmpeg reads the content, whatever the name
    (takes / "take_3.mp4").write_bytes(clip[10_000:20_000])  # no header: unreadable
    (takes / "notes.txt").write_text("not a video")
    result = facetrack("run", "--source", str(takes), "--record", str(tmp_path / "records"),
                       "--output", str(tmp_path / "annotated"))
    assert result.returncode == 1, result.stderr
    order = [line.rsplit("/", 1)[1] for line in result.stderr.splitlines() if " of 3: " in line]
    assert order == ["take_2.mp4", "take_3.mp4", "take_10.mkv"]
    assert "warning: cannot open" in result.stderr and "take_3.mp4" in result.stderr
    assert "3 videos: 2 tracked, 1 could not be read" in result.stderr
    for stem in ("take_2", "take_10"):
        _, frames = read_records(tmp_path / "records" / f"{stem}.jsonl")
        assert len(frames) == 72 and frames[10]["faces"][0]["status"] == "tracking"
        with av.open(str(tmp_path / "annotated" / f"{stem}.mp4")) as video:
            assert sum(1 for _ in video.decode(video=0)) == 72
    assert sorted(p.name for p in (tmp_path / "records").iterdir()) == ["take_10.jsonl",
                                                                      "take_2.jsonl"]


def test_a_batch_loads_its_models_once(footage_dir: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture) -> None:
    """The regressor and the face model are loaded once for all of a batch's videos: loaded
    for each, they cost half a second a video (a batch of ten 72-frame clips took 12-14 s,
    then 9-10 s). Its last line says how the batch went."""
    takes = tmp_path / "takes"
    takes.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        shutil.copy(footage_dir / "single_face.mp4", takes / name)
    loads: list[str] = []

    class CountedRegressor(solution.Regressor):
        def __init__(self, *args: object, **options: object) -> None:
            loads.append("regressor")
            super().__init__(*args, **options)

    def counted_face_model(path: str | None = None) -> FaceModel:
        loads.append("face model")
        return face_model_load(path)

    face_model_load = FaceModel.load
    monkeypatch.setattr(solution, "Regressor", CountedRegressor)
    monkeypatch.setattr(FaceModel, "load", counted_face_model)
    args = build_parser("run").parse_args(["run", "--source", str(takes), "--mesh",
                                           "--record", str(tmp_path / "records"),
                                           "--output", str(tmp_path / "annotated")])
    assert run_command.run(args) == 0
    assert sorted(loads) == ["face model", "regressor"]
    assert capsys.readouterr().err.splitlines()[-1] == "facetrack: 3 videos: 3 tracked"
    for stem in ("a", "b", "c"):
        _, frames = read_records(tmp_path / "records" / f"{stem}.jsonl")
        assert len(frames) == 72 and frames[-1]["faces"][0]["status"] == "tracking"
        with av.open(str(tmp_path / "annotated" / f"{stem}.mp4")) as video:
            assert sum(1 for _ in video.decode(video=0)) == 72


@pytest.mark.parametrize(("flags", "words"), [
    (["--record", "{tmp}/faces.jsonl"], ["2 videos", "folder"]),
    (["--publish"], ["--publish", "facetrack replay"]),
])
def test_a_batch_is_refused_what_it_cannot_do(footage_dir: Path, tmp_path: Path,
                                              flags: list[str], words: list[str]) -> None:
    for name in ("a.mp4", "b.mp4"):
        shutil.copy(footage_dir / "single_face.mp4", tmp_path / name)
    result = facetrack("run", "--source", str(tmp_path / "*.mp4"),
                       *(f.format(tmp=tmp_path) for f in flags))
    assert_one_line_error(result, *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4"]


def test_truncated_video_keeps_what_decodes(footage_dir: Path, tmp_path: Path) -> None:
    # This clip keeps its index (moov) at the front, so the first 60% opens and decodes.
    whole = (footage_dir / "WolfgangLanger_Pexels.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[: len(whole) * 6 // 10])
    record = tmp_path / "cut.jsonl"
    result = facetrack("run", "--source", str(cut), "--record", str(record))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "warning: decoding stopped at frame" in result.stderr
    _, frames = read_records(record)
    assert 100 < len(frames) < 472
    assert [f["frame"] for f in frames] == list(range(len(frames)))


@pytest.mark.parametrize("make_source, words", [
    (lambda d: str(d / "missing.mp4"), ["missing.mp4"]),
    (lambda d: (d / "notes.mp4").write_text("not a video") and str(d / "notes.mp4"),
     ["notes.mp4"]),
    (lambda d: "http://127.0.0.1:9/clip.mp4", ["127.0.0.1:9"]),
    (lambda d: "7", ["camera"]),
    (lambda d: str(d / "empty") + "/*.jpg", ["*.jpg"]),
], ids=["missing-path", "text-as-mp4", "url-no-answer", "no-camera", "glob-no-match"])
def test_bad_source(tmp_path: Path, make_source, words: list[str]) -> None:
    result = facetrack("run", "--source", make_source(tmp_path), "--record",
                       str(tmp_path / "out.jsonl"), "--reconnect", "0.5", timeout=60)
    assert_one_line_error(result, *words)
    assert not (tmp_path / "out.jsonl").exists(), "nothing written for a source never opened"


@pytest.mark.parametrize(("flag", "name", "words"), [
    ("--record", "no-such-dir/out.jsonl", []),
    ("--output", "no-such-dir/out.mp4", []),
    ("--output", "out.xyz", ["use .mp4"]),
    ("--output", "out", ["use .mp4"]),
    ("--output", "out.webm", ["does not support", "use .mp4"]),
])
def test_unwritable_output(footage_dir: Path, tmp_path: Path, flag: str, name: str,
                           words: list[str]) -> None:
    target = tmp_path / name
    result = facetrack("run", "--source", str(footage_dir / "single_face.jpg"), flag, str(target))
    assert_one_line_error(result, str(target), *words)
    assert not target.exists()


def test_a_full_disk_is_one_line(footage_dir: Path) -> None:
    """/dev/full takes the open and refuses every write, as a disk that has filled does."""
    result = facetrack("run", "--source", str(footage_dir / "single_face.jpg"),
                       "--record", "/dev/full")
    assert_one_line_error(result, "cannot write record /dev/full", "No space left")


@pytest.mark.parametrize(("flags", "named"), [
    (["--output", "{source}"], "--source and --output"),
    (["--record", "{source}"], "--source and --record"),
    (["--output", "{tmp}/out.mp4", "--record", "{tmp}/./out.mp4"], "--output and --record"),
])
def test_outputs_never_write_over_the_source_or_each_other(footage_dir: Path, tmp_path: Path,
                                                           flags: list[str], named: str) -> None:
    """Opening an output empties it: over the source it would wipe the video being read."""
    source = tmp_path / "take.mp4"
    source.write_bytes((footage_dir / "single_face.mp4").read_bytes())
    before = source.read_bytes()
    result = facetrack("run", "--source", str(source),
                       *(f.format(source=source, tmp=tmp_path) for f in flags))
    assert_one_line_error(result, named, "different files")
    assert source.read_bytes() == before
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize(("flags", "words"), [
    (["--regressor", "{tmp}/missing.onnx"], ["missing.json"]),
    (["--output", "{tmp}/take.xyz"], ["use .mp4"]),
    (["--publish", "tcp://192.0.2.1:5570"], ["--publish-any-host"]),
    (["--mesh", "--model", "{tmp}/no-model.npz"], ["face model not found"]),
], ids=["regressor", "video-name", "publish", "face-model"])
def test_a_run_that_fails_to_start_leaves_earlier_outputs_whole(
        footage_dir: Path, tmp_path: Path, flags: list[str], words: list[str]) -> None:
    """A typo in one option must not cost the user last take's recording and video: outputs
    are emptied by their first write, not when the run opens them."""
    record, video = tmp_path / "take.jsonl", tmp_path / "take.mp4"
    record.write_text('{"type": "header"}\n')
    video.write_bytes((footage_dir / "single_face.mp4").read_bytes())
    before = record.read_bytes(), video.read_bytes()
    result = facetrack("run", "--source", str(footage_dir / "single_face.jpg"),
                       "--record", str(record),
                       *(["--output", str(video)] if "--output" not in flags else []),
                       *(f.format(tmp=tmp_path) for f in flags))
    assert_one_line_error(result, *words)
    assert (record.read_bytes(), video.read_bytes()) == before


@pytest.mark.parametrize("value", ["0", "-3", "nan", "inf"])
def test_a_focal_length_must_be_a_positive_number(value: str,
                                                  capsys: pytest.CaptureFixture) -> None:
    """argparse's one-line error; --focal inf passed, and the fit's SVD ended in a traceback."""
    with pytest.raises(SystemExit) as exit_:
        build_parser("run").parse_args(["run", "--source", "x.mp4", "--focal", value])
    assert exit_.value.code == 2
    assert f"--focal: must be positive, got {value}" in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = facetrack("run", "--source", str(tmp_path / "missing.mp4"), "--debug")
    assert result.returncode != 0 and "Traceback" in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_interrupted_run_keeps_its_frames(footage_dir: Path, tmp_path: Path, sig) -> None:
    """Ctrl-C, a service's stop, or the terminal closing (SIGHUP, an SSH session that
    dropped): the record keeps every frame, and the annotated video is finished and plays."""
    record, output = tmp_path / "live.jsonl", tmp_path / "live.mp4"
    process = subprocess.Popen(
        [FACETRACK, "run", "--source", str(footage_dir / "WolfgangLanger_Pexels.mp4"),
         "--realtime", "--record", str(record), "--output", str(output)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if record.exists() and record.read_text().count("\n") > 20:
            break
        time.sleep(0.1)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    lines = record.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line complete
    frames = records[1:]
    assert 20 <= len(frames) < 472, "stopped early, after the frames it had"
    assert [f["frame"] for f in frames] == list(range(len(frames)))
    assert f"interrupted after {len(frames)} frames" in stderr
    with av.open(str(output)) as video:  # the stop may come between a frame's two writes
        assert len(frames) - 1 <= sum(1 for _ in video.decode(video=0)) <= len(frames)
    assert abs(sound(output)[2] - video_end(output)) < 0.05, "the sound ends with the frames"


def test_help_has_examples() -> None:
    result = facetrack("run", "--help")
    assert result.returncode == 0
    assert "examples:" in result.stdout and "--max-faces" in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_comes_from_its_module(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    usage, description = capsys.readouterr().out.split("\n\n")[:2]
    assert exit_.value.code == 0 and usage.startswith(f"usage: facetrack {command} ")
    assert not description.startswith("options:")  # its own parser, not a help-line stand-in


# What loading these costs is the wait after typing `facetrack --help`: above a second here.
HEAVY = ("mediapipe", "cv2", "onnxruntime", "torch", "av", "matplotlib")


@pytest.mark.parametrize("command", [None, "listen", "replay", "keys", "export", "model"])
def test_a_command_loads_only_what_it_needs(command: str | None) -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys; from tracker.cli import build_parser; "
         f"build_parser({command!r}); print(' '.join(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True).stdout.split()
    assert not [name for name in HEAVY if name in loaded]


def test_top_level_help_lists_every_command() -> None:
    result = facetrack("--help")
    assert result.returncode == 0
    for name, entry in COMMANDS.items():
        assert f"{name} " in result.stdout or f"{name}\n" in result.stdout
        assert entry.help.split()[0] in result.stdout


def test_sources_lists_the_cameras_that_open() -> None:
    result = facetrack("sources", timeout=60)
    assert "Traceback" not in result.stderr
    lines = result.stdout.strip().splitlines()
    if result.returncode == 1:  # a machine without cameras, like CI
        assert lines == ["no camera found"]
    else:
        assert result.returncode == 0 and lines


ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tracker", "engines", "streams", "calibrate")


def test_the_wheel_carries_the_files_the_code_reads(tmp_path: Path) -> None:
    """A `pip install` from a wheel, not the editable install, must find the committed model,
    its config and the landmark embedding beside the code."""
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the checkout
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps",
                    "--no-build-isolation", "--quiet", "--wheel-dir", str(tmp_path)],
                   check=True, capture_output=True, cwd=tmp_path, timeout=300)
    (wheel,) = tmp_path.glob("facetrack-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packed = set(archive.namelist())
    data = {path.relative_to(ROOT).as_posix() for package in PACKAGES
            for path in (ROOT / package).rglob("*")
            if path.is_file() and path.suffix != ".py" and "__pycache__" not in path.parts}
    assert {"engines/models/regressor.onnx", "tracker/data/landmark_embedding.json"} <= data
    assert data <= packed, sorted(data - packed)
