"""Test heads for the head fit: the default head remeshed (decimated), re-ordered, scaled, turned
and moved, another person's head (MakeHuman identity targets), and meshes that are not heads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

IDENTITY = {"head/head-fat-incr": 0.8, "mouth/mouth-scale-horiz-incr": 0.8,
            "mouth/mouth-lowerlip-volume-incr": 0.7, "chin/chin-width-incr": 0.7,
            "nose/nose-scale-horiz-incr": 0.6, "head/head-age-incr": 0.5}


@dataclass
class Remeshed:
    vertices: np.ndarray  # (V, 3) transformed
    triangles: np.ndarray  # (F, 3)
    birth: np.ndarray  # (V,) source vertex each vertex came from
    original: np.ndarray  # (V, 3) positions before the transform
    scale: float
    rotation: np.ndarray
    shift: np.ndarray


def rotation_about(axis, angle: float) -> np.ndarray:
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def remesh(head, keep: float = 0.6, scale: float = 1.15, angle: float = 0.7, seed: int = 1) -> Remeshed:
    """Edge-collapse decimation to ``keep`` of the faces (libigl), vertices shuffled, then a
    similarity transform."""
    igl = pytest.importorskip("igl")
    V = head.vertices.astype(np.float64)
    F = head.triangles().astype(np.int64)
    U, G, _, I = igl.decimate(V, F, int(keep * len(F)))
    perm = np.random.default_rng(seed).permutation(len(U))
    inv = np.argsort(perm)
    R = rotation_about([0.3, 1.0, 0.2], angle)
    shift = np.array([0.3, -0.2, 1.0])
    U = U[perm]
    return Remeshed(scale * U @ R.T + shift, inv[G], I[perm], U, scale, R, shift)


def cube(n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """A closed cube surface (20 cm), each side an n x n grid, shared edge vertices welded."""
    v, f = plane(n)
    v = v - [0.1, 0.1, 0.0]
    parts, faces = [], []
    for axis in range(3):
        for sign in (-1, 1):
            p = np.roll(np.concatenate([v[:, :2], np.full((len(v), 1), 0.1 * sign)], 1), axis, 1)
            faces.append(f + sum(len(q) for q in parts))
            parts.append(p)
    allv = np.concatenate(parts)
    uniq, inverse = np.unique(np.round(allv, 6), axis=0, return_inverse=True)
    return uniq, inverse.ravel()[np.concatenate(faces)]


def plane(n: int = 20) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.meshgrid(np.linspace(0, 0.2, n), np.linspace(0, 0.2, n))
    v = np.stack([x.ravel(), y.ravel(), np.zeros(n * n)], 1)
    i = np.arange(n * n).reshape(n, n)
    a, b, c, d = i[:-1, :-1].ravel(), i[:-1, 1:].ravel(), i[1:, :-1].ravel(), i[1:, 1:].ravel()
    return v, np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])


def sealed_mouth(head) -> tuple[np.ndarray, np.ndarray]:
    """The default head with the lips welded together where they touch (no mouth opening)."""
    from scipy.spatial import cKDTree

    v = head.vertices.astype(np.float64)
    F = head.triangles().astype(np.int64)
    up, lo = head.regions["upper_lip"], head.regions["lower_lip"]
    d, j = cKDTree(v[up]).query(v[lo])
    weld = np.arange(len(v))
    close = d < 4e-3
    weld[lo[close]] = up[j[close]]
    F = weld[F]
    F = F[(F[:, 0] != F[:, 1]) & (F[:, 1] != F[:, 2]) & (F[:, 0] != F[:, 2])]
    return v, F


def fake_flame_with_jaw(vertices: np.ndarray, triangles: np.ndarray, mouth_y: float, path) -> None:
    """A FLAME model file (.npz, the real keys and shapes) whose template is ``vertices`` (core
    axes, metres) and whose jaw joint carries the front of the face below ``mouth_y``: a jaw
    rotation opens the mouth as FLAME's does."""
    v = np.asarray(vertices, np.float64)
    n = len(v)
    centre = 0.5 * (v.min(0) + v.max(0))
    jaw = (v[:, 1] < mouth_y) & (v[:, 2] > centre[2])
    weights = np.zeros((n, 5))
    weights[:, 0] = 1.0
    weights[jaw, 0], weights[jaw, 2] = 0.0, 1.0
    pivot = np.array([centre[0], mouth_y + 0.01, centre[2] - 0.02])  # behind the mouth, like a hinge
    regressor = np.zeros((5, n))
    regressor[:, int(np.argmin(np.linalg.norm(v - centre, axis=1)))] = 1.0
    regressor[2] = 0.0
    regressor[2, int(np.argmin(np.linalg.norm(v - pivot, axis=1)))] = 1.0
    rng = np.random.default_rng(0)
    np.savez(path, v_template=v, f=np.asarray(triangles, np.int64),
             shapedirs=rng.normal(scale=1e-7, size=(n, 3, 400)), posedirs=np.zeros((n, 3, 36)),
             J_regressor=regressor, kintree_table=np.array([[-1, 0, 1, 1, 1], [0, 1, 2, 3, 4]]),
             weights=weights)


def jaw_clip(path, audio_path, seconds: float = 5.7, fps: float = 30.0) -> None:
    """A FLAME-parameter clip: the jaw opening and closing about three times a second."""
    t = np.arange(int(seconds * fps)) / fps
    jaw = np.zeros((len(t), 3))
    jaw[:, 0] = 0.12 * np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
    np.savez(path, expression=np.zeros((len(t), 100)), jaw_pose=jaw, fps=fps, audio_path=str(audio_path))
