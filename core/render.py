"""A small headless CPU renderer (numpy only) and an mp4 writer, for judging facial motion by eye.

Orthographic views framed once on the whole sequence (the camera never moves), a z-buffer, smooth
shading (Lambert key + fill light + ambient, lit at the vertices from their normals and
interpolated) on a neutral grey material. Rasterization is vectorized over the whole mesh:
scanline spans of every (triangle, pixel row) at once, expanded into fragments, and the nearest
fragment per pixel wins through one ``np.minimum.at`` on (depth, fragment) keys. No Python loop
per triangle or pixel, no OpenGL, no bpy.

A nearly closed, consistently wound mesh (a head) is drawn front faces first; its back faces show
only where no front face covers a pixel (through the mouth, the neck cut), as a dark cavity.
Other meshes (open sheets, mixed winding) are lit from both sides.

Videos are H.264 (yuv420p) mp4 with the audio muxed in (AAC), written by FFmpeg to a temp file in
the target folder and moved into place, so a failed or interrupted write leaves nothing behind.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import scipy.sparse as sp

from .errors import ImitatorError

log = logging.getLogger(__name__)

FFMPEG_HINT = "pip install imageio-ffmpeg==0.8.1 (or: apt-get install ffmpeg)"

# Rotations from core coordinates (metres, +Y up, face along +Z) to view coordinates
# (x right on screen, y up on screen, z towards the camera).
VIEWS: dict[str, np.ndarray] = {
    "front": np.eye(3),
    # camera on the subject's left (+X) looking at the profile; the face points to screen left
    "side": np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]),
}

ALBEDO = np.array([0.55, 0.55, 0.55], dtype=np.float32)  # neutral grey, linear
BACKGROUND = np.array([36, 38, 42], dtype=np.uint8)  # plain dark grey
# Lights in view space (towards the light): key from upper left front, weak fill from the right.
KEY_LIGHT = np.array([-0.6, 0.6, 0.8]) / np.linalg.norm([-0.6, 0.6, 0.8])
FILL_LIGHT = np.array([0.8, -0.2, 0.6]) / np.linalg.norm([0.8, -0.2, 0.6])
KEY, FILL, AMBIENT = 1.0, 0.18, 0.05
# The inside of a closed surface (seen e.g. through an open mouth when there is no mouth cavity
# mesh) is drawn dark and flat, like a shadowed cavity, instead of lit like skin.
INTERIOR = np.array([0.07, 0.035, 0.035], dtype=np.float32)

_GAMMA_LUT = (np.linspace(0.0, 1.0, 4096) ** (1 / 2.2) * 255.0 + 0.5).astype(np.uint8)

# ---------------------------------------------------------------------------------------------
# Input checks


def _check_mesh(vertices: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, V, 3) float64 vertices and (F, 3) int64 triangles, or a one-line ImitatorError."""
    v = np.asarray(vertices)
    if v.ndim == 2:
        v = v[None]
    if v.ndim != 3 or v.shape[2] != 3 or v.shape[0] == 0 or v.shape[1] == 0:
        raise ImitatorError(
            f"Cannot render vertices of shape {v.shape}: expected (frames, vertices, 3).")
    if not np.issubdtype(v.dtype, np.number):
        raise ImitatorError(f"Cannot render vertices of dtype {v.dtype}: expected numbers.")
    v = v.astype(np.float64, copy=False)
    if not np.isfinite(v).all():
        bad = np.flatnonzero(~np.isfinite(v).all(axis=(1, 2)))
        raise ImitatorError(
            f"Cannot render: the vertices hold NaN/Inf in {bad.size} frame(s) (first: frame "
            f"{bad[0]}).")
    t = np.asarray(triangles)
    if t.ndim != 2 or t.shape[1] != 3 or t.shape[0] == 0 or not np.issubdtype(t.dtype, np.integer):
        raise ImitatorError(
            f"Cannot render triangles of shape {t.shape} and dtype {t.dtype}: expected a non-empty "
            f"(faces, 3) integer array.")
    t = t.astype(np.int64, copy=False)
    if t.min() < 0 or t.max() >= v.shape[1]:
        raise ImitatorError(
            f"Cannot render: triangle vertex indices span {t.min()}..{t.max()} but the mesh has "
            f"{v.shape[1]} vertices (wrong topology?).")
    return v, t


def _check_size(size: int) -> int:
    if not isinstance(size, (int, np.integer)) or not 16 <= int(size) <= 4096:
        raise ImitatorError(
            f"Cannot render at size {size!r}: use a whole number of pixels in 16..4096.")
    return int(size)


# ---------------------------------------------------------------------------------------------
# Camera


@dataclass(frozen=True)
class Camera:
    """Orthographic camera: view rotation, centre of the framed box (view space), pixels/metre."""

    rotation: np.ndarray  # (3, 3) core -> view
    centre: np.ndarray  # (2,) view-space x, y at the image centre
    scale: float  # pixels per metre
    size: int  # square image, pixels

    def project(self, vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(..., V, 3) core coordinates -> pixel xy (..., V, 2), y down, and depth (..., V),
        larger = nearer."""
        p = vertices @ self.rotation.T
        xy = np.empty(p.shape[:-1] + (2,))
        xy[..., 0] = (p[..., 0] - self.centre[0]) * self.scale + self.size / 2
        xy[..., 1] = self.size / 2 - (p[..., 1] - self.centre[1]) * self.scale
        return xy, p[..., 2]


def frame_camera(vertices: np.ndarray, view: str = "front", size: int = 512,
                 focus: np.ndarray | None = None, margin: float = 0.06) -> Camera:
    """A camera framing the bounding box of all frames (or of the ``focus`` vertices), square."""
    if view not in VIEWS:
        raise ImitatorError(f"Unknown view {view!r}: choose one of {', '.join(VIEWS)}.")
    rot = VIEWS[view]
    if focus is not None:
        focus = np.asarray(focus)
        if (focus.ndim != 1 or focus.size == 0 or not np.issubdtype(focus.dtype, np.integer)
                or focus.min() < 0 or focus.max() >= vertices.shape[1]):
            raise ImitatorError(
                f"Cannot frame the view on vertices {focus.shape} {focus.dtype}: expected "
                f"indices in 0..{vertices.shape[1] - 1}.")
    pts = vertices if focus is None else vertices[:, focus]
    p = pts.reshape(-1, 3) @ rot.T
    lo, hi = p[:, :2].min(axis=0), p[:, :2].max(axis=0)
    extent = max(float((hi - lo).max()), 1e-9) * (1.0 + 2.0 * margin)
    return Camera(rot, (lo + hi) / 2, size / extent, size)


# ---------------------------------------------------------------------------------------------
# Rasterization


def _vertex_normal_matrix(triangles: np.ndarray, num_vertices: int) -> sp.csr_matrix:
    """(V, F) incidence: vertex normals = M @ area-weighted face normals."""
    f = triangles.shape[0]
    rows = triangles.reshape(-1)
    cols = np.repeat(np.arange(f), 3)
    return sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(num_vertices, f))


def _ranges(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For counts (n,): owner (sum,) = which entry each item belongs to, and its rank in it."""
    owner = np.repeat(np.arange(counts.size), counts)
    starts = np.cumsum(counts) - counts
    return owner, np.arange(owner.size) - starts[owner]


def _pixel_boxes(xy: np.ndarray, tris: np.ndarray, size: int) -> tuple[np.ndarray, ...]:
    """Per triangle: first/last pixel row and column whose centres its bounding box holds."""
    a, b, c = xy[tris[:, 0]], xy[tris[:, 1]], xy[tris[:, 2]]
    lo = np.minimum(np.minimum(a, b), c)
    hi = np.maximum(np.maximum(a, b), c)
    i0 = np.maximum(np.ceil(lo[:, 1] - 0.5), 0).astype(np.int64)
    i1 = np.minimum(np.floor(hi[:, 1] - 0.5), size - 1).astype(np.int64)
    j0 = np.maximum(np.ceil(lo[:, 0] - 0.5), 0).astype(np.int64)
    j1 = np.minimum(np.floor(hi[:, 0] - 0.5), size - 1).astype(np.int64)
    return i0, i1, j0, j1


def _touching(xy: np.ndarray, tris: np.ndarray, candidates: np.ndarray, mask: np.ndarray,
              size: int) -> np.ndarray:
    """The candidates whose pixel bounding box holds at least one pixel set in ``mask``."""
    if candidates.size == 0:
        return candidates
    i0, i1, j0, j1 = _pixel_boxes(xy, tris[candidates], size)
    table = np.zeros((size + 1, size + 1), dtype=np.int32)  # summed-area table of the mask
    table[1:, 1:] = mask.reshape(size, size).cumsum(0, dtype=np.int32).cumsum(1, dtype=np.int32)
    ok = (i1 >= i0) & (j1 >= j0)
    i0, i1, j0, j1 = (np.where(ok, x, 0) for x in (i0, i1, j0, j1))
    count = table[i1 + 1, j1 + 1] - table[i0, j1 + 1] - table[i1 + 1, j0] + table[i0, j0]
    return candidates[ok & (count > 0)]


def _rasterize(xy: np.ndarray, depth: np.ndarray, tris: np.ndarray, size: int,
               candidates: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Visible triangle per pixel: covered pixel indices (N,) (row-major) and their triangle (N,)
    (an index into ``tris``), among all triangles or the ``candidates`` (indices).

    Scanline spans, all at once: every (triangle, pixel row) pair gets the x-interval where the
    row's centre line crosses the triangle; the intervals expand into fragments; the nearest
    fragment per pixel wins. Pixel (i, j) has its centre at (j + 0.5, i + 0.5); centres exactly
    on an edge belong to both neighbours (each edge is computed the same way for both), so
    shared edges never leave cracks.
    """
    if candidates is None:
        candidates = np.arange(len(tris))
    tris = tris[candidates]
    a, b, c = xy[tris[:, 0]], xy[tris[:, 1]], xy[tris[:, 2]]  # (F, 2) each
    area2 = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    i0, i1, j0_, j1_ = _pixel_boxes(xy, tris, size)
    keep = (np.abs(area2) > 1e-12) & (i1 >= i0) & (j1_ >= j0_)
    idx = np.flatnonzero(keep)
    empty = np.zeros(0, np.int64)
    if idx.size == 0:
        return empty, empty
    # Depth as a plane over the image: z = zx * x + zy * y + z0 (exact for orthographic views).
    da, db, dc = depth[tris[idx, 0]], depth[tris[idx, 1]], depth[tris[idx, 2]]
    aa, bb, cc, ar = a[idx], b[idx], c[idx], area2[idx]
    zx = ((db - da) * (cc[:, 1] - aa[:, 1]) - (dc - da) * (bb[:, 1] - aa[:, 1])) / ar
    zy = ((dc - da) * (bb[:, 0] - aa[:, 0]) - (db - da) * (cc[:, 0] - aa[:, 0])) / ar
    z0 = da - zx * aa[:, 0] - zy * aa[:, 1]
    # Edges with their lower-y end first (so a shared edge is computed identically), as
    # x(y) = px + (y - py) * slope for py <= y <= qy; horizontal edges are skipped.
    edges = []
    for u, v in ((aa, bb), (bb, cc), (cc, aa)):
        swap = u[:, 1] > v[:, 1]
        p = np.where(swap[:, None], v, u)
        q = np.where(swap[:, None], u, v)
        dy = q[:, 1] - p[:, 1]
        slope = np.divide(q[:, 0] - p[:, 0], dy, out=np.zeros_like(dy), where=dy > 0)
        edges.append((p[:, 0], p[:, 1], np.where(dy > 0, q[:, 1], -np.inf), slope))
    # One entry per (triangle, row)
    row_tri, rank = _ranges((i1[idx] - i0[idx] + 1).astype(np.int64))
    row = i0[idx][row_tri] + rank
    y = row + 0.5
    xl = np.full(y.shape, np.inf)
    xr = np.full(y.shape, -np.inf)
    for px, py, qy, slope in edges:
        py_r = py[row_tri]
        on = (y >= py_r) & (y <= qy[row_tri])
        x = px[row_tri] + (y - py_r) * slope[row_tri]
        np.minimum(xl, np.where(on, x, np.inf), out=xl)
        np.maximum(xr, np.where(on, x, -np.inf), out=xr)
    j0 = np.maximum(np.ceil(xl - 0.5), 0)
    j1 = np.minimum(np.floor(xr - 0.5), size - 1)
    count = np.where(j1 >= j0, j1 - j0 + 1, 0).astype(np.int64)
    # One entry per fragment
    frag_row, rank = _ranges(count)
    col = j0[frag_row].astype(np.int64) + rank
    t = row_tri[frag_row]
    pix = row.astype(np.int64)[frag_row] * size + col
    z = zx[t] * (col + 0.5) + zy[t] * y[frag_row] + z0[t]
    # Depth test: key = quantised distance behind the nearest fragment (30 bits) | fragment number.
    zmax, zmin = z.max(), z.min()
    q = ((zmax - z) * ((1 << 30) / max(zmax - zmin, 1e-12))).astype(np.int64)
    key = (q << 32) | np.arange(z.size, dtype=np.int64)
    none = np.iinfo(np.int64).max
    best = np.full(size * size, none, dtype=np.int64)
    np.minimum.at(best, pix, key)
    covered = np.flatnonzero(best != none)
    return covered, candidates[idx[t[best[covered] & 0xFFFFFFFF]]]


def _barycentric(xy: np.ndarray, tris: np.ndarray, pix: np.ndarray, tri: np.ndarray, size: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights (N,) x 3 of each covered pixel's centre in its triangle's three corners."""
    a, b, c = xy[tris[:, 0]], xy[tris[:, 1]], xy[tris[:, 2]]
    area2 = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    inv = 1.0 / np.where(area2 == 0, 1.0, area2)
    # Per triangle, the weights of a and b as planes over the image: w = kx * x + ky * y + k0.
    ax, ay = (b[:, 1] - c[:, 1]) * inv, (c[:, 0] - b[:, 0]) * inv
    a0 = -(ax * c[:, 0] + ay * c[:, 1])
    bx, by = (c[:, 1] - a[:, 1]) * inv, (a[:, 0] - c[:, 0]) * inv
    b0 = -(bx * c[:, 0] + by * c[:, 1])
    px, py = pix % size + 0.5, pix // size + 0.5
    wa = ax[tri] * px + ay[tri] * py + a0[tri]
    wb = bx[tri] * px + by[tri] * py + b0[tri]
    return wa, wb, 1.0 - wa - wb


def mesh_orientation(verts: np.ndarray, tris: np.ndarray) -> int:
    """+1 if the triangles wind counter-clockwise seen from outside (normals point out), -1 if
    clockwise, 0 if it cannot tell (open sheets, loose triangles, mixed winding).

    Only a nearly closed surface (at most 10% boundary edges) with consistent winding (each
    shared edge runs both ways) has an inside; the sign of its volume then says which side it is.
    Vertices at the same position (seams, split normals) count as one.
    """
    scale = max(float(np.ptp(verts, axis=0).max()), 1e-12)
    _, first, weld = np.unique(np.round(verts / (scale * 1e-7)), axis=0, return_index=True,
                               return_inverse=True)
    points = verts[first]
    t = weld.reshape(-1)[tris]
    t = t[(t[:, 0] != t[:, 1]) & (t[:, 1] != t[:, 2]) & (t[:, 2] != t[:, 0])]
    if t.size == 0:
        return 0
    n = len(points)
    directed = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    if np.unique(directed[:, 0] * n + directed[:, 1]).size < len(directed):
        return 0  # an edge run the same way twice: mixed winding
    pairs = np.sort(directed, axis=1)
    uses = np.unique(pairs[:, 0] * n + pairs[:, 1], return_counts=True)[1]
    if (uses == 1).sum() > 0.1 * uses.size:
        return 0  # too open to have an inside
    p = points - points[np.unique(t)].mean(axis=0)
    vol = np.einsum("ij,ij->i", p[t[:, 0]], np.cross(p[t[:, 1]], p[t[:, 2]]))
    total, absolute = vol.sum(), np.abs(vol).sum()
    if absolute <= 0 or abs(total) < 0.5 * absolute:
        return 0
    return 1 if total > 0 else -1


def _shade(camera: Camera, verts: np.ndarray, tris: np.ndarray, normal_matrix: sp.csr_matrix,
           colors: np.ndarray | None, orientation: int = 0, blank: np.ndarray | None = None
           ) -> np.ndarray:
    """One frame (size, size, 3) uint8: lighting per vertex, interpolated over the triangles.

    ``blank``: a (size * size, 3) background image to start from (copied).
    """
    size = camera.size
    xy, depth = camera.project(verts)
    view = verts @ camera.rotation.T
    face_n = np.cross(view[tris[:, 1]] - view[tris[:, 0]], view[tris[:, 2]] - view[tris[:, 0]])
    if orientation == 0:
        pix, tri = _rasterize(xy, depth, tris, size)
    else:
        # A closed surface: front faces first; back faces show only through holes (pixels no
        # front face covers), and only those touching such pixels are rasterized.
        facing = face_n[:, 2] * orientation > 0
        pix, tri = _rasterize(xy, depth, tris, size, np.flatnonzero(facing))
        hole = np.ones(size * size, dtype=bool)
        hole[pix] = False
        behind = _touching(xy, tris, np.flatnonzero(~facing), hole, size)
        if behind.size:
            pix_b, tri_b = _rasterize(xy, depth, tris, size, behind)
            through = hole[pix_b]
            pix, tri = np.concatenate([pix, pix_b[through]]), np.concatenate([tri, tri_b[through]])
    if blank is None:
        blank = np.tile(BACKGROUND, (size * size, 1))
    image = blank.copy()
    if pix.size == 0:
        return image.reshape(size, size, 3)
    vert_n = normal_matrix @ face_n
    vert_n /= np.maximum(np.linalg.norm(vert_n, axis=1, keepdims=True), 1e-20)
    if orientation < 0:
        vert_n *= -1.0  # outward normals

    def lambert(n: np.ndarray) -> np.ndarray:
        return (KEY * np.maximum(n @ KEY_LIGHT, 0.0) + FILL * np.maximum(n @ FILL_LIGHT, 0.0)
                + AMBIENT)

    # A triangle seen from behind is lit as if its normals faced the camera.
    light_front, light_back = lambert(vert_n), lambert(-vert_n)
    back = face_n[tri, 2] * (orientation or 1) < 0
    wa, wb, wc = _barycentric(xy, tris, pix, tri, size)
    t = tris[tri]
    light = light_front[t[:, 0]] * wa + light_front[t[:, 1]] * wb + light_front[t[:, 2]] * wc
    if back.any():
        tb = t[back]
        light[back] = (light_back[tb[:, 0]] * wa[back] + light_back[tb[:, 1]] * wb[back]
                       + light_back[tb[:, 2]] * wc[back])
    lut = _GAMMA_LUT.size - 1
    if colors is None and np.all(ALBEDO == ALBEDO[0]):  # grey: one channel, broadcast
        level = np.clip(light * float(ALBEDO[0]), 0.0, 1.0) * lut + 0.5
        image[pix] = _GAMMA_LUT[level.astype(np.int32)][:, None]
    else:
        albedo = ALBEDO if colors is None else (
            colors[t[:, 0]] * wa[:, None] + colors[t[:, 1]] * wb[:, None]
            + colors[t[:, 2]] * wc[:, None])
        rgb = np.clip(light[:, None] * albedo, 0.0, 1.0)
        image[pix] = _GAMMA_LUT[(rgb * lut + 0.5).astype(np.int32)]  # linear -> display (2.2)
    if orientation != 0 and back.any():
        # The inside of a closed surface (e.g. through an open mouth) is a dark, flat cavity.
        rgb = np.clip(INTERIOR * (0.6 + 0.4 * light[back, None]), 0.0, 1.0)
        image[pix[back]] = _GAMMA_LUT[(rgb * lut + 0.5).astype(np.int32)]
    return image.reshape(size, size, 3)
    if colors is None:
        rgb = light[:, None] * ALBEDO
    else:
        rgb = light[:, None] * (colors[t[:, 0]] * wa[:, None] + colors[t[:, 1]] * wb[:, None]
                                + colors[t[:, 2]] * wc[:, None])
    if orientation != 0:
        # The inside of a closed surface (e.g. through an open mouth) is a dark, flat cavity.
        rgb[back] = INTERIOR * (0.6 + 0.4 * light[back, None])
    # Linear -> display (gamma 2.2) through a lookup table
    image[pix] = _GAMMA_LUT[(np.clip(rgb, 0.0, 1.0) * lut + 0.5).astype(np.int32)]
    return image.reshape(size, size, 3)


def iter_frames(vertices: np.ndarray, triangles: np.ndarray, size: int = 512, view: str = "front",
                focus: np.ndarray | None = None, colors: np.ndarray | None = None,
                margin: float | None = None) -> Iterator[np.ndarray]:
    """Render frame by frame (for long sequences): yields (size, size, 3) uint8."""
    verts, tris = _check_mesh(vertices, triangles)
    size = _check_size(size)
    if colors is not None:
        colors = np.asarray(colors, dtype=np.float32)
        if colors.shape != (verts.shape[1], 3) or not np.isfinite(colors).all():
            raise ImitatorError(
                f"Vertex colours of shape {colors.shape}: expected ({verts.shape[1]}, 3) in 0..1.")
    if margin is None:
        margin = 0.06 if focus is None else 0.15
    camera = frame_camera(verts, view, size, focus, margin)
    normal_matrix = _vertex_normal_matrix(tris, verts.shape[1])
    orientation = mesh_orientation(verts[0], tris)
    blank = np.tile(BACKGROUND, (size * size, 1))
    for frame in verts:
        yield _shade(camera, frame, tris, normal_matrix, colors, orientation, blank)


def render_frames(vertices: np.ndarray, triangles: np.ndarray, size: int = 512,
                  view: str = "front", focus: np.ndarray | None = None,
                  colors: np.ndarray | None = None) -> np.ndarray:
    """(T, V, 3) metres (+Y up, face +Z) and (F, 3) triangles -> (T, size, size, 3) uint8.

    ``view``: "front" or "side"; ``focus``: vertex indices to frame on (e.g. the lips) instead of
    the whole mesh; ``colors``: optional (V, 3) linear RGB in 0..1 instead of the grey material.
    """
    frames = iter_frames(vertices, triangles, size, view, focus, colors)
    first = next(frames)
    out = np.empty((np.asarray(vertices).shape[0] if np.ndim(vertices) == 3 else 1,)
                   + first.shape, dtype=np.uint8)
    out[0] = first
    for i, frame in enumerate(frames, start=1):
        out[i] = frame
    return out


def iter_panels(vertices: np.ndarray, triangles: np.ndarray, size: int = 512, side: bool = False,
                mouth: np.ndarray | None = None, colors: np.ndarray | None = None
                ) -> Iterator[np.ndarray]:
    """Front view, plus a profile and/or a close-up framed on ``mouth`` vertices, side by side."""
    streams = [iter_frames(vertices, triangles, size, "front", colors=colors)]
    if side:
        streams.append(iter_frames(vertices, triangles, size, "side", colors=colors))
    if mouth is not None and len(mouth):
        streams.append(iter_frames(vertices, triangles, size, "front", focus=mouth, colors=colors))
    for panels in zip(*streams):
        yield panels[0] if len(panels) == 1 else np.concatenate(panels, axis=1)


# ---------------------------------------------------------------------------------------------
# Video


def find_ffmpeg() -> str:
    """Path of an FFmpeg executable: imageio-ffmpeg's bundled one, else ``ffmpeg`` on PATH."""
    try:
        import imageio_ffmpeg  # type: ignore[import-not-found]

        exe = imageio_ffmpeg.get_ffmpeg_exe()
        if exe and Path(exe).is_file():
            return str(exe)
    except Exception:  # not installed, or its binary missing: fall back to PATH
        pass
    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    raise ImitatorError(f"FFmpeg is needed to write videos but was not found: {FFMPEG_HINT}.")


def _ffmpeg_error(stderr_path: Path, what: str) -> ImitatorError:
    text = stderr_path.read_text(errors="replace")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return ImitatorError(f"FFmpeg failed to {what}: {lines[-1] if lines else 'no message'}")


def write_video(frames: np.ndarray | Iterable[np.ndarray], fps: float, out_path: str | Path,
                audio: tuple[np.ndarray, int] | None = None,
                audio_path: str | Path | None = None, crf: int = 18,
                num_frames: int | None = None) -> Path:
    """Encode RGB frames ((T, H, W, 3) uint8 or an iterable of (H, W, 3)) as an H.264 mp4.

    Audio, from ``audio=(samples, sample_rate)`` or ``audio_path``, is muxed as AAC and cut to the
    video's length when that is known (an array, or ``num_frames`` for an iterable); every frame
    is kept. The file appears at ``out_path`` only once complete.
    """
    if num_frames is None and hasattr(frames, "__len__"):
        num_frames = len(frames)
    out_path = Path(out_path)
    if not (np.isfinite(fps) and fps > 0):
        raise ImitatorError(f"Cannot write {out_path}: fps must be positive, got {fps!r}.")
    if audio is not None and audio_path is not None:
        raise ImitatorError("write_video takes audio samples or an audio file, not both.")
    if audio_path is not None:
        audio_path = Path(audio_path)
        if not audio_path.is_file():
            raise ImitatorError(f"Audio file not found: {audio_path}")
    if audio is not None:
        samples, rate = np.asarray(audio[0]), int(audio[1])
        if samples.ndim not in (1, 2) or samples.size == 0 or rate <= 0:
            raise ImitatorError(
                f"Cannot write {out_path}: audio must be non-empty (N,) or (N, channels) samples "
                f"with a positive sample rate.")
        if not np.isfinite(samples).all():
            raise ImitatorError(f"Cannot write {out_path}: the audio samples hold NaN/Inf.")
    ffmpeg = find_ffmpeg()
    iterator = iter(frames)
    first = next(iterator, None)
    if first is None:
        raise ImitatorError(f"Cannot write {out_path}: no frames.")
    first = np.asarray(first)
    if first.ndim != 3 or first.shape[2] != 3 or first.dtype != np.uint8:
        raise ImitatorError(
            f"Cannot write {out_path}: frames must be (H, W, 3) uint8, got {first.shape} "
            f"{first.dtype}.")
    height, width = first.shape[:2]

    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".imitator-video-", dir=out_path.parent) as tmp_dir:
        tmp = Path(tmp_dir)
        tmp_mp4, log_path = tmp / "video.mp4", tmp / "ffmpeg.log"
        cmd = [ffmpeg, "-y", "-hide_banner", "-loglevel", "error",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
               "-framerate", repr(float(fps)), "-i", "pipe:0"]
        if audio is not None:
            import soundfile as sf

            audio_path = tmp / "audio.wav"
            sf.write(str(audio_path), samples.astype(np.float32), rate, subtype="FLOAT")
        if audio_path is not None:
            if num_frames:
                cmd += ["-t", f"{num_frames / float(fps):.6f}"]  # read no more audio than video
            cmd += ["-i", str(audio_path), "-map", "0:v:0", "-map", "1:a:0?",
                    "-c:a", "aac", "-b:a", "160k"]
        cmd += ["-c:v", "libx264", "-preset", "veryfast", "-crf", str(int(crf)),
                "-pix_fmt", "yuv420p", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2",
                "-movflags", "+faststart", "-f", "mp4", str(tmp_mp4)]
        count = 0
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    stderr=log_file)
            try:
                for frame in _chain(first, iterator):
                    frame = np.asarray(frame)
                    if frame.shape != (height, width, 3) or frame.dtype != np.uint8:
                        raise ImitatorError(
                            f"Cannot write {out_path}: frame {count} is {frame.shape} "
                            f"{frame.dtype}, the first was ({height}, {width}, 3) uint8.")
                    proc.stdin.write(np.ascontiguousarray(frame).tobytes())
                    count += 1
                proc.stdin.close()
                rc = proc.wait()
            except BrokenPipeError:
                rc = proc.wait()
            except BaseException:
                proc.kill()
                proc.wait()
                raise
        if rc != 0:
            raise _ffmpeg_error(log_path, f"write {out_path}")
        os.replace(tmp_mp4, out_path)
    log.info("Wrote %s (%d frames, %dx%d, %.3g fps%s)", out_path, count, width, height, fps,
             ", with audio" if audio_path is not None else "")
    return out_path


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def render_preview(vertices: np.ndarray, triangles: np.ndarray, fps: float,
                   out_path: str | Path, audio_path: str | Path | None = None, size: int = 512,
                   side: bool = False, mouth: np.ndarray | None = None,
                   colors: np.ndarray | None = None) -> Path:
    """Render an animation (front view; optional profile and mouth close-up) to an mp4 with audio.

    Frames are rendered and encoded as a stream, so long sequences need little memory.
    """
    verts, tris = _check_mesh(vertices, triangles)  # fail before FFmpeg starts
    _check_size(size)
    if audio_path is not None and not Path(audio_path).is_file():
        raise ImitatorError(f"Audio file not found: {audio_path}")
    find_ffmpeg()
    frames = iter_panels(verts, tris, size, side=side, mouth=mouth, colors=colors)
    return write_video(frames, fps, out_path, audio_path=audio_path, num_frames=len(verts))


def probe_video(path: str | Path) -> dict:
    """Frame count, size, codecs, duration (s) and whether there is audio, read back with FFmpeg."""
    path = Path(path)
    if not path.is_file():
        raise ImitatorError(f"Video not found: {path}")
    ffmpeg = find_ffmpeg()
    res = subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0",
                          "-c", "copy", "-f", "null", "-"], capture_output=True, text=True)
    if res.returncode != 0:
        msg = [ln for ln in res.stderr.splitlines() if ln.strip()]
        raise ImitatorError(f"Cannot read the video {path}: {msg[-1] if msg else 'FFmpeg failed'}")
    video = re.search(r"Stream #\S+.*?: Video: (\w+).*?, (\d+)x(\d+)", res.stderr)
    frames = re.findall(r"frame=\s*(\d+)", res.stderr)
    dur = re.search(r"Duration: (\d+):(\d+):([\d.]+)", res.stderr)
    return {
        "duration": (int(dur.group(1)) * 3600 + int(dur.group(2)) * 60 + float(dur.group(3))
                     if dur else None),
        "codec": video.group(1) if video else None,
        "width": int(video.group(2)) if video else 0,
        "height": int(video.group(3)) if video else 0,
        "frames": int(frames[-1]) if frames else 0,
        "pix_fmt": (m.group(1) if (m := re.search(r"Video: \w+[^,]*, (\w+)", res.stderr))
                    else None),
        "audio": bool(re.search(r"Stream #\S+.*?: Audio: ", res.stderr)),
        "audio_codec": (m.group(1) if (m := re.search(r"Audio: (\w+)", res.stderr)) else None),
    }


def read_video_frames(path: str | Path) -> np.ndarray:
    """Decode an mp4 back to (T, H, W, 3) uint8 (for tests and checks)."""
    info = probe_video(path)
    res = subprocess.run([find_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i",
                          str(path), "-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True)
    if res.returncode != 0:
        msg = res.stderr.decode(errors="replace").strip().splitlines()
        raise ImitatorError(
            f"Cannot decode the video {path}: {msg[-1] if msg else 'FFmpeg failed'}")
    h, w = info["height"], info["width"]
    return np.frombuffer(res.stdout, dtype=np.uint8).reshape(-1, h, w, 3)


__all__ = [
    "Camera", "VIEWS", "frame_camera", "find_ffmpeg", "iter_frames", "iter_panels",
    "probe_video", "read_video_frames", "render_frames", "render_preview", "write_video",
]
