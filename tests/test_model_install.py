"""Installing the ICT model from each kind of source, the checks on it, and `facetrack model`.

Converting takes seconds, so it happens once (the `installed_model` fixture, from the
repository root); the other sources are checked to yield byte-identical model files, which is
all that differs between them before conversion.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from streams.errors import FacetrackError
from tracker import model_store
from tracker.obj_reader import ObjError, read_mesh, read_vertices

ROOT = Path(__file__).resolve().parents[1]
COMMIT = "da5f95a607f5e6b37755b38d3385d7f2853732e5"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_zip(folder: Path, zip_path: Path, prefix: str, comment: bytes = b"") -> Path:
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_STORED) as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                archive.write(file, prefix + file.relative_to(folder).as_posix())
        archive.comment = comment
    return zip_path


@pytest.fixture(scope="module")
def github_zip(ict_facekit: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository root nested one folder deep, with the commit as comment, as GitHub does."""
    folder = tmp_path_factory.mktemp("zips")
    return write_zip(ict_facekit, folder / "ict.zip", f"ICT-FaceKit-{COMMIT}/", COMMIT.encode())


@pytest.fixture(scope="module")
def facexmodel_zip(ict_facekit: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FaceXModel/'s files at the top of the zip."""
    folder = tmp_path_factory.mktemp("zips")
    return write_zip(ict_facekit / "FaceXModel", folder / "facexmodel.zip", "")


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def zip_url(github_zip: Path) -> Iterator[str]:
    """An http URL of `github_zip`, served on an ephemeral local port."""
    handler = functools.partial(QuietHandler, directory=str(github_zip.parent))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/{github_zip.name}"
    server.shutdown()
    server.server_close()


def test_install_from_repository_root(installed_model: Path, ict_facekit: Path) -> None:
    info = model_store.info(installed_model)
    assert installed_model.name == model_store.MODEL_FILENAME
    assert (info["vertices"], info["triangles"], info["polygons"]) == (26719, 52220, 26384)
    assert (info["identities"], info["expressions"]) == (100, 53)
    assert info["format_version"] == model_store.FORMAT_VERSION
    assert info["source"] == str(ict_facekit)
    assert len(info["inputs_sha256"]) == 64
    assert info["size_bytes"] < 120e6
    sizes = model_store.read(installed_model)["polygon_sizes"]
    assert (sizes == 4).sum() == 25836 and (sizes == 3).sum() == 548


def test_every_source_form_yields_the_same_files(
    installed_model: Path, ict_facekit: Path, github_zip: Path, facexmodel_zip: Path,
    zip_url: str,
) -> None:
    expected = model_store.info(installed_model)["inputs_sha256"]
    github_sha = sha256_of(github_zip)
    sources = [
        (str(ict_facekit / "FaceXModel"), None, "", ""),
        (str(github_zip), github_sha, COMMIT, github_sha),
        (str(facexmodel_zip), None, "", sha256_of(facexmodel_zip)),
        (zip_url, github_sha.upper(), COMMIT, github_sha),
    ]
    for source, sha256, commit, archive_sha256 in sources:
        with model_store.open_source(source, sha256) as files:
            assert files.inputs_sha256() == expected, source
            assert (files.commit, files.archive_sha256) == (commit, archive_sha256), source


def test_wrong_sha256_is_refused(zip_url: str, tmp_path: Path) -> None:
    with pytest.raises(FacetrackError, match="has sha256 [0-9a-f]{64}, expected 0{64}"):
        model_store.install(zip_url, dest=tmp_path, sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_missing_download_is_one_line_error(zip_url: str, tmp_path: Path) -> None:
    with pytest.raises(FacetrackError, match="cannot download .*: HTTP Error 404"):
        model_store.install(zip_url + ".missing", dest=tmp_path)


def test_sha256_of_a_folder_is_refused(ict_facekit: Path, tmp_path: Path) -> None:
    with pytest.raises(FacetrackError, match="is a folder"):
        model_store.install(ict_facekit, dest=tmp_path, sha256="0" * 64)


def test_folder_that_is_not_ict_is_refused(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("not a face model\n")
    with pytest.raises(FacetrackError) as caught:
        model_store.install(tmp_path, dest=tmp_path / "out")
    assert str(caught.value) == f"{tmp_path} is not an ICT-FaceKit model: no vertex_indices.json"


def fake_model(ict_facekit: Path, folder: Path) -> Path:
    """A FaceXModel folder of links to the real files, to break one of them cheaply."""
    folder.mkdir()
    for file in (ict_facekit / "FaceXModel").iterdir():
        (folder / file.name).symlink_to(file)
    return folder


def replace(folder: Path, name: str, text: str) -> None:
    (folder / name).unlink()
    (folder / name).write_text(text)


def test_missing_obj_is_named(ict_facekit: Path, tmp_path: Path) -> None:
    folder = fake_model(ict_facekit, tmp_path / "FaceXModel")
    (folder / "identity042.obj").unlink()
    with pytest.raises(FacetrackError, match="not a complete ICT-FaceKit model: missing "
                                             "identity042.obj$"):
        model_store.install(tmp_path, dest=tmp_path / "out")


def test_wrong_vertex_count_is_named(ict_facekit: Path, tmp_path: Path) -> None:
    folder = fake_model(ict_facekit, tmp_path / "model")
    neutral = (ict_facekit / "FaceXModel" / model_store.NEUTRAL_FILE).read_text()
    replace(folder, model_store.NEUTRAL_FILE, neutral + "v 0 0 0\n")
    with pytest.raises(FacetrackError, match="generic_neutral_mesh.obj has 26720 vertices, "
                                             "expected 26719"):
        model_store.install(folder, dest=tmp_path / "out")


def test_expression_list_is_checked(ict_facekit: Path, tmp_path: Path) -> None:
    folder = fake_model(ict_facekit, tmp_path / "model")
    index = json.loads((ict_facekit / "FaceXModel" / model_store.INDEX_FILE).read_text())
    index["expressions"] = index["expressions"][:52]
    replace(folder, model_store.INDEX_FILE, json.dumps(index))
    with pytest.raises(FacetrackError, match="lists 52 expression names, expected 53"):
        model_store.install(folder, dest=tmp_path / "out")


def test_failed_install_keeps_previous_model(ict_facekit: Path, tmp_path: Path) -> None:
    previous = tmp_path / model_store.MODEL_FILENAME
    previous.write_bytes(b"previous")
    folder = fake_model(ict_facekit, tmp_path / "model")
    replace(folder, "identity000.obj", "v 1 2 3\n")
    with pytest.raises(FacetrackError, match="identity000.obj has 1 vertices"):
        model_store.install(folder, dest=tmp_path)
    assert previous.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ict_face_model.npz", "model"]


def test_obj_reader_reads_both_forms(ict_facekit: Path) -> None:
    """The shared copy keeps only `v` lines in most OBJs; the originals have `vt` and `f` too."""
    full = (ict_facekit / "FaceXModel" / model_store.NEUTRAL_FILE).read_bytes()
    v_only = b"".join(line for line in full.splitlines(keepends=True) if line.startswith(b"v "))
    np.testing.assert_array_equal(read_vertices(full), read_vertices(v_only))


def test_obj_reader_triangulates_quads() -> None:
    text = b"""v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 2 0 0\r\nvt 0 0\nvt 1 0\nvt 1 1
vt 0 1\nvn 0 0 1\nusemtl M\nf 1/1/1 2/2/1 3/3/1 4/4/1\nf 2/2 5/1 3/3\n"""
    mesh = read_mesh(text)
    assert mesh.triangles.tolist() == [[0, 1, 2], [0, 2, 3], [1, 4, 2]]
    assert mesh.triangle_uvs.tolist() == [[0, 1, 2], [0, 2, 3], [1, 0, 2]]
    assert mesh.polygon_sizes.tolist() == [4, 3] and mesh.uvs.shape == (4, 2)
    with pytest.raises(ObjError, match="out of range"):
        read_mesh(text + b"f 1/1 2/2 9/3\n")


def test_data_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FACETRACK_DATA", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", "")
    assert model_store.data_dir() == tmp_path / "home" / ".local" / "share" / "facetrack"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert model_store.data_dir() == tmp_path / "xdg" / "facetrack"
    monkeypatch.setenv("FACETRACK_DATA", str(tmp_path / "data"))
    assert model_store.default_model_path() == tmp_path / "data" / "ict_face_model.npz"


def test_target_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FACETRACK_DATA", str(tmp_path / "data"))
    assert model_store.target_path() == tmp_path / "data" / "ict_face_model.npz"
    assert model_store.target_path(tmp_path / "mine.npz") == tmp_path / "mine.npz"
    assert model_store.target_path(str(tmp_path / "new")) == tmp_path / "new" / "ict_face_model.npz"


def test_locate(monkeypatch: pytest.MonkeyPatch, installed_model: Path, tmp_path: Path) -> None:
    monkeypatch.setenv("FACETRACK_DATA", str(tmp_path))
    monkeypatch.delenv("FACETRACK_MODEL", raising=False)
    with pytest.raises(FacetrackError) as caught:
        model_store.locate()
    assert str(caught.value) == ("no face model installed: run "
                                 "`facetrack model install PATH_TO_ICT_FACEKIT`")
    shutil.copy(installed_model, tmp_path / model_store.MODEL_FILENAME)
    assert model_store.locate() == tmp_path / model_store.MODEL_FILENAME
    monkeypatch.setenv("FACETRACK_MODEL", str(installed_model))
    assert model_store.locate() == installed_model
    assert model_store.locate(str(tmp_path / model_store.MODEL_FILENAME)) != installed_model
    with pytest.raises(FacetrackError, match="face model not found: .*absent.npz"):
        model_store.locate(str(tmp_path / "absent.npz"))


def test_read_refuses_other_files(tmp_path: Path) -> None:
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    np.savez(tmp_path / "future.npz", format_version=np.array(99))
    (tmp_path / "text.npz").write_text("hello")
    for name in ("other.npz", "text.npz"):
        with pytest.raises(FacetrackError, match="is not a face model file: run `facetrack"):
            model_store.read(tmp_path / name)
    with pytest.raises(FacetrackError, match="has face model format 99, this Facetrack reads 1"):
        model_store.read(tmp_path / "future.npz")


def facetrack(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tracker.cli", *args], cwd=ROOT, timeout=60,
                          capture_output=True, text=True, env={**os.environ, **env})


def test_cli_model_info(installed_model: Path, tmp_path: Path) -> None:
    by_option = facetrack("model", "info", "--model", str(installed_model))
    by_variable = facetrack("model", "info", FACETRACK_MODEL=str(installed_model),
                            FACETRACK_DATA=str(tmp_path))
    for result in (by_option, by_variable):
        assert result.returncode == 0, result.stderr
        assert f"path: {installed_model}" in result.stdout
        for line in ("vertices: 26719", "triangles: 52220", "identities: 100", "expressions: 53"):
            assert line in result.stdout.splitlines()


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    results = [
        facetrack("model", "info", FACETRACK_DATA=str(tmp_path), FACETRACK_MODEL=""),
        facetrack("model", "install", str(tmp_path), "--dest", str(tmp_path / "out")),
    ]
    for result, words in zip(results, ("no face model installed", "not an ICT-FaceKit model"),
                             strict=True):
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and words in result.stderr, result.stderr
