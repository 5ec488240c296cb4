"""One CPU rasteriser for the ICT mesh, and its two uses: the shaded mesh drawn over live frames,
and synthetic frames with known ground truth.

The rasteriser is a numba z-buffer over the triangles (measured against numpy and OpenCV in
benchmarks/render.py). Besides the picture it keeps, per pixel, which triangle is seen and the
barycentric weights of the surface point there: what learning where landmarks sit on the mesh
needs. Conventions are DESIGN.md's: camera space is OpenCV's (x right, y down, z forward, cm),
pixel centres sit at integer coordinates, ``u = fx * x / z + cx``.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import cv2
import numba
import numpy as np
from numpy.typing import ArrayLike

from calibrate.intrinsics import Intrinsics
from tracker.face_model import FaceModel, posed

RENDER_REGIONS = ("face", "head", "full")
# Vertices 0-24590: face, head, mouth and eye sockets, gums, tongue, teeth and eyeballs; past them
# lie the see-through layers (lacrimal fluid, eye blend and occlusion) and the eyelashes.
LAST_SOLID_VERTEX = 24590
MESH_COLOR = (225, 200, 180)
WIRE_COLOR = (120, 220, 255)
AXIS_COLORS = ((255, 60, 60), (60, 255, 60), (60, 120, 255))  # x, y, z
OVERLAY_AMBIENT = 0.25
HEADLIGHT = np.zeros(3)  # `_lambert`'s light at the camera
NEAR_CM = 1.0  # triangles with a corner closer than this to the camera are skipped
EDGE_TOLERANCE = -1e-6  # shared edges: a pixel centre on one must not fall in neither triangle

# Albedo families (RGB, 0-255): skin tones, then the colours painted over them.
SKIN_TONES = ((241, 210, 190), (228, 184, 155), (205, 155, 118), (181, 136, 96),
              (142, 99, 70), (98, 66, 48))
HAIR_COLORS = ((35, 28, 24), (66, 46, 32), (105, 76, 50), (150, 118, 80), (25, 22, 22))
IRIS_COLORS = ((88, 58, 34), (62, 102, 150), (78, 108, 72), (122, 94, 55), (104, 112, 122))
LIP_RED = (170, 60, 64)
PUPIL = (12, 10, 10)
SCLERA = (236, 230, 224)
TEETH = (232, 226, 206)
GUMS_AND_TONGUE = (150, 62, 66)
MOUTH_SOCKET = (70, 28, 30)
# Eyeball painting, as the angle (degrees) from the eye's axis: pupil, iris, their blur.
PUPIL_DEGREES, IRIS_DEGREES, EYE_FEATHER_DEGREES = 8.0, 21.0, 1.5
# Vertex ranges of the parts painted apart (ict-facekit/NOTES.md), first and last inclusive.
MOUTH_RANGE, GUMS_RANGE, TEETH_RANGE = (11248, 13293), (14062, 17038), (17039, 21450)
FACE_VERTICES = 9409  # vertices 0-9408: the face (NOTES.md), where blotches sit
EYEBALL_RANGES = ((21451, 23020), (23021, 24590))
EYELASHES = 25351  # the eyelashes' first vertex; they run to the model's last
LASH_SHADE = 0.5  # the lashes' colour: the brows', this much darker
# Multi-PIE 68 landmarks outlining the brows (inner to outer) and the outer lips.
BROWS = ((21, 20, 19, 18, 17), (22, 23, 24, 25, 26))
OUTER_LIPS = tuple(range(48, 60))
PHOTOS = ("coffee", "rocket", "brick", "grass", "gravel", "hubble_deep_field",
          "immunohistochemistry")


@dataclass(frozen=True)
class Raster:
    """What each pixel sees. ``triangle`` indexes the triangle array that was rasterised (-1:
    nothing); ``barycentric`` holds the weights of the seen surface point in that triangle's
    corners (perspective-correct: ``weights @ corners`` is the 3D point, which projects onto the
    pixel centre; 0 where nothing); ``depth`` is its camera z in cm (inf where nothing). ``box``
    is (x0, y0, x1, y1) around every covered pixel, x1 and y1 exclusive."""

    depth: np.ndarray  # (H, W) float32
    triangle: np.ndarray  # (H, W) int32
    barycentric: np.ndarray  # (H, W, 3) float32
    box: tuple[int, int, int, int]

    @property
    def covered(self) -> np.ndarray:
        return self.triangle >= 0

    @classmethod
    def empty(cls, height: int, width: int) -> Raster:
        return cls(np.full((height, width), np.inf, np.float32),
                   np.full((height, width), -1, np.int32),
                   np.zeros((height, width, 3), np.float32), (0, 0, 0, 0))

    def clear(self) -> None:
        """Make it empty again: only inside the box, as nothing lies outside it."""
        x0, y0, x1, y1 = self.box
        self.depth[y0:y1, x0:x1] = np.inf
        self.triangle[y0:y1, x0:x1] = -1
        self.barycentric[y0:y1, x0:x1] = 0.0


def project(vertices_camera: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """(..., n, 2) pixel coordinates of camera-space points (..., n, 3): the pinhole of
    DESIGN.md, no lens distortion."""
    z = vertices_camera[..., 2]
    return np.stack([intrinsics.fx * vertices_camera[..., 0] / z + intrinsics.cx,
                     intrinsics.fy * vertices_camera[..., 1] / z + intrinsics.cy], axis=-1)


def rasterize(vertices_camera: np.ndarray, intrinsics: Intrinsics, triangles: np.ndarray, *,
              cull: bool = True, out: Raster | None = None) -> Raster:
    """The z-buffered raster of TRIANGLES (T, 3) over VERTICES_CAMERA (V, 3), on an image of the
    intrinsics' size. With CULL, triangles facing away from the camera are skipped (the ICT
    mesh winds counter-clockwise seen from outside); depth order is exact either way.

    OUT, an earlier raster of the same size, is reused (its arrays overwritten): touching fresh
    memory costs about as much as rasterising a face, so a renderer drawing every frame keeps
    one."""
    if out is not None and out.depth.shape == (intrinsics.height, intrinsics.width):
        out.clear()
    else:
        out = Raster.empty(intrinsics.height, intrinsics.width)
    points = project(vertices_camera.astype(np.float64), intrinsics)
    inverse_z = 1.0 / vertices_camera[:, 2].astype(np.float64)
    triangles = np.ascontiguousarray(triangles, dtype=np.int32)
    box = _rasterize(points, inverse_z, triangles, cull, out.depth, out.triangle,
                     out.barycentric)
    _resolve(inverse_z, triangles, out.depth, out.triangle, out.barycentric, box)
    return Raster(out.depth, out.triangle, out.barycentric, box)


class Renderer:
    """Draws one region of the ICT mesh: ``face`` or ``head`` (face, scalp, ears and neck) over
    live frames, or ``full`` (the head with eyeballs, mouth interior, gums and teeth) for
    synthetic frames. ``triangles`` index what ``vertices`` returns."""

    def __init__(self, model: FaceModel, region: str = "face") -> None:
        if region not in RENDER_REGIONS:
            known = ", ".join(RENDER_REGIONS)
            raise ValueError(f"unknown render region {region!r}; known: {known}")
        self.model = model
        self.region = region
        if region == "full":
            self._vertex_region = None
            self.triangles = model.triangles[model.triangles.max(axis=1) <= LAST_SOLID_VERTEX]
        else:
            self._vertex_region = region
            self.triangles = model.region_triangles(region)
        self.triangles = np.ascontiguousarray(self.triangles, dtype=np.int32)
        self._raster: Raster | None = None  # reused by the overlay drawing
        self._edges: tuple[np.ndarray, np.ndarray] | None = None  # made at the first wireframe

    def vertices(self, identity: ArrayLike | None = None,
                 expression: ArrayLike | None = None) -> np.ndarray:
        """Model-space vertices of this region (see ``FaceModel.vertices``)."""
        return self.model.vertices(identity, expression, region=self._vertex_region)

    def rasterize(self, vertices_camera: np.ndarray, intrinsics: Intrinsics) -> Raster:
        return rasterize(vertices_camera, intrinsics, self.triangles)

    def draw_mesh(self, image: np.ndarray, vertices_camera: np.ndarray, intrinsics: Intrinsics,
                  color: tuple[int, int, int] = MESH_COLOR, alpha: float = 0.6) -> np.ndarray:
        """Blend the mesh, Lambert-shaded by a light at the camera, over IMAGE (RGB uint8 of
        the intrinsics' size; modified and returned)."""
        _check_size(image, intrinsics)
        self._raster = rasterize(vertices_camera, intrinsics, self.triangles, out=self._raster)
        cosine = _lambert(vertices_camera, self.triangles, HEADLIGHT)
        light = OVERLAY_AMBIENT + (1 - OVERLAY_AMBIENT) * cosine
        raster = self._raster
        _shade(image, raster.triangle, raster.barycentric, raster.box, self.triangles,
               light[:, None] * np.float32(color), alpha)
        return image

    def draw_wireframe(self, image: np.ndarray, vertices_camera: np.ndarray,
                       intrinsics: Intrinsics, color: tuple[int, int, int] = WIRE_COLOR
                       ) -> np.ndarray:
        """Draw the mesh's polygon edges (quads, not their diagonals) where a triangle beside
        them is seen (hidden ones left out) onto IMAGE."""
        _check_size(image, intrinsics)
        if self._edges is None:
            self._edges = _polygon_edges(self.triangles)
        self._raster = rasterize(vertices_camera, intrinsics, self.triangles, out=self._raster)
        _draw_edges(image, self._raster.triangle, self._raster.box, len(self.triangles),
                    project(vertices_camera, intrinsics), *self._edges, np.uint8(color))
        return image


def _check_size(image: np.ndarray, intrinsics: Intrinsics) -> None:
    """The kernels write pixels unchecked: an image of another size must not reach them."""
    if image.shape != (intrinsics.height, intrinsics.width, 3) or image.dtype != np.uint8:
        raise ValueError(f"expected a {intrinsics.width}x{intrinsics.height} RGB uint8 image, got "
                         f"shape {image.shape} {image.dtype}")


def draw_axes(image: np.ndarray, rotation: ArrayLike, translation: ArrayLike,
              intrinsics: Intrinsics, length_cm: float = 10.0) -> np.ndarray:
    """The head's model axes (x red, y green, z blue, from the model origin) onto IMAGE."""
    ends = posed(np.vstack([np.zeros(3), np.eye(3) * length_cm]), rotation, translation)
    if (ends[:, 2] < NEAR_CM).any():
        return image
    origin, *tips = np.round(project(ends, intrinsics)).astype(np.int32)
    for tip, color in zip(tips, AXIS_COLORS, strict=True):
        cv2.line(image, tuple(origin), tuple(tip), color, 2, cv2.LINE_AA)
    return image


@dataclass(frozen=True)
class Appearance:
    """How a synthetic face looks: albedos (RGB, 0-255), one far light plus ambient, and what
    a real face has and a plain Lambert one lacks: eyelashes (a dark fringe on the lids, which
    a closed eye shows), a specular sheen (Blinn-Phong: its strength as a share of full white,
    and its shininess) and blotches of lighter and darker skin (freckles, flush, stubble,
    make-up, the shade of deep folds)."""

    skin: tuple[float, float, float]
    brows: tuple[float, float, float]
    lips: tuple[float, float, float]
    iris: tuple[float, float, float]
    light: tuple[float, float, float]  # camera space, toward the light (unit length)
    ambient: float  # the share of light that comes from everywhere
    lashes: float = 0.0  # the eyelashes' opacity: 0, none
    sheen: float = 0.0  # the highlight's peak, as a share of white
    shininess: float = 20.0  # the highlight's Blinn-Phong exponent: higher, smaller and sharper
    # (face vertex, radius cm, albedo change: -0.3 is 30% darker), placed on the neutral face
    blotches: tuple[tuple[int, float, float], ...] = ()

    @classmethod
    def random(cls, rng: np.random.Generator) -> Appearance:
        """A random tone family jittered a little, hair-coloured brows, reddened lips, an iris
        colour, a light from somewhere in front of the face, lashes from faint to heavy, a
        sheen from matte to oily, and up to six blotches, darkening more often than
        lightening."""
        skin = np.array(SKIN_TONES[rng.integers(len(SKIN_TONES))]) * rng.uniform(0.92, 1.06, 3)
        hair = np.array(HAIR_COLORS[rng.integers(len(HAIR_COLORS))])
        brows = np.minimum(hair, skin * rng.uniform(0.35, 0.6))
        lips = skin + (np.array(LIP_RED) - skin) * rng.uniform(0.3, 0.6)
        iris = np.array(IRIS_COLORS[rng.integers(len(IRIS_COLORS))]) * rng.uniform(0.85, 1.15)
        light = np.array([rng.uniform(-0.9, 0.9), rng.uniform(-0.9, 0.4), -1.0])
        ambient, lashes = float(rng.uniform(0.3, 0.55)), float(rng.uniform(0.2, 0.6))
        sheen, shininess = float(rng.uniform(0.0, 0.35)), float(rng.uniform(6.0, 40.0))
        blotches = tuple((int(rng.integers(FACE_VERTICES)), float(rng.uniform(0.4, 3.0)),
                          float(rng.uniform(-0.45, 0.15))) for _ in range(rng.integers(7)))
        return cls(tuple(skin.clip(0, 255)), tuple(brows), tuple(lips.clip(0, 255)),
                   tuple(iris.clip(0, 255)), tuple(light / np.linalg.norm(light)), ambient,
                   lashes, sheen, shininess, blotches)


class FacePaint:
    """Per-vertex albedo of the ICT mesh: skin with brows and lips painted in the face's
    texture space (placed by the 68 landmarks' UVs), eyes, teeth and mouth interior by their
    vertex ranges. Pupils and irises are painted per pixel (`eye_colors`), as the eyeball mesh
    is too coarse for round ones."""

    def __init__(self, model: FaceModel, texture_size: int = 512) -> None:
        count = model.vertex_count
        uvs = np.full((count, 2), np.inf, np.float32)  # the first UV of each vertex
        uvs[model.triangles.ravel()[::-1]] = model.uvs[model.triangle_uvs.ravel()[::-1]]
        self.brows = _sample(_brow_texture(uvs[model.landmarks68], texture_size), uvs)
        self.lips = _sample(_lip_texture(uvs[model.landmarks68], texture_size), uvs)
        self.part = np.zeros(count, np.int8)  # indexes the colours listed in `albedo`
        for part, (first, last) in enumerate((MOUTH_RANGE, GUMS_RANGE, TEETH_RANGE,
                                              *EYEBALL_RANGES), start=1):
            self.part[first:last + 1] = part
        self.eye_degrees = np.full(count, 180.0, np.float32)
        for first, last in EYEBALL_RANGES:
            self.eye_degrees[first:last + 1] = _degrees_from_axis(model.neutral[first:last + 1])

    def albedo(self, appearance: Appearance) -> np.ndarray:
        """(V, 3) float32 RGB."""
        skin = np.float32(appearance.skin)
        colors = np.float32([skin, MOUTH_SOCKET, GUMS_AND_TONGUE, TEETH, SCLERA, SCLERA])
        albedo = colors[self.part]
        for weight, paint in ((self.brows, appearance.brows), (self.lips, appearance.lips)):
            albedo += weight[:, None] * (np.float32(paint) - albedo)
        return albedo

    @staticmethod
    def eye_colors(degrees: np.ndarray, appearance: Appearance) -> np.ndarray:
        """(N, 3) eyeball albedo at angles DEGREES from the eye's axis: pupil, iris (darker at
        its rim), sclera, with soft borders."""
        pupil = _step(degrees, PUPIL_DEGREES)[:, None]
        iris = _step(degrees, IRIS_DEGREES)[:, None]
        rim = 1 - 0.45 * np.clip((degrees - IRIS_DEGREES + 5) / 5, 0, 1)[:, None]
        iris_color = np.float32(appearance.iris) * rim
        return (SCLERA + iris * (iris_color - SCLERA) + pupil * (PUPIL - iris_color)).astype(
            np.float32)


class SyntheticFace:
    """Renders whole heads (eyes, mouth interior, teeth) with a given appearance over a
    background: frames with known ground truth."""

    def __init__(self, model: FaceModel) -> None:
        self.model = model
        self.renderer = Renderer(model, "full")
        self.paint = FacePaint(model)
        corners = self.renderer.triangles
        self._eye_triangle = np.zeros(len(corners) + 1, bool)  # the last slot takes the -1s
        self._eye_triangle[:-1] = (self.paint.eye_degrees[corners] < 180).all(axis=1)
        self._neutral = self.renderer.vertices()  # where blotches are placed and measured
        self._lashes = np.ascontiguousarray(
            model.triangles[(model.triangles >= EYELASHES).all(axis=1)], dtype=np.int32)
        self._lash_raster: Raster | None = None  # reused, as the overlay reuses its raster

    def render(self, identity: ArrayLike | None, expression: ArrayLike | None,
               rotation: ArrayLike, translation: ArrayLike, intrinsics: Intrinsics,
               appearance: Appearance, background: np.ndarray) -> tuple[np.ndarray, Raster]:
        """(RGB uint8 image, raster) of the head posed by ROTATION and TRANSLATION (cm) in
        front of BACKGROUND (RGB uint8, the intrinsics' size)."""
        _check_size(background, intrinsics)
        vertices = posed(self.renderer.vertices(identity, expression), rotation, translation)
        triangles = self.renderer.triangles
        raster = rasterize(vertices, intrinsics, triangles)
        toward_light = np.array(appearance.light)
        light = appearance.ambient + (1 - appearance.ambient) * _lambert(
            vertices, triangles, toward_light)
        colors = self.paint.albedo(appearance) * self._blotched(appearance)[:, None] \
            * light[:, None]
        if appearance.sheen > 0:
            colors += 255 * appearance.sheen * _highlight(vertices, triangles, toward_light,
                                                          appearance.shininess)[:, None]
        image = background.copy()
        _shade(image, raster.triangle, raster.barycentric, raster.box, triangles, colors, 1.0)
        self._paint_eyes(image, raster, light, appearance)
        self._draw_lashes(image, vertices, intrinsics, raster, appearance)
        return cv2.GaussianBlur(image, (3, 3), 0.6), raster  # soften the aliased edges

    def _draw_lashes(self, image: np.ndarray, vertices: np.ndarray, intrinsics: Intrinsics,
                     raster: Raster, appearance: Appearance) -> None:
        """Blend the eyelashes over IMAGE where they lie in front of the head (RASTER). The ICT
        lashes are cards meant for a see-through texture, so they are drawn see-through, in
        one dark colour."""
        if appearance.lashes <= 0:
            return
        self._lash_raster = lashes = rasterize(vertices, intrinsics, self._lashes, cull=False,
                                               out=self._lash_raster)
        x0, y0, x1, y1 = lashes.box
        seen = lashes.depth[y0:y1, x0:x1] < raster.depth[y0:y1, x0:x1]
        patch = image[y0:y1, x0:x1]
        color = np.float32(appearance.brows) * LASH_SHADE
        patch[seen] = (patch[seen] + appearance.lashes * (color - patch[seen]) + 0.5).astype(
            np.uint8)

    def _blotched(self, appearance: Appearance) -> np.ndarray:
        """(V,) float32 albedo factors: 1, changed by each blotch with a Gaussian falloff
        around its vertex in the neutral face."""
        factor = np.ones(len(self._neutral), np.float32)
        for vertex, radius, change in appearance.blotches:
            distance2 = np.square(self._neutral[:FACE_VERTICES]
                                  - self._neutral[vertex]).sum(axis=1)
            factor[:FACE_VERTICES] += change * np.exp(-distance2 / (2 * radius ** 2))
        return factor

    def _paint_eyes(self, image: np.ndarray, raster: Raster, light: np.ndarray,
                    appearance: Appearance) -> None:
        """Repaint the eyeball pixels with round pupils and irises."""
        x0, y0, x1, y1 = raster.box
        seen = raster.triangle[y0:y1, x0:x1]
        rows, columns = np.nonzero(self._eye_triangle[seen])
        corners = self.renderer.triangles[seen[rows, columns]]
        weights = raster.barycentric[y0:y1, x0:x1][rows, columns]
        degrees = (weights * self.paint.eye_degrees[corners]).sum(axis=1)
        shade = (weights * light[corners]).sum(axis=1)
        color = FacePaint.eye_colors(degrees, appearance) * shade[:, None]
        image[y0 + rows, x0 + columns] = np.clip(color + 0.5, 0, 255).astype(np.uint8)


_SYNTHETIC_FACES: weakref.WeakKeyDictionary[FaceModel, SyntheticFace] = \
    weakref.WeakKeyDictionary()


def render_face(model: FaceModel, identity: ArrayLike | None, expression: ArrayLike | None,
                rotation: ArrayLike, translation: ArrayLike, intrinsics: Intrinsics,
                appearance: Appearance, background: np.ndarray) -> tuple[np.ndarray, Raster]:
    """`SyntheticFace.render` with the model's synthetic face made once and kept."""
    if model not in _SYNTHETIC_FACES:
        _SYNTHETIC_FACES[model] = SyntheticFace(model)
    return _SYNTHETIC_FACES[model].render(identity, expression, rotation, translation,
                                          intrinsics, appearance, background)


def random_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8: a flat colour, a gradient, blurred noise, or a crop of one of
    scikit-image's sample photos (none with a face in it)."""
    kind = rng.integers(4)
    if kind == 0:
        return np.broadcast_to(rng.uniform(0, 255, 3), (height, width, 3)).astype(np.uint8)
    if kind == 1:
        ramp = np.linspace(0, 1, width if rng.random() < 0.5 else height, dtype=np.float32)
        ramp = ramp[None, :, None] if len(ramp) == width else ramp[:, None, None]
        first, last = rng.uniform(0, 255, (2, 3))
        return np.broadcast_to(first + ramp * (last - first), (height, width, 3)).astype(
            np.uint8)
    if kind == 2:
        noise = rng.uniform(0, 255, (height // 8 + 1, width // 8 + 1, 3)).astype(np.float32)
        blurred = cv2.GaussianBlur(cv2.resize(noise, (width, height)), (0, 0), rng.uniform(2, 12))
        return blurred.clip(0, 255).astype(np.uint8)
    return _photo_crop(rng, width, height)


def _photo_crop(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A random crop of a sample photo, scaled to WIDTH x HEIGHT."""
    import skimage.data  # only here: it takes a while to import

    photo = getattr(skimage.data, PHOTOS[rng.integers(len(PHOTOS))])()
    if photo.ndim == 2:
        photo = np.repeat(photo[..., None], 3, axis=2)
    scale = rng.uniform(0.5, 1.0) * min(photo.shape[0] / height, photo.shape[1] / width)
    crop_height, crop_width = int(height * scale), int(width * scale)
    top = rng.integers(photo.shape[0] - crop_height + 1)
    left = rng.integers(photo.shape[1] - crop_width + 1)
    crop = photo[top:top + crop_height, left:left + crop_width, :3]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return cv2.resize(np.ascontiguousarray(crop), (width, height), interpolation=cv2.INTER_AREA)


def _brow_texture(landmark_uvs: np.ndarray, size: int) -> np.ndarray:
    """(size, size) float32 in [0, 1]: the brows, thick at the inner end and thinning out,
    a little below the landmarks' line (which follows the brows' upper edge)."""
    texture = np.zeros((size, size), np.float32)
    for brow in BROWS:
        points = _texture_pixels(landmark_uvs[list(brow)], size)
        points[:, 1] += 0.008 * size
        widths = np.linspace(0.028, 0.012, len(points) - 1) * size
        for start, end, width in zip(points[:-1], points[1:], widths, strict=True):
            cv2.line(texture, tuple(start.round().astype(int)), tuple(end.round().astype(int)),
                     0.9, max(int(round(width)), 1), cv2.LINE_AA)
    return cv2.GaussianBlur(texture, (0, 0), 0.005 * size)


def _lip_texture(landmark_uvs: np.ndarray, size: int) -> np.ndarray:
    """(size, size) float32 in [0, 1]: the lips, inside the outer lip landmarks."""
    texture = np.zeros((size, size), np.float32)
    outline = _texture_pixels(landmark_uvs[list(OUTER_LIPS)], size)
    cv2.fillPoly(texture, [np.round(outline * 4).astype(np.int32)], 1.0, cv2.LINE_AA, shift=2)
    return cv2.GaussianBlur(texture, (0, 0), 0.004 * size)


def _texture_pixels(uvs: np.ndarray, size: int) -> np.ndarray:
    """Texture coordinates as pixels of a SIZE texture of the face's UV tile (v up)."""
    return np.stack([uvs[:, 0] * size, (1 - uvs[:, 1]) * size], axis=1)


def _sample(texture: np.ndarray, uvs: np.ndarray) -> np.ndarray:
    """TEXTURE at each vertex's UV (nearest texel); 0 outside the face's tile (u, v in [0, 1))."""
    size = len(texture)
    inside = ((uvs >= 0) & (uvs < 1)).all(axis=1)
    values = np.zeros(len(uvs), np.float32)
    pixels = np.clip(_texture_pixels(uvs[inside], size).astype(int), 0, size - 1)
    values[inside] = texture[pixels[:, 1], pixels[:, 0]]
    return values


def _degrees_from_axis(eyeball: np.ndarray) -> np.ndarray:
    """Angle (degrees) of each eyeball vertex from the eye's axis: from the centre of the ball
    (its bounding box's width across) through the front of the cornea."""
    low, high = eyeball.min(axis=0), eyeball.max(axis=0)
    radius = (high[0] - low[0]) / 2
    centre = np.array([(low[0] + high[0]) / 2, (low[1] + high[1]) / 2, low[2] + radius])
    axis = eyeball[eyeball[:, 2].argmax()] - centre
    offsets = eyeball - centre
    cosine = offsets @ axis / np.linalg.norm(offsets, axis=1) / np.linalg.norm(axis)
    return np.degrees(np.arccos(np.clip(cosine, -1, 1)))


def _step(values: np.ndarray, edge: float) -> np.ndarray:
    """1 below EDGE and 0 above, over EYE_FEATHER_DEGREES."""
    return np.clip((edge - values) / EYE_FEATHER_DEGREES + 0.5, 0, 1)


def _polygon_edges(triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The edges (E, 2) of the mesh's polygons and the triangles on either side of each (E, 2;
    -1 on a border). A quad a b c d became triangles a b c and a c d, in a row (face-model.md),
    so a pair in that pattern marks its shared edge a c as a diagonal, not drawn."""
    first, second = triangles[:-1], triangles[1:]
    diagonals = first[(first[:, 0] == second[:, 0]) & (first[:, 2] == second[:, 1])][:, [0, 2]]
    sides = np.sort(triangles[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    owner = np.repeat(np.arange(len(triangles), dtype=np.int32), 3)

    def key(pairs: np.ndarray) -> np.ndarray:
        low, high = pairs.min(axis=1).astype(np.int64), pairs.max(axis=1)
        return low * (triangles.max() + 1) + high

    keys = key(sides)
    kept = ~np.isin(keys, key(diagonals))
    order = np.flatnonzero(kept)[np.argsort(keys[kept], kind="stable")]
    keys, sides, owner = keys[order], sides[order], owner[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    owners = np.full((len(starts), 2), -1, np.int32)
    owners[:, 0] = owner[starts]
    shared = np.r_[starts[1:] - starts[:-1], len(keys) - starts[-1]] > 1
    owners[shared, 1] = owner[starts[shared] + 1]
    return sides[starts].astype(np.int32), owners


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _rasterize(points, inverse_z, triangles, cull, depth, triangle, weights):  # pragma: no cover
    """Scan each triangle row by row over the span where its three edge functions are >= 0,
    keeping per pixel the nearest triangle and its screen-space weights; returns the box of the
    pixels written. DEPTH holds -1/z meanwhile (inf where empty): 1/z is linear on the screen,
    and comparing it needs no division per fragment."""
    height, width = depth.shape
    box_x0, box_y0, box_x1, box_y1 = width, height, 0, 0
    near = 1.0 / NEAR_CM
    for t in range(triangles.shape[0]):
        a, b, c = triangles[t, 0], triangles[t, 1], triangles[t, 2]
        ia, ib, ic = inverse_z[a], inverse_z[b], inverse_z[c]
        if not (0.0 < ia <= near and 0.0 < ib <= near and 0.0 < ic <= near):
            continue
        xa, ya = points[a, 0], points[a, 1]
        xb, yb = points[b, 0], points[b, 1]
        xc, yc = points[c, 0], points[c, 1]
        area = (xb - xa) * (yc - ya) - (xc - xa) * (yb - ya)
        # y points down in the image, so a counter-clockwise (front) face has negative area.
        if area == 0.0 or (cull and area > 0.0):
            continue
        x0 = max(np.ceil(min(xa, xb, xc)), 0.0)
        x1 = min(np.floor(max(xa, xb, xc)), width - 1.0)
        y0 = max(int(np.ceil(min(ya, yb, yc))), 0)
        y1 = min(int(np.floor(max(ya, yb, yc))), height - 1)
        # Screen-space weights are linear, w = sx * x + sy * y + s0 (each corner's share of the
        # area opposite it), and the third is 1 - the other two.
        inverse = 1.0 / area
        sxa, sya, s0a = (yb - yc) * inverse, (xc - xb) * inverse, (xb * yc - xc * yb) * inverse
        sxb, syb, s0b = (yc - ya) * inverse, (xa - xc) * inverse, (xc * ya - xa * yc) * inverse
        sxc = -sxa - sxb
        # Where each weight crosses the tolerance along a row: x = (tolerance - w(0, y)) * k.
        ka = 1.0 / sxa if sxa != 0.0 else 0.0
        kb = 1.0 / sxb if sxb != 0.0 else 0.0
        kc = 1.0 / sxc if sxc != 0.0 else 0.0
        for y in range(y0, y1 + 1):
            ra, rb = sya * y + s0a, syb * y + s0b
            lo, hi = _span(sxa, ka, ra, x0, x1)
            lo, hi = _span(sxb, kb, rb, lo, hi)
            lo, hi = _span(sxc, kc, 1.0 - ra - rb, lo, hi)
            if lo > hi:
                continue
            box_x0, box_x1 = min(box_x0, int(lo)), max(box_x1, int(hi) + 1)
            box_y0, box_y1 = min(box_y0, y), max(box_y1, y + 1)
            for x in range(int(lo), int(hi) + 1):
                wa = sxa * x + ra
                wb = sxb * x + rb
                key = -(wa * ia + wb * ib + (1.0 - wa - wb) * ic)
                if key < depth[y, x]:
                    depth[y, x] = key
                    triangle[y, x] = t
                    weights[y, x, 0] = wa
                    weights[y, x, 1] = wb
    if box_x0 >= box_x1:
        return 0, 0, 0, 0
    return box_x0, box_y0, box_x1, box_y1


@numba.njit(cache=True, inline="always")
def _span(slope, inverse_slope, offset, lo, hi):  # pragma: no cover
    """[lo, hi] narrowed to the whole x where slope * x + offset >= EDGE_TOLERANCE."""
    if slope > 0.0:
        lo = max(lo, np.ceil((EDGE_TOLERANCE - offset) * inverse_slope))
    elif slope < 0.0:
        hi = min(hi, np.floor((EDGE_TOLERANCE - offset) * inverse_slope))
    elif offset < EDGE_TOLERANCE:
        hi = lo - 1.0
    return lo, hi


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _resolve(inverse_z, triangles, depth, triangle, barycentric, box):  # pragma: no cover
    """-1/z to depth, and screen-space weights to perspective-correct ones (those of the 3D
    point): once per pixel in the box rather than once per fragment drawn."""
    x0, y0, x1, y1 = box
    for y in range(y0, y1):
        for x in range(x0, x1):
            t = triangle[y, x]
            if t < 0:
                continue
            pixel_z = -1.0 / depth[y, x]
            wa = barycentric[y, x, 0] * pixel_z * inverse_z[triangles[t, 0]]
            wb = barycentric[y, x, 1] * pixel_z * inverse_z[triangles[t, 1]]
            depth[y, x] = pixel_z
            barycentric[y, x, 0] = wa
            barycentric[y, x, 1] = wb
            barycentric[y, x, 2] = 1.0 - wa - wb


@numba.njit(cache=True, nogil=True)
def _vertex_normals(vertices, triangles):  # pragma: no cover
    """(V, 3) per-vertex normals: the sum of each vertex's triangles' area-weighted normals
    (not of unit length)."""
    normals = np.zeros((vertices.shape[0], 3))
    for t in range(triangles.shape[0]):
        a, b, c = triangles[t, 0], triangles[t, 1], triangles[t, 2]
        ux, uy, uz = vertices[b, 0] - vertices[a, 0], vertices[b, 1] - vertices[a, 1], \
            vertices[b, 2] - vertices[a, 2]
        vx, vy, vz = vertices[c, 0] - vertices[a, 0], vertices[c, 1] - vertices[a, 1], \
            vertices[c, 2] - vertices[a, 2]
        nx, ny, nz = uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx
        for corner in (a, b, c):
            normals[corner, 0] += nx
            normals[corner, 1] += ny
            normals[corner, 2] += nz
    return normals


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _lambert(vertices, triangles, light):  # pragma: no cover
    """Per-vertex cosine (V,) float32 between the vertex normal and the direction to the
    light, 0 when facing away. LIGHT (3,) is a direction toward a far light in camera space, or
    all zeros for a light at the camera."""
    normals = _vertex_normals(vertices, triangles)
    headlight = light[0] == 0.0 and light[1] == 0.0 and light[2] == 0.0
    cosine = np.zeros(vertices.shape[0], np.float32)
    for v in range(vertices.shape[0]):
        lx, ly, lz = light[0], light[1], light[2]
        if headlight:
            lx, ly, lz = -vertices[v, 0], -vertices[v, 1], -vertices[v, 2]
        dot = normals[v, 0] * lx + normals[v, 1] * ly + normals[v, 2] * lz
        if dot > 0.0:
            norms = (normals[v, 0] ** 2 + normals[v, 1] ** 2 + normals[v, 2] ** 2) \
                * (lx * lx + ly * ly + lz * lz)
            cosine[v] = dot / np.sqrt(norms)
    return cosine


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _highlight(vertices, triangles, light, shininess):  # pragma: no cover
    """Per-vertex Blinn-Phong highlight (V,) float32 in [0, 1] of a far light toward LIGHT
    (3,, unit length) seen from the camera: (normal . halfway)^SHININESS, where halfway lies
    between the directions to the light and to the camera; 0 where the light is behind."""
    normals = _vertex_normals(vertices, triangles)
    highlight = np.zeros(vertices.shape[0], np.float32)
    for v in range(vertices.shape[0]):
        nx, ny, nz = normals[v, 0], normals[v, 1], normals[v, 2]
        if nx * light[0] + ny * light[1] + nz * light[2] <= 0.0:
            continue
        to_camera = np.sqrt(vertices[v, 0] ** 2 + vertices[v, 1] ** 2 + vertices[v, 2] ** 2)
        hx = light[0] - vertices[v, 0] / to_camera
        hy = light[1] - vertices[v, 1] / to_camera
        hz = light[2] - vertices[v, 2] / to_camera
        dot = (nx * hx + ny * hy + nz * hz) / np.sqrt(
            (nx * nx + ny * ny + nz * nz) * (hx * hx + hy * hy + hz * hz))
        if dot > 0.0:
            highlight[v] = dot ** shininess
    return highlight


@numba.njit(cache=True, nogil=True)
def _shade(image, triangle, barycentric, box, triangles, colors, alpha):  # pragma: no cover
    """Blend the per-vertex COLORS (V, 3), interpolated over each covered pixel, into IMAGE."""
    x0, y0, x1, y1 = box
    for y in range(y0, y1):
        for x in range(x0, x1):
            t = triangle[y, x]
            if t < 0:
                continue
            a, b, c = triangles[t, 0], triangles[t, 1], triangles[t, 2]
            wa, wb, wc = barycentric[y, x, 0], barycentric[y, x, 1], barycentric[y, x, 2]
            for channel in range(3):
                value = wa * colors[a, channel] + wb * colors[b, channel] \
                    + wc * colors[c, channel]
                blended = alpha * value + (1.0 - alpha) * image[y, x, channel]
                image[y, x, channel] = min(max(blended + 0.5, 0.0), 255.0)


@numba.njit(cache=True, nogil=True)
def _draw_edges(image, triangle, box, count, points, edges, owners, color):  # pragma: no cover
    """Draw (Bresenham, one pixel wide) each edge with a triangle beside it that the raster
    TRIANGLE sees; COUNT is the number of triangles."""
    seen = np.zeros(count, np.bool_)
    x0, y0, x1, y1 = box
    for y in range(y0, y1):
        for x in range(x0, x1):
            if triangle[y, x] >= 0:
                seen[triangle[y, x]] = True
    height, width = triangle.shape
    for e in range(edges.shape[0]):
        left, right = owners[e, 0], owners[e, 1]
        if not (seen[left] or (right >= 0 and seen[right])):
            continue
        ua, va = points[edges[e, 0], 0], points[edges[e, 0], 1]
        ub, vb = points[edges[e, 1], 0], points[edges[e, 1], 1]
        if not (-width < ua < 2 * width and -width < ub < 2 * width
                and -height < va < 2 * height and -height < vb < 2 * height):
            continue  # a triangle that reaches far out of the picture: not worth the steps
        xa, ya, xb, yb = int(np.round(ua)), int(np.round(va)), int(np.round(ub)), int(np.round(vb))
        dx, dy = abs(xb - xa), -abs(yb - ya)
        sx, sy = (1 if xb > xa else -1), (1 if yb > ya else -1)
        error = dx + dy
        while True:
            if 0 <= xa < width and 0 <= ya < height:
                image[ya, xa] = color
            if xa == xb and ya == yb:
                break
            double = 2 * error
            if double >= dy:
                error += dy
                xa += sx
            if double <= dx:
                error += dx
                ya += sy
