"""Vectorized triangle-mesh geometry for head fitting: edges, normals, parts, closest points."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.csgraph as csgraph
from scipy.spatial import cKDTree


def edge_graph(vertices: np.ndarray, triangles: np.ndarray) -> sp.csr_matrix:
    """(V, V) symmetric sparse matrix of edge lengths."""
    e = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    w = np.linalg.norm(vertices[e[:, 0]] - vertices[e[:, 1]], axis=1) + 1e-12
    g = sp.coo_matrix((w, (e[:, 0], e[:, 1])), shape=(len(vertices),) * 2).tocsr()
    return g.maximum(g.T).tocsr()


def components(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(V,) connected-part label per vertex, 0 = the part with the most vertices."""
    _, labels = csgraph.connected_components(edge_graph(vertices, triangles), directed=False)
    order = np.argsort(-np.bincount(labels), kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[labels]


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(V, 3) area-weighted unit normals (zero for unused vertices)."""
    v = vertices[triangles]  # (F, 3, 3)
    fn = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])  # (F, 3), length = 2 area
    n = np.zeros_like(vertices, dtype=np.float64)
    for k in range(3):
        np.add.at(n, triangles[:, k], fn)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-20)


def closest_on_triangles(points: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Closest points of ``points`` (N, 3) on triangles (N, 3) each: (bary (N, 3), dist (N,)).

    Ericson, Real-Time Collision Detection 5.1.5, branch-free over the seven Voronoi regions."""
    ab, ac, ap = b - a, c - a, points - a
    d1, d2 = np.einsum("ij,ij->i", ab, ap), np.einsum("ij,ij->i", ac, ap)
    bp = points - b
    d3, d4 = np.einsum("ij,ij->i", ab, bp), np.einsum("ij,ij->i", ac, bp)
    cp = points - c
    d5, d6 = np.einsum("ij,ij->i", ab, cp), np.einsum("ij,ij->i", ac, cp)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    denom = va + vb + vc
    safe = np.where(np.abs(denom) > 1e-30, denom, 1.0)
    v, w = vb / safe, vc / safe  # inside the face
    bary = np.stack([1 - v - w, v, w], axis=1)

    def put(mask, u0, u1, u2):
        bary[mask] = np.stack([u0[mask], u1[mask], u2[mask]], axis=1)

    zero, one = np.zeros(len(points)), np.ones(len(points))
    with np.errstate(divide="ignore", invalid="ignore"):
        t_ab = np.clip(d1 / (d1 - d3), 0, 1)
        t_ac = np.clip(d2 / (d2 - d6), 0, 1)
        t_bc = np.clip((d4 - d3) / ((d4 - d3) + (d5 - d6)), 0, 1)
    put((vc <= 0) & (d1 >= 0) & (d3 <= 0), 1 - t_ab, t_ab, zero)  # edge ab
    put((vb <= 0) & (d2 >= 0) & (d6 <= 0), 1 - t_ac, zero, t_ac)  # edge ac
    put((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0), zero, 1 - t_bc, t_bc)  # edge bc
    put((d1 <= 0) & (d2 <= 0), one, zero, zero)  # vertex a
    put((d3 >= 0) & (d4 <= d3), zero, one, zero)  # vertex b
    put((d6 >= 0) & (d5 <= d6), zero, zero, one)  # vertex c
    bary = np.nan_to_num(bary, nan=1 / 3)
    q = bary[:, :1] * a + bary[:, 1:2] * b + bary[:, 2:] * c
    return bary, np.linalg.norm(points - q, axis=1)


def closest_points_grouped(points: np.ndarray, groups: np.ndarray, vertices: np.ndarray,
                           triangles: np.ndarray, allowed: np.ndarray | None, k: int = 24
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closest mesh point per point, each point restricted to the triangles ``allowed[groups[i]]``
    ((G, F) boolean, None: all). Candidates: the triangles of the ``k`` nearest centroids (more
    for points whose candidates are all excluded). Returns (triangle, bary, dist)."""
    points = np.asarray(points, np.float64)
    tri_v = vertices[triangles]  # (F, 3, 3)
    centroids = tri_v.mean(1)
    tree = cKDTree(centroids)
    n = len(points)
    best_t = np.full(n, -1, np.int64)
    best_b = np.zeros((n, 3))
    best_d = np.full(n, np.inf)
    todo = np.arange(n)
    kk = min(k, len(triangles))
    while len(todo):
        _, cand = tree.query(points[todo], k=kk)
        cand = cand.reshape(len(todo), kk)
        ok = np.ones(cand.shape, bool) if allowed is None else allowed[groups[todo][:, None], cand]
        rows = np.repeat(todo, kk)
        flat = cand.ravel()
        bary, dist = closest_on_triangles(points[rows], tri_v[flat, 0], tri_v[flat, 1], tri_v[flat, 2])
        dist = np.where(ok.ravel(), dist, np.inf).reshape(len(todo), kk)
        j = np.argmin(dist, axis=1)
        d = dist[np.arange(len(todo)), j]
        found = np.isfinite(d)
        sel = todo[found]
        best_t[sel] = cand[found, j[found]]
        best_b[sel] = bary.reshape(len(todo), kk, 3)[found, j[found]]
        best_d[sel] = d[found]
        if kk >= len(triangles):
            break
        todo = todo[~found]
        kk = min(kk * 8, len(triangles))
    return best_t, best_b, best_d


def triangle_rotations(rest: np.ndarray, posed: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(F, 3, 3) rotation of each triangle from ``rest`` to ``posed`` (polar part of the
    deformation gradient of the frame [edge1, edge2, normal])."""

    def frames(v):
        t = v[triangles]
        e1, e2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
        n = np.cross(e1, e2)
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-20)
        scale = np.sqrt(np.linalg.norm(np.cross(e1, e2), axis=1))[:, None] + 1e-20
        return np.stack([e1, e2, n * scale], axis=2)  # (F, 3, 3), columns

    a, b = frames(np.asarray(rest, np.float64)), frames(np.asarray(posed, np.float64))
    ok = np.abs(np.linalg.det(a)) > 1e-30
    g = np.zeros_like(a)
    g[ok] = b[ok] @ np.linalg.inv(a[ok])
    g[~ok] = np.eye(3)
    u, _, vt = np.linalg.svd(g)
    d = np.sign(np.linalg.det(u @ vt))
    u[:, :, 2] *= d[:, None]
    return u @ vt


def similarity(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None
               ) -> tuple[float, np.ndarray, np.ndarray]:
    """Umeyama: (s, R, t) minimising sum w |s R src + t - dst|^2 (proper rotation)."""
    w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64)
    w = w / max(w.sum(), 1e-30)
    mu_s, mu_d = w @ src, w @ dst
    xs, xd = src - mu_s, dst - mu_d
    cov = (xd * w[:, None]).T @ xs
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(3)
    d[2] = np.sign(np.linalg.det(u @ vt)) or 1.0
    r = (u * d) @ vt
    var = float(w @ (xs ** 2).sum(1))
    s = float((sig * d).sum() / max(var, 1e-30))
    return s, r, mu_d - s * r @ mu_s


def cube_rotations() -> np.ndarray:
    """(24, 3, 3) the proper rotations that map coordinate axes onto coordinate axes."""
    out = []
    for perm in ([0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 2, 1], [2, 1, 0], [1, 0, 2]):
        for signs in np.array(np.meshgrid([1, -1], [1, -1], [1, -1])).T.reshape(-1, 3):
            m = np.zeros((3, 3))
            m[np.arange(3), perm] = signs
            if np.linalg.det(m) > 0:
                out.append(m)
    return np.array(out)


def farthest_points(points: np.ndarray, count: int, seed_index: int = 0) -> np.ndarray:
    """Indices of ``count`` points spread by farthest-point sampling (deterministic)."""
    count = min(count, len(points))
    chosen = np.empty(count, np.int64)
    chosen[0] = seed_index
    d = np.linalg.norm(points - points[seed_index], axis=1)
    for i in range(1, count):  # count (a few hundred) iterations of a vectorized update
        chosen[i] = int(np.argmax(d))
        d = np.minimum(d, np.linalg.norm(points - points[chosen[i]], axis=1))
    return chosen
