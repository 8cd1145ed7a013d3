"""A head mesh in core coordinates: metres, +Y up, face looking along +Z (FLAME's convention)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def topology_hash(num_vertices: int, face_sizes: np.ndarray, face_indices: np.ndarray) -> str:
    """Identity of a mesh topology: vertex count + polygon connectivity, 16 hex digits."""
    h = hashlib.sha256()
    h.update(np.int64(num_vertices).tobytes())
    h.update(np.ascontiguousarray(face_sizes, dtype="<i4").tobytes())
    h.update(np.ascontiguousarray(face_indices, dtype="<i4").tobytes())
    return h.hexdigest()[:16]


FIT_SUFFIX = ".imfit"  # a head fit (core/faces/head_fit.py)


def fit_path_for(folder: Path, topology: str) -> Path:
    """Where the fit of a mesh of this topology is kept in a cache folder (cheap: no scipy import)."""
    return Path(folder) / "fits" / f"{topology}{FIT_SUFFIX}"


@dataclass
class Head:
    """Rest mesh plus named shape keys (offsets) and named vertex regions.

    Polygons are stored flat: ``face_indices`` holds the vertex indices of all polygons one after
    another, ``face_sizes`` how many each polygon has (3 for FLAME, 4 for the default head).
    """

    name: str
    vertices: np.ndarray  # (V, 3) float32, metres
    face_sizes: np.ndarray  # (F,) int32
    face_indices: np.ndarray  # (sum(face_sizes),) int32
    shape_keys: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (V, 3) float32 offsets
    regions: dict[str, np.ndarray] = field(default_factory=dict)  # name -> vertex indices, e.g. "lips"

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def topology(self) -> str:
        return topology_hash(self.num_vertices, self.face_sizes, self.face_indices)

    def triangles(self) -> np.ndarray:
        """(N, 3) triangle fan of every polygon, for renderers and metrics."""
        starts = np.concatenate([[0], np.cumsum(self.face_sizes)[:-1]])
        tris = [
            np.stack([self.face_indices[starts[m]], self.face_indices[starts[m] + k],
                      self.face_indices[starts[m] + k + 1]], axis=1)
            for n in np.unique(self.face_sizes)
            for m in [self.face_sizes == n]
            for k in range(1, int(n) - 1)
        ]
        return np.concatenate(tris, axis=0).astype(np.int32) if tris else np.zeros((0, 3), np.int32)
