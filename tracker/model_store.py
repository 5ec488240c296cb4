"""Installs the ICT face model as one runtime file, and finds that file again.

ICT-FaceKit ships 158 OBJs that take seconds to parse; installing reads them once (from a
folder, a zip, or a downloaded zip), checks them, and writes `ict_face_model.npz` (float32
neutral mesh and per-vertex deltas) into the per-user data folder, which loads in milliseconds.
The repository never holds the model (docs/face-model.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import tempfile
import urllib.error
import urllib.request
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

import numpy as np
from tqdm import tqdm

from streams.errors import FacetrackError
from tracker.expressions import ICT_EXPRESSION_NAMES
from tracker.obj_reader import ObjError, read_mesh, read_vertices

FORMAT_VERSION = 1
MODEL_FILENAME = "ict_face_model.npz"
VERTEX_COUNT = 26_719
IDENTITY_COUNT = 100
INDEX_FILE = "vertex_indices.json"
NEUTRAL_FILE = "generic_neutral_mesh.obj"
# Index lists of vertex_indices.json that the tracker relies on; any other idx_to_* list is kept.
REQUIRED_INDEX_LISTS = ("idx_to_landmark_verts", "idx_to_rigid_verts", "idx_to_fitting_verts")
INSTALL_HINT = "run `facetrack model install PATH_TO_ICT_FACEKIT`"

T = TypeVar("T")


def data_dir() -> Path:
    """Facetrack's per-user data folder: $FACETRACK_DATA, $XDG_DATA_HOME/facetrack, or
    ~/.local/share/facetrack (an empty variable counts as unset, as XDG says)."""
    if os.environ.get("FACETRACK_DATA"):
        return Path(os.environ["FACETRACK_DATA"]).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "facetrack"


def default_model_path() -> Path:
    return data_dir() / MODEL_FILENAME


def locate(model: str | Path | None = None) -> Path:
    """The model file to use: MODEL (a --model value), else $FACETRACK_MODEL, else the
    installed one."""
    chosen = model or os.environ.get("FACETRACK_MODEL")
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_file():
            raise FacetrackError(f"face model not found: {path}")
        return path
    path = default_model_path()
    if not path.is_file():
        raise FacetrackError(f"no face model installed: {INSTALL_HINT}")
    return path


def target_path(dest: str | Path | None = None) -> Path:
    """Where `install` writes: DEST when it names a .npz file, else DEST/ict_face_model.npz;
    the data folder's model file without DEST."""
    if dest is None:
        return default_model_path()
    path = Path(dest).expanduser()
    return path if path.suffix == ".npz" else path / MODEL_FILENAME


def install(source: str | Path, dest: str | Path | None = None,
            sha256: str | None = None) -> Path:
    """Convert the ICT-FaceKit model at SOURCE (folder, zip, or http(s) URL of a zip) into the
    runtime file at `target_path(DEST)` and return its path. The file is replaced atomically,
    so a failed install keeps the previous model."""
    target = target_path(dest)
    with open_source(str(source), sha256) as files:
        arrays = _convert(files)
    _write_atomically(arrays, target)
    return target


def read(path: Path) -> dict[str, np.ndarray]:
    """All arrays of a runtime model file, after checking that this Facetrack can read it."""
    not_a_model = FacetrackError(f"{path} is not a face model file: {INSTALL_HINT}")
    if not zipfile.is_zipfile(path):
        raise not_a_model
    try:
        with np.load(path) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise FacetrackError(f"{path} is a damaged face model file ({error}): "
                             f"{INSTALL_HINT}") from None
    if "format_version" not in arrays:
        raise not_a_model
    version = int(arrays["format_version"])
    if version != FORMAT_VERSION:
        raise FacetrackError(f"{path} has face model format {version}, this Facetrack reads "
                             f"{FORMAT_VERSION}: {INSTALL_HINT}")
    return arrays


def info(path: Path) -> dict[str, object]:
    """What `facetrack model info` reports: where the file is, what it holds, where it came from."""
    arrays = read(path)
    return {
        "path": str(path),
        "format_version": int(arrays["format_version"]),
        "vertices": len(arrays["neutral"]),
        "triangles": len(arrays["triangles"]),
        "polygons": len(arrays["polygon_sizes"]),
        "identities": len(arrays["identity_deltas"]),
        "expressions": len(arrays["expression_names"]),
        "size_bytes": path.stat().st_size,
        **json.loads(str(arrays["provenance"])),
    }


class ModelSource(ABC):
    """The files of one FaceXModel folder, wherever they are stored (folder or zip)."""

    def __init__(self, label: str, commit: str = "", archive_sha256: str = "") -> None:
        self.label = label  # absolute path or URL, for messages and provenance
        self.commit = commit  # ICT-FaceKit commit when known, else ""
        self.archive_sha256 = archive_sha256  # of the zip when there is one, else ""

    @abstractmethod
    def has(self, name: str) -> bool:
        """Whether the FaceXModel folder holds NAME."""

    @abstractmethod
    def read(self, name: str) -> bytes:
        """The bytes of NAME in the FaceXModel folder."""

    def index(self) -> dict:
        """vertex_indices.json, checked: ICT's 53 expressions and the index lists we need."""
        try:
            index = json.loads(self.read(INDEX_FILE))
        except ValueError as error:
            raise FacetrackError(f"{self.label}: {INDEX_FILE} is not JSON ({error})") from None
        names = index.get("expressions") if isinstance(index, dict) else None
        if not isinstance(names, list) or len(names) != len(ICT_EXPRESSION_NAMES):
            count = len(names) if isinstance(names, list) else "no"
            raise FacetrackError(f"{self.label}: {INDEX_FILE} lists {count} expression names, "
                                 f"expected {len(ICT_EXPRESSION_NAMES)}")
        if tuple(names) != ICT_EXPRESSION_NAMES:
            raise FacetrackError(f"{self.label}: {INDEX_FILE} lists other expressions than "
                                 "ICT-FaceKit's 53, or in another order")
        missing = [key for key in REQUIRED_INDEX_LISTS if key not in index]
        if missing:
            raise FacetrackError(f"{self.label}: {INDEX_FILE} has no {', '.join(missing)}")
        return index

    def inputs_sha256(self) -> str:
        """One SHA-256 over every file the model is made of, the same for a folder and a zip of
        it: it tells two installs apart by content, not by packaging."""
        digest = hashlib.sha256()
        for name in model_file_names():
            digest.update(name.encode() + b"\0" + hashlib.sha256(self.read(name)).digest())
        return digest.hexdigest()


class FolderSource(ModelSource):
    """A FaceXModel folder on disk, given as itself or as the repository root holding it."""

    def __init__(self, folder: Path, label: str) -> None:
        roots = [folder, folder / "FaceXModel"]
        root = next((r for r in roots if (r / INDEX_FILE).is_file()), None)
        if root is None:
            raise FacetrackError(f"{label} is not an ICT-FaceKit model: no {INDEX_FILE}")
        super().__init__(label, commit=_git_commit(root.parent))
        self.root = root

    def has(self, name: str) -> bool:
        return (self.root / name).is_file()

    def read(self, name: str) -> bytes:
        try:
            return (self.root / name).read_bytes()
        except OSError as error:
            raise FacetrackError(f"cannot read {self.root / name}: {error.strerror}") from None


class ZipSource(ModelSource):
    """A zip holding a FaceXModel folder at any depth (GitHub's archives nest it in one more)."""

    def __init__(self, archive: zipfile.ZipFile, label: str, archive_sha256: str) -> None:
        indexes = [n for n in archive.namelist() if n.rsplit("/", 1)[-1] == INDEX_FILE]
        if not indexes:
            raise FacetrackError(f"{label} is not an ICT-FaceKit model: no {INDEX_FILE}")
        # GitHub writes the commit of an archive into the zip's comment.
        comment = archive.comment.decode("ascii", "replace").strip()
        commit = comment if re.fullmatch(r"[0-9a-f]{40}", comment) else ""
        super().__init__(label, commit=commit, archive_sha256=archive_sha256)
        self.archive = archive
        self.prefix = min(indexes, key=len)[: -len(INDEX_FILE)]
        self.members = set(archive.namelist())

    def has(self, name: str) -> bool:
        return self.prefix + name in self.members

    def read(self, name: str) -> bytes:
        try:
            return self.archive.read(self.prefix + name)
        except (zipfile.BadZipFile, OSError) as error:
            raise FacetrackError(f"{self.label}: cannot read {name} ({error})") from None


@contextlib.contextmanager
def open_source(source: str, sha256: str | None = None) -> Iterator[ModelSource]:
    """The model files at SOURCE: a folder, a zip, or an http(s) URL of a zip (downloaded to a
    temporary file). SHA256, when given, must match the zip or download."""
    if source.startswith(("http://", "https://")):
        with tempfile.TemporaryDirectory(prefix="facetrack-") as tmp:
            archive = Path(tmp) / "ict-facekit.zip"
            digest = _download(source, archive)
            _check_sha256(source, digest, sha256)
            with _open_zip(archive, source, digest) as files:
                yield files
        return
    path = Path(source).expanduser().absolute()
    if path.is_dir():
        if sha256:
            raise FacetrackError(f"a sha256 checks a zip or a download, and {path} is a folder")
        yield FolderSource(path, str(path))
    elif path.is_file():
        digest = _file_sha256(path)
        _check_sha256(str(path), digest, sha256)
        with _open_zip(path, str(path), digest) as files:
            yield files
    else:
        raise FacetrackError(f"no such folder, zip or URL: {source}")


def model_file_names() -> list[str]:
    """The files of FaceXModel/ that make the model."""
    return [INDEX_FILE, NEUTRAL_FILE, *_shape_file_names()]


def _shape_file_names() -> list[str]:
    """The identity and expression OBJs, in the order the runtime file stores their deltas."""
    identities = [f"identity{i:03d}.obj" for i in range(IDENTITY_COUNT)]
    return identities + [f"{name}.obj" for name in ICT_EXPRESSION_NAMES]


def _convert(files: ModelSource) -> dict[str, np.ndarray]:
    """The runtime file's arrays (docs/face-model.md), after checking every input."""
    index = files.index()
    missing = [name for name in model_file_names() if not files.has(name)]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise FacetrackError(f"{files.label} is not a complete ICT-FaceKit model: missing "
                             f"{', '.join(missing[:3])}{more}")
    mesh = _read_obj(files, NEUTRAL_FILE, read_mesh)
    neutral = _checked(files, NEUTRAL_FILE, mesh.vertices)
    shapes = _shape_file_names()
    deltas = np.empty((len(shapes), VERTEX_COUNT, 3), dtype=np.float32)
    for i, name in enumerate(tqdm(shapes, desc="converting", unit="obj", disable=None)):
        deltas[i] = _checked(files, name, _read_obj(files, name, read_vertices)) - neutral
    provenance = {
        "source": files.label,
        "commit": files.commit,
        "archive_sha256": files.archive_sha256,
        "inputs_sha256": files.inputs_sha256(),
        "installed": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    index_lists = {key: np.asarray(value, dtype=np.int32) for key, value in index.items()
                   if key.startswith("idx_to_")}
    return {
        "format_version": np.array(FORMAT_VERSION, dtype=np.int32),
        "neutral": neutral.astype(np.float32),
        "identity_deltas": deltas[:IDENTITY_COUNT],
        "expression_deltas": deltas[IDENTITY_COUNT:],
        "expression_names": np.array(ICT_EXPRESSION_NAMES),
        "triangles": mesh.triangles,
        "triangle_uvs": mesh.triangle_uvs,
        "uvs": mesh.uvs,
        "polygon_sizes": mesh.polygon_sizes,
        **index_lists,
        "provenance": np.array(json.dumps(provenance)),
    }


def _read_obj(files: ModelSource, name: str, reader: Callable[[bytes], T]) -> T:
    """READER applied to one OBJ of FILES; a parse error names the file."""
    try:
        return reader(files.read(name))
    except ObjError as error:
        raise FacetrackError(f"{files.label}: cannot read {name}: {error}") from None


def _checked(files: ModelSource, name: str, vertices: np.ndarray) -> np.ndarray:
    """VERTICES, once they are as many as every ICT OBJ has."""
    if len(vertices) != VERTEX_COUNT:
        raise FacetrackError(f"{files.label}: {name} has {len(vertices)} vertices, "
                             f"expected {VERTEX_COUNT}")
    return vertices


def _write_atomically(arrays: dict[str, np.ndarray], target: Path) -> None:
    """Write beside TARGET, then rename over it: readers see the old file or the new one."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "wb") as out:
            np.savez(out, **arrays)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, target)
    except OSError as error:
        raise FacetrackError(f"cannot write the face model to {target}: "
                             f"{error.strerror or error}") from None
    finally:
        partial.unlink(missing_ok=True)


@contextlib.contextmanager
def _open_zip(path: Path, label: str, digest: str) -> Iterator[ZipSource]:
    if not zipfile.is_zipfile(path):
        raise FacetrackError(f"{label} is neither a folder nor a zip file")
    with zipfile.ZipFile(path) as archive:
        yield ZipSource(archive, label, digest)


def _download(url: str, path: Path) -> str:
    """Fetch URL into PATH with a progress bar; return the SHA-256 of what arrived."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(path, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, desc="downloading", unit="B", unit_scale=True,
                      disable=None) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as error:
        raise FacetrackError(f"cannot download {url}: {error}") from None
    except urllib.error.URLError as error:
        raise FacetrackError(f"cannot download {url}: {error.reason}") from None
    except OSError as error:
        raise FacetrackError(f"cannot download {url}: {error}") from None
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        while chunk := data.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _check_sha256(label: str, actual: str, expected: str | None) -> None:
    if expected and actual != expected.lower():
        raise FacetrackError(f"{label} has sha256 {actual}, expected {expected.lower()}")


def _git_commit(folder: Path) -> str:
    """The checked-out commit when FOLDER is a git clone (of ICT-FaceKit), else ""."""
    if not (folder / ".git").exists():
        return ""
    try:
        done = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()
