"""Head fit: the model's head registered onto a head mesh of any topology, scale and pose.

Steps: a similarity (scale, rotation, translation) from the landmarks the user gave, or from
trimmed ICP started in the 24 axis-aligned orientations; then a landmark-guided non-rigid ICP
whose displacement field lives on a few hundred nodes spread over the model head and blended
by *geodesic* distance, so the upper and lower lip (1.4 mm apart across the mouth slit, 58 mm
apart along the surface) deform independently. After a coarse pass the target's vertices
around the mouth are told upper from lower lip by geodesic distance on the target itself
(the slit is open), and from then on upper matches only upper and lower only lower.

The result (``HeadFit``) maps every target vertex to a point of the model head's surface
(triangle + barycentric coordinates) with the local rotation of the fitted surface there, and
every model vertex to a point of the target (for clips recorded on the target's topology).
It is saved as one safetensors file (``.imfit``) whose metadata holds the JSON part.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import scipy.sparse.csgraph as csgraph
from scipy.spatial import cKDTree

from ..errors import ImitatorError
from . import mesh_geometry as mg
from .head import Head, fit_path_for, topology_hash  # noqa: F401 (fit_path_for: re-exported)

log = logging.getLogger(__name__)

FIT_FORMAT = 1
NUM_NODES = 300  # deformation nodes on the model head
NODES_PER_VERTEX = 8
Progress = Callable[[float, str], None]

# target vertex groups for the mapping (rows of the allowed-triangle table)
_NEUTRAL, _UPPER, _LOWER, _LOOSE = 0, 1, 2, 3


@dataclass
class HeadFit:
    """Correspondences between the model head (source) and one target mesh."""

    source_topology: str
    target_topology: str
    target_name: str
    corners: np.ndarray  # (Vt, 3) int32: the model-head triangle each target vertex lies on
    bary: np.ndarray  # (Vt, 3) float32 barycentric coordinates on it
    rotation: np.ndarray  # (Vt, 3, 3) float32 source offsets -> target axes (global and local)
    scale: float  # target units per source unit
    back_corners: np.ndarray  # (Vs, 3) int32: the target triangle each model vertex lies on
    back_bary: np.ndarray  # (Vs, 3) float32
    back_rotation: np.ndarray  # (Vs, 3, 3) float32 target offsets -> model axes (global and local)
    lip_centres: np.ndarray  # (2,) int32 target upper, lower lip centre vertex
    landmarks: dict[str, list[float]] = field(default_factory=dict)  # target coordinates
    fitted: np.ndarray | None = None  # (Vs, 3) float32 the model head fitted onto the target
    error_mean: float = 0.0  # target vertex to fitted surface, target units
    error_max: float = 0.0
    seconds: float = 0.0
    target_vertices: np.ndarray | None = None  # (Vt, 3) float32 the target at rest
    target_triangles: np.ndarray | None = None  # (F, 3) int32

    def target_head(self) -> Head:
        """The target mesh the fit was made on, as a Head (triangles)."""
        if self.target_vertices is None or self.target_triangles is None:
            raise ImitatorError(f"the head fit for '{self.target_name}' holds no mesh; pass the head mesh "
                                f"itself (OBJ) or fit it again")
        t = np.asarray(self.target_triangles, np.int32)
        return Head(self.target_name, np.asarray(self.target_vertices, np.float32),
                    np.full(len(t), 3, np.int32), t.ravel())

    @property
    def num_target_vertices(self) -> int:
        return int(len(self.corners))

    def check_target(self, name: str, num_vertices: int, topology: str, rest: np.ndarray | None = None) -> None:
        """One-line error unless this fit was made for that mesh (and, given ``rest``, for that
        shape: a head of the same topology sculpted or swapped since needs a new fit)."""
        if topology != self.target_topology or num_vertices != self.num_target_vertices:
            raise ImitatorError(
                f"the head fit for '{self.target_name}' ({self.num_target_vertices} vertices, topology "
                f"{self.target_topology[:8]}) was made for another mesh than '{name}' ({num_vertices} "
                f"vertices, topology {topology[:8]}); run Fit Head (fit-head) on '{name}'")
        if rest is not None and self.target_vertices is not None:
            size = float(np.sqrt(((self.target_vertices - self.target_vertices.mean(0)) ** 2).sum(1).mean()))
            moved = float(np.abs(np.asarray(rest, np.float64) - self.target_vertices).max())
            if moved > 0.01 * size:
                raise ImitatorError(
                    f"the head fit for '{self.target_name}' was made for another shape of '{name}' (vertices "
                    f"moved by up to {moved:.3g}); run Fit Head on '{name}' again")

    # file round trip -------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write atomically as safetensors with the JSON part in the metadata."""
        from safetensors.numpy import save

        from ..fileio import atomic_write

        arrays = {"corners": self.corners, "bary": self.bary, "rotation": self.rotation,
                  "back_corners": self.back_corners, "back_bary": self.back_bary,
                  "back_rotation": self.back_rotation,
                  "lip_centres": self.lip_centres}
        for key in ("fitted", "target_vertices", "target_triangles"):
            if getattr(self, key) is not None:
                arrays[key] = getattr(self, key)
        arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        meta = {"format": FIT_FORMAT, "kind": "imitator-head-fit", "source_topology": self.source_topology,
                "target_topology": self.target_topology, "target_name": self.target_name,
                "scale": self.scale, "landmarks": self.landmarks, "error_mean": self.error_mean,
                "error_max": self.error_max, "seconds": self.seconds}
        try:
            with atomic_write(Path(path)) as f:
                f.write(save(arrays, metadata={"imitator": json.dumps(meta)}))
        except OSError as e:
            raise ImitatorError(f"{path}: cannot write the head fit ({e}); choose a writable folder") from None

    @classmethod
    def load(cls, path: Path) -> "HeadFit":
        from safetensors import SafetensorError
        from safetensors.numpy import load

        path = Path(path)
        try:
            data = path.read_bytes()
            arrays = load(data)
            n = int.from_bytes(data[:8], "little")
            meta = json.loads(json.loads(data[8:8 + n])["__metadata__"]["imitator"])
            if meta.get("kind") != "imitator-head-fit" or int(meta["format"]) > FIT_FORMAT:
                raise ValueError("not an Imitator head fit of a known format")
            fit = cls(meta["source_topology"], meta["target_topology"], meta["target_name"],
                      arrays["corners"], arrays["bary"], arrays["rotation"], float(meta["scale"]),
                      arrays["back_corners"], arrays["back_bary"], arrays["back_rotation"], arrays["lip_centres"],
                      meta.get("landmarks", {}), arrays.get("fitted"), float(meta["error_mean"]),
                      float(meta["error_max"]), float(meta.get("seconds", 0.0)),
                      arrays.get("target_vertices"), arrays.get("target_triangles"))
        except FileNotFoundError:
            raise ImitatorError(f"{path}: head fit not found; make one with `python -m core fit-head "
                                f"HEAD.obj --out {path.name}` or Fit Head in Blender") from None
        except (OSError, ValueError, KeyError, TypeError, SafetensorError) as e:
            raise ImitatorError(f"{path}: not a readable head fit ({' '.join(str(e).split())[:100]}); "
                                f"run fit-head again") from None
        vt, vs = len(fit.corners), len(fit.back_corners)
        ok = (fit.corners.shape == (vt, 3) and fit.bary.shape == (vt, 3) and fit.rotation.shape == (vt, 3, 3)
              and fit.back_corners.shape == (vs, 3) and fit.back_bary.shape == (vs, 3)
              and fit.back_rotation.shape == (vs, 3, 3) and fit.lip_centres.shape == (2,)
              and fit.corners.min(initial=0) >= 0 and fit.back_corners.min(initial=0) >= 0
              and fit.back_corners.max(initial=0) < vt and fit.lip_centres.max() < vt
              and all(np.isfinite(a).all() for a in (fit.bary, fit.rotation, fit.back_bary, fit.back_rotation)))
        if not ok:
            raise ImitatorError(f"{path}: head fit arrays disagree in shape or hold NaN; run fit-head again")
        return fit


# ------------------------------------------------------------------------------------------------
# The model head, prepared once per fit


def head_landmarks(head: Head) -> dict[str, int]:
    """Landmark vertices of a head from its regions and geometry (core axes: +Y up, face +Z)."""
    r, v = head.regions, head.vertices.astype(np.float64)
    for need in ("lips", "upper_lip_centre", "lower_lip_centre"):
        if need not in r or not len(r[need]):
            raise ImitatorError(f"head '{head.name}' has no '{need}' region; a model head needs its lips marked")
    lips = r["lips"]
    out = {"upper_lip_centre": int(r["upper_lip_centre"][0]), "lower_lip_centre": int(r["lower_lip_centre"][0]),
           "mouth_corner_left": int(lips[np.argmax(v[lips, 0])]),
           "mouth_corner_right": int(lips[np.argmin(v[lips, 0])])}
    if len(r.get("nose", [])):
        out["nose_tip"] = int(r["nose"][np.argmax(v[r["nose"], 2])])
    if len(r.get("chin", [])):
        chin = r["chin"]
        mid = chin[np.abs(v[chin, 0]) < 0.1 * np.ptp(v[chin, 0]) + 1e-9]
        out["chin"] = int(mid[np.argmax(v[mid, 2])]) if len(mid) else int(chin[np.argmax(v[chin, 2])])
    for side, sign in (("left", 1), ("right", -1)):
        lid = r.get(f"eyelid_{side}", [])
        if len(lid):
            out[f"eye_outer_{side}"] = int(lid[np.argmax(sign * v[lid, 0])])
            out[f"eye_inner_{side}"] = int(lid[np.argmin(sign * v[lid, 0])])
            # the ear: the widest point of the head between mouth and eye height
            band = np.flatnonzero((v[:, 1] > v[out["upper_lip_centre"], 1]) & (v[:, 1] < v[lid, 1].mean()))
            if len(band):
                out[f"ear_{side}"] = int(band[np.argmax(sign * v[band, 0])])
    return out


@dataclass
class _Source:
    head: Head
    vertices: np.ndarray  # (V, 3) float64
    triangles: np.ndarray  # (F, 3)
    body: np.ndarray  # (V,) bool: the largest connected part
    side: np.ndarray  # (V,) 0 neutral, 1 upper, 2 lower (around the mouth)
    tri_side: np.ndarray  # (F,)
    weights: sp.csr_matrix  # (V, N) node blend weights
    laplacian: np.ndarray  # (N, N)
    landmarks: dict[str, int]
    size: float  # RMS radius of the body, source units


def _source(head: Head) -> _Source:
    v = head.vertices.astype(np.float64)
    tris = head.triangles().astype(np.int64)
    part = mg.components(v, tris)
    body = part == 0
    marks = head_landmarks(head)
    graph = mg.edge_graph(v, tris)
    u, l = marks["upper_lip_centre"], marks["lower_lip_centre"]
    d = csgraph.dijkstra(graph, indices=[u, l])  # (2, V)
    half_width = 0.5 * np.linalg.norm(v[marks["mouth_corner_left"]] - v[marks["mouth_corner_right"]])
    near = np.minimum(d[0], d[1]) < 1.6 * half_width
    margin = 0.2 * half_width
    side = np.where(near & (d[0] < d[1] - margin), _UPPER, np.where(near & (d[1] < d[0] - margin), _LOWER, 0))
    side[~body] = 0
    ts = side[tris]
    tri_side = np.where((ts == _UPPER).any(1) & ~(ts == _LOWER).any(1), _UPPER,
                        np.where((ts == _LOWER).any(1) & ~(ts == _UPPER).any(1), _LOWER, 0))

    # deformation nodes on the body, blended by geodesic distance
    body_idx = np.flatnonzero(body)
    nodes = body_idx[mg.farthest_points(v[body_idx], NUM_NODES)]
    spacing = float(np.median(cKDTree(v[nodes]).query(v[nodes], k=2)[0][:, 1]))
    dist = csgraph.dijkstra(graph, indices=nodes, limit=6 * spacing)  # (N, V)
    k = NODES_PER_VERTEX
    nearest = np.argpartition(dist.T[body_idx], k, axis=1)[:, :k]  # (Vb, k)
    nd = np.take_along_axis(dist.T[body_idx], nearest, 1)
    w = np.exp(-0.5 * (nd / spacing) ** 2)
    w[~np.isfinite(nd)] = 0.0
    w /= np.maximum(w.sum(1, keepdims=True), 1e-30)
    rows = np.repeat(body_idx, k)
    weights = sp.csr_matrix((w.ravel(), (rows, nearest.ravel())), shape=(len(v), len(nodes)))
    # other parts (teeth, eyes, tongue) follow the nearest body vertices
    other = np.flatnonzero(~body)
    if len(other):
        _, nb = cKDTree(v[body_idx]).query(v[other], k=4)
        follow = sp.csr_matrix((np.full(nb.size, 0.25), (np.repeat(np.arange(len(other)), 4),
                                                         body_idx[nb.ravel()])), shape=(len(other), len(v)))
        weights = weights + sp.csr_matrix(
            (np.ones(len(other)), (other, np.arange(len(other)))), shape=(len(v), len(other))) @ (follow @ weights)
    # node graph Laplacian (nodes within 2.5 spacings along the surface are neighbours)
    nd_nodes = dist[:, nodes]
    adj = (nd_nodes < 2.5 * spacing) & ~np.eye(len(nodes), dtype=bool)
    adj = adj | adj.T
    lap = np.diag(adj.sum(1).astype(np.float64)) - adj
    centre = v[body].mean(0)
    size = float(np.sqrt(((v[body] - centre) ** 2).sum(1).mean()))
    return _Source(head, v, tris, body, side, tri_side, weights.tocsr(), lap, marks, size)


# ------------------------------------------------------------------------------------------------
# Fitting


def fit_head(source: Head, target_vertices: np.ndarray, target_triangles: np.ndarray, *,
             name: str = "target", target_topology: str | None = None,
             landmarks: dict[str, np.ndarray] | None = None, progress: Progress | None = None) -> HeadFit:
    """Register ``source`` (the model head) onto the target mesh (vertices (V, 3) in any units,
    triangles (F, 3)); ``landmarks``: name -> target point, overriding the automatic ones."""
    t0 = time.perf_counter()
    report = progress or (lambda f, t: None)
    tv = np.asarray(target_vertices, np.float64)
    tt = np.asarray(target_triangles, np.int64)
    check_target_mesh(name, tv, tt)
    report(0.02, "preparing the model head")
    src = _source(source)
    tpart = mg.components(tv, tt)
    tmain = tpart == 0
    if tmain.sum() < 0.3 * len(tv) or tmain.sum() < 100:
        raise ImitatorError(f"'{name}' is loose parts only (its largest connected part has {int(tmain.sum())} "
                            f"of {len(tv)} vertices); join the head surface into one mesh part")
    tnormals = mg.vertex_normals(tv, tt)

    report(0.08, "aligning")
    s, R, t = _rigid(src, tv[tmain], name, landmarks)
    x0 = s * src.vertices @ R.T + t  # source in target coordinates
    report(0.2, "fitting the surface")
    fitted, tside = _nonrigid(src, x0, tv, tt, tmain, tnormals, s, landmarks, name, report)

    report(0.85, "mapping the vertices")
    group = np.where(tmain, tside, _LOOSE)
    allowed = np.zeros((4, len(src.triangles)), bool)
    body_tri = src.body[src.triangles].all(1)
    allowed[_NEUTRAL] = body_tri
    allowed[_UPPER] = body_tri & (src.tri_side != _LOWER)
    allowed[_LOWER] = body_tri & (src.tri_side != _UPPER)
    allowed[_LOOSE] = True
    tri, bary, dist = mg.closest_points_grouped(tv, group, fitted, src.triangles, allowed)
    rot_tri = mg.triangle_rotations(src.vertices, fitted, src.triangles)  # includes R
    rotation = rot_tri[tri].astype(np.float32)

    # model vertices -> target surface (clips recorded on the target)
    ttri_side = np.where((tside[tt] == _UPPER).any(1) & ~(tside[tt] == _LOWER).any(1), _UPPER,
                         np.where((tside[tt] == _LOWER).any(1) & ~(tside[tt] == _UPPER).any(1), _LOWER, 0))
    tmain_tri = tmain[tt].all(1)
    back_allowed = np.zeros((4, len(tt)), bool)
    back_allowed[_NEUTRAL] = tmain_tri
    back_allowed[_UPPER] = tmain_tri & (ttri_side != _LOWER)
    back_allowed[_LOWER] = tmain_tri & (ttri_side != _UPPER)
    back_allowed[_LOOSE] = True
    sgroup = np.where(src.body, src.side, _LOOSE)
    back_tri, back_bary, _ = mg.closest_points_grouped(fitted, sgroup, tv, tt, back_allowed)
    first_tri = np.zeros(len(src.vertices), np.int64)  # a triangle through each model vertex
    first_tri[src.triangles[::-1].ravel()] = np.repeat(np.arange(len(src.triangles))[::-1], 3)
    back_rotation = np.transpose(rot_tri[first_tri], (0, 2, 1)).astype(np.float32)

    centres = _target_lip_centres(src, fitted, tv, tside, name)
    _check_mouth_opening(src, tv, tt, tmain, centres, s, name)
    marks = {k: fitted[i].tolist() for k, i in src.landmarks.items()}
    if landmarks:
        marks.update({k: np.asarray(p, float).tolist() for k, p in landmarks.items()})
    seconds = time.perf_counter() - t0
    fit = HeadFit(source.topology, target_topology or topology_hash(len(tv), np.full(len(tt), 3), tt.ravel()),
                  name, src.triangles[tri].astype(np.int32), bary.astype(np.float32), rotation, float(s),
                  tt[back_tri].astype(np.int32), back_bary.astype(np.float32), back_rotation,
                  centres.astype(np.int32), marks,
                  fitted.astype(np.float32), float(dist[tmain].mean()), float(dist[tmain].max()), seconds,
                  tv.astype(np.float32), tt.astype(np.int32))
    log.info("head fit '%s': %d vertices in %.1f s, error mean %.3g max %.3g (target units), scale %.4g",
             name, len(tv), seconds, fit.error_mean, fit.error_max, s)
    report(1.0, "fitted")
    return fit


def check_target_mesh(name: str, v: np.ndarray, tris: np.ndarray) -> None:
    """One-line error for meshes that cannot be a head (too small, flat, broken); cheap."""
    if v.ndim != 2 or v.shape[1] != 3 or len(v) < 100 or len(tris) < 100:
        raise ImitatorError(f"'{name}' has {len(v)} vertices and {len(tris)} faces; a head to fit needs a "
                            f"surface of at least 100 of each (is it a cube or a placeholder?)")
    if not np.isfinite(v).all():
        raise ImitatorError(f"'{name}' has vertices at NaN or infinite positions; fix the mesh")
    if tris.ndim != 2 or tris.shape[1] != 3 or tris.min() < 0 or tris.max() >= len(v):
        raise ImitatorError(f"'{name}' has faces that index missing vertices; fix the mesh")
    spread = np.linalg.svd(v - v.mean(0), compute_uv=False)
    if spread[2] < 0.15 * spread[0]:
        raise ImitatorError(f"'{name}' is flat (a plane or a sheet), not a head; select a head mesh")


def _rigid(src: _Source, target: np.ndarray, name: str, landmarks: dict | None
           ) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity source -> target: from >= 4 landmarks, else multi-start trimmed ICP."""
    known = {k: p for k, p in (landmarks or {}).items() if k in src.landmarks}
    if landmarks and len(known) < len(landmarks):
        bad = sorted(set(landmarks) - set(src.landmarks))
        raise ImitatorError(f"'{name}': unknown landmark(s) {', '.join(bad)}; known: {', '.join(src.landmarks)}")
    if len(known) >= 4:
        a = src.vertices[[src.landmarks[k] for k in known]]
        b = np.array([np.asarray(p, float) for p in known.values()])
        s, R, t = mg.similarity(a, b)
        resid = np.linalg.norm(s * a @ R.T + t - b, axis=1)
        spread = np.sqrt(((b - b.mean(0)) ** 2).sum(1).mean())
        if resid.max() > 0.25 * spread or s <= 0:
            worst = list(known)[int(np.argmax(resid))]
            raise ImitatorError(f"'{name}': the landmarks contradict each other ('{worst}' is "
                                f"{resid.max() / spread:.0%} of the face size away from where the others put it; "
                                f"left and right swapped?); move it or reset the landmarks")
        return _icp(src, target, s, R, t, iterations=10)[:3]
    body = src.vertices[src.body]
    rng = np.random.default_rng(0)
    sb = body[rng.choice(len(body), min(800, len(body)), replace=False)]
    tb = target[rng.choice(len(target), min(1500, len(target)), replace=False)]
    mu_s, mu_t = sb.mean(0), tb.mean(0)
    s0 = np.sqrt(((tb - mu_t) ** 2).sum(1).mean()) / np.sqrt(((sb - mu_s) ** 2).sum(1).mean())
    # starts: principal axes onto principal axes, in each of the 24 axis-aligned ways
    es, et = _principal_axes(sb), _principal_axes(tb)
    best = None
    for C in mg.cube_rotations():
        R0 = et @ C @ es.T
        cand = _icp(src, tb, s0, R0, mu_t - s0 * R0 @ mu_s, iterations=8, points=sb)
        if best is None or cand[3] < best[3]:
            best = cand
    s, R, t, _ = _icp(src, target, *best[:3], iterations=30)
    return s, R, t


def _principal_axes(points: np.ndarray) -> np.ndarray:
    """(3, 3) proper rotation whose columns are the principal axes, largest first."""
    _, vecs = np.linalg.eigh(np.cov(points.T))
    vecs = vecs[:, ::-1].copy()
    if np.linalg.det(vecs) < 0:
        vecs[:, 2] *= -1
    return vecs


def _icp(src: _Source, target: np.ndarray, s: float, R: np.ndarray, t: np.ndarray, iterations: int,
         points: np.ndarray | None = None) -> tuple[float, np.ndarray, np.ndarray, float]:
    """Trimmed symmetric similarity ICP; returns (s, R, t, trimmed RMS / scale)."""
    sp_ = src.vertices[src.body] if points is None else points
    stree, ttree = cKDTree(sp_), cKDTree(target)
    err = np.inf
    for _ in range(iterations):
        moved = s * sp_ @ R.T + t
        d1, j1 = ttree.query(moved)
        back = ((target - t) @ R) / s  # target in source coordinates
        d2, j2 = stree.query(back)
        a = np.concatenate([sp_, sp_[j2]])
        b = np.concatenate([target[j1], target])
        d = np.concatenate([d1, d2 * s])
        keep = d <= np.quantile(d, 0.8)
        s, R, t = mg.similarity(a[keep], b[keep])
        err = float(np.sqrt((d[keep] ** 2).mean()) / s)
    return s, R, t, err


def _nonrigid(src: _Source, x0: np.ndarray, tv: np.ndarray, tt: np.ndarray, tmain: np.ndarray,
              tnormals: np.ndarray, s: float, landmarks: dict | None, name: str, report: Progress
              ) -> tuple[np.ndarray, np.ndarray]:
    """Node displacements by regularised point-to-plane ICP; returns (fitted (V, 3), target side)."""
    W = src.weights
    N = W.shape[1]
    body = np.flatnonzero(src.body)
    size = src.size * s
    tidx = np.flatnonzero(tmain)
    tside = np.zeros(len(tv), np.int64)
    D = np.zeros((N, 3))
    L3 = np.kron(np.eye(3), src.laplacian)
    lm_src = np.array([src.landmarks[k] for k in (landmarks or {})], np.int64)
    lm_dst = np.array([np.asarray(p, float) for p in (landmarks or {}).values()]).reshape(-1, 3)
    schedule = [(1.0, 0.25), (0.3, 0.15), (0.1, 0.1), (0.03, 0.06), (0.01, 0.04)]
    steps = 3
    total = len(schedule) * steps
    it = 0
    for level, (lam, reach) in enumerate(schedule):
        if level == 2:
            tside = _target_sides(src, x0 + W @ D, tv, tt, tmain, s)
        for _ in range(steps):
            it += 1
            report(0.2 + 0.6 * it / total, f"fitting the surface ({it}/{total})")
            x = x0 + W @ D
            xn = mg.vertex_normals(x, src.triangles)
            rows, pts, nrm = [], [], []
            for side in (_NEUTRAL, _UPPER, _LOWER):
                t_ok = tidx[(tside[tidx] != (_LOWER if side == _UPPER else _UPPER)) | (side == _NEUTRAL)]
                s_sel = body[src.side[body] == side]
                s_ok = body[(src.side[body] != (_LOWER if side == _UPPER else _UPPER)) | (side == _NEUTRAL)]
                if not len(t_ok) or not len(s_sel):
                    continue
                # forward: model vertex -> nearest allowed target vertex
                d, j = cKDTree(tv[t_ok]).query(x[s_sel])
                ok = (d < reach * size) & (np.einsum("ij,ij->i", xn[s_sel], tnormals[t_ok[j]]) > 0.3)
                rows.append(s_sel[ok]); pts.append(tv[t_ok[j[ok]]]); nrm.append(tnormals[t_ok[j[ok]]])
                # reverse: target vertex of this side -> nearest allowed model vertex
                t_sel = tidx[tside[tidx] == side]
                if len(t_sel):
                    d, j = cKDTree(x[s_ok]).query(tv[t_sel])
                    ok = (d < reach * size) & (np.einsum("ij,ij->i", xn[s_ok[j]], tnormals[t_sel]) > 0.3)
                    rows.append(s_ok[j[ok]]); pts.append(tv[t_sel[ok]]); nrm.append(tnormals[t_sel[ok]])
            rows, pts, nrm = np.concatenate(rows), np.concatenate(pts), np.concatenate(nrm)
            if len(rows) < 0.2 * len(body):
                raise ImitatorError(f"'{name}' does not look like a head: after alignment only "
                                    f"{len(rows) / len(body):.0%} of the model head found its surface; "
                                    f"select a head mesh, or place landmarks")
            Wr = W[rows]
            r0 = pts - x0[rows]  # (M, 3) wanted displacement
            J_plane = sp.hstack([Wr.multiply(nrm[:, :1]), Wr.multiply(nrm[:, 1:2]), Wr.multiply(nrm[:, 2:])]).tocsr()
            b_plane = np.einsum("ij,ij->i", nrm, r0)
            m = len(rows)
            H = (J_plane.T @ J_plane).toarray() / m
            g = J_plane.T @ b_plane / m
            a = 0.05  # a little point-to-point keeps the nodes from sliding along the surface
            WtW = (Wr.T @ Wr).toarray() / m
            H += a * np.kron(np.eye(3), WtW)
            g += a * np.concatenate([Wr.T @ r0[:, c] for c in range(3)]) / m
            if len(lm_src):
                Wl = W[lm_src].toarray()
                H += 10.0 * np.kron(np.eye(3), Wl.T @ Wl) / len(lm_src)
                rl = lm_dst - x0[lm_src]
                g += 10.0 * np.concatenate([Wl.T @ rl[:, c] for c in range(3)]) / len(lm_src)
            scale_h = np.trace(H) / (3 * N)
            H += lam * scale_h * L3 + 1e-6 * scale_h * np.eye(3 * N)
            D = np.linalg.solve(H, g).reshape(3, N).T
    fitted = x0 + W @ D
    return fitted, _target_sides(src, fitted, tv, tt, tmain, s)


def _target_sides(src: _Source, x: np.ndarray, tv: np.ndarray, tt: np.ndarray, tmain: np.ndarray,
                  s: float) -> np.ndarray:
    """(Vt,) upper/lower/neutral for the target vertices around the mouth, by geodesic distance on
    the target from seeds well away from the slit."""
    body = np.flatnonzero(src.body)
    upper, lower = body[src.side[body] == _UPPER], body[src.side[body] == _LOWER]
    if not len(upper) or not len(lower):
        return np.zeros(len(tv), np.int64)
    gap = 6e-3 * s  # seeds: model lip vertices at least 6 mm from the other lip ...
    near_m = 2e-3 * s  # ... whose nearest target vertex is within 2 mm
    du = cKDTree(x[lower]).query(x[upper])[0]
    dl = cKDTree(x[upper]).query(x[lower])[0]
    tidx = np.flatnonzero(tmain)
    ttree = cKDTree(tv[tidx])

    def seeds(points):
        d, j = ttree.query(points)
        return np.unique(tidx[j[d < near_m]])

    seeds_u, seeds_l = seeds(x[upper[du > gap]]), seeds(x[lower[dl > gap]])
    both = np.intersect1d(seeds_u, seeds_l)
    seeds_u, seeds_l = np.setdiff1d(seeds_u, both), np.setdiff1d(seeds_l, both)
    if not len(seeds_u) or not len(seeds_l):
        return np.zeros(len(tv), np.int64)
    graph = mg.edge_graph(tv, tt)
    geo_u = csgraph.dijkstra(graph, indices=seeds_u, min_only=True)
    geo_l = csgraph.dijkstra(graph, indices=seeds_l, min_only=True)
    # the mouth region: target vertices whose nearest model vertex lies on either side
    near = src.side[body[cKDTree(x[body]).query(tv)[1]]] != _NEUTRAL
    margin = 2e-3 * s
    side = np.where(near & (geo_u < geo_l - margin), _UPPER, np.where(near & (geo_l < geo_u - margin), _LOWER, 0))
    side[~tmain] = _NEUTRAL
    return side.astype(np.int64)


def _target_lip_centres(src: _Source, fitted: np.ndarray, tv: np.ndarray, tside: np.ndarray,
                        name: str) -> np.ndarray:
    out = []
    for key, want in (("upper_lip_centre", _UPPER), ("lower_lip_centre", _LOWER)):
        cand = np.flatnonzero(tside == want)
        if not len(cand):
            raise ImitatorError(f"'{name}': no {key.split('_')[0]} lip found around the mouth; select a "
                                f"human-like head or place the lip landmarks")
        out.append(cand[np.argmin(np.linalg.norm(tv[cand] - fitted[src.landmarks[key]], axis=1))])
    return np.array(out)


def _check_mouth_opening(src: _Source, tv: np.ndarray, tt: np.ndarray, tmain: np.ndarray,
                         centres: np.ndarray, s: float, name: str) -> None:
    """The lips must be separate surfaces: along the target surface they are far apart."""
    u, l = centres
    corner = np.linalg.norm(src.vertices[src.landmarks["mouth_corner_left"]]
                            - src.vertices[src.landmarks["mouth_corner_right"]]) * s
    geo = csgraph.dijkstra(mg.edge_graph(tv, tt), indices=[u])[0, l]
    euclid = np.linalg.norm(tv[u] - tv[l])
    log.debug("mouth check: geodesic %.4g, straight %.4g, width %.4g", geo, euclid, corner)
    if not geo > max(3 * euclid, 0.3 * corner):
        raise ImitatorError(f"'{name}' has no mouth opening (upper and lower lip are joined); cut the mouth "
                            f"slit so the lips are separate edges, then fit again")


# ------------------------------------------------------------------------------------------------
# Head meshes from files (command line)


def read_obj_mesh(path: Path) -> Head:
    """An OBJ head mesh (polygons kept, texture/normal indices dropped) as a Head without keys."""
    path = Path(path)
    if path.suffix.lower() != ".obj":
        raise ImitatorError(f"{path}: give the head as an .obj mesh, a FLAME model file (.pkl/.npz) or a "
                            f".imfit head fit")
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise ImitatorError(f"{path}: cannot read the head mesh ({e.strerror or e})") from None
    try:
        v = np.array([ln.split()[1:4] for ln in lines if ln.startswith("v ")], np.float64).reshape(-1, 3)
        faces = [[int(c.split("/")[0]) for c in ln.split()[1:]] for ln in lines if ln.startswith("f ")]
    except ValueError as e:
        raise ImitatorError(f"{path}: not a readable OBJ mesh ({e}); re-export it") from None
    sizes = np.array([len(f) for f in faces], np.int32)
    idx = np.array([i for f in faces for i in f], np.int64)
    idx = np.where(idx < 0, idx + len(v), idx - 1)  # OBJ: 1-based, negative = relative
    if not len(v) or not len(sizes) or sizes.min() < 3 or idx.min() < 0 or idx.max() >= len(v):
        raise ImitatorError(f"{path}: the OBJ has {len(v)} vertices and {len(sizes)} faces (or faces that index "
                            f"missing vertices); export the head as a polygon mesh")
    return Head(path.stem, v.astype(np.float32), sizes, idx.astype(np.int32))
