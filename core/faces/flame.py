"""The FLAME head model (Li et al. 2017), read from the user's own licensed file, evaluated in numpy.

FLAME is linear blend skinning of a template with identity, expression and pose-corrective blend
shapes. This follows the reference formulation (smplx ``lbs`` as used by FLAME_PyTorch):

    v_shaped = v_template + shapedirs @ shape + exprdirs @ expression
    joints   = J_regressor @ v_shaped
    v_posed  = v_shaped + posedirs @ flatten(R_j - I for the non-root joints)
    vertices = sum_j weights[:, j] * G_j(pose, joints) @ v_posed + translation

Joints (FLAME order): global, neck, jaw, left eye, right eye; rotations are axis-angle.
Files: FLAME 2020 ``generic_model.pkl`` (chumpy arrays, sparse J_regressor), FLAME 2023 pkl, or an
``.npz`` with the same keys. Pickles go through ``core.safe_pickle`` only.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImitatorError
from ..fileio import read_npz
from ..safe_pickle import ChumpyObject, safe_load
from .head import Head

log = logging.getLogger(__name__)

__all__ = ["JOINTS", "NUM_SHAPE", "FlameModel", "load_flame", "load_flame_masks", "rodrigues"]

JOINTS = ("global", "neck", "jaw", "left_eye", "right_eye")
NUM_SHAPE = 300  # identity components in shapedirs; the rest are expression components
_CHUNK = 256  # frames evaluated at once, bounds temporary memory
_GET_FLAME = ("download FLAME from https://flame.is.tue.mpg.de and give its generic_model.pkl "
              "(FLAME 2020) or FLAME 2023 .pkl (--flame on the command line, the FLAME model "
              "file in the Blender add-on's preferences)")


def rodrigues(axis_angle: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) from axis-angle vectors (..., 3); exact near zero angle."""
    r = np.asarray(axis_angle, dtype=np.float64)
    theta = np.linalg.norm(r, axis=-1)[..., None, None]  # (..., 1, 1)
    zero = np.zeros(r.shape[:-1])
    x, y, z = r[..., 0], r[..., 1], r[..., 2]
    k = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1).reshape(r.shape[:-1] + (3, 3))
    small = theta < 1e-6
    t = np.where(small, 1.0, theta)
    a = np.where(small, 1.0 - theta**2 / 6.0, np.sin(t) / t)  # sin(θ)/θ
    b = np.where(small, 0.5 - theta**2 / 24.0, (1.0 - np.cos(t)) / t**2)  # (1-cos θ)/θ²
    return np.eye(3) + a * k + b * (k @ k)


@dataclass(frozen=True, eq=False)
class FlameModel:
    """FLAME arrays, validated; ``evaluate`` poses it, ``head`` gives the rest mesh."""

    path: Path
    v_template: np.ndarray  # (V, 3) float64, metres, +Y up, face looking +Z
    faces: np.ndarray  # (F, 3) int32 triangles
    shapedirs: np.ndarray  # (V, 3, S) identity basis (S = 300 in FLAME 2020/2023)
    exprdirs: np.ndarray  # (V, 3, E) expression basis (E = 100)
    posedirs: np.ndarray  # (V, 3, 9 * (J - 1)) pose-corrective basis
    J_regressor: np.ndarray  # (J, V) dense joint regressor
    parents: np.ndarray  # (J,) int64, parent joint index, -1 for the root
    weights: np.ndarray  # (V, J) skinning weights

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def num_shape(self) -> int:
        return int(self.shapedirs.shape[2])

    @property
    def num_expression(self) -> int:
        return int(self.exprdirs.shape[2])

    def evaluate(self, shape: Any = None, expression: Any = None, pose: Any = None, *,
                 rotation: Any = None, neck: Any = None, jaw: Any = None, eyes: Any = None,
                 translation: Any = None) -> np.ndarray:
        """Posed vertices, float32 (*batch, V, 3); (V, 3) when no argument has a batch axis.

        shape (..., <=S) and expression (..., <=E) coefficients (missing ones are zero);
        pose (..., 5, 3) or (..., 15) axis-angle in ``JOINTS`` order; rotation, neck, jaw (..., 3)
        and eyes (..., 6) or (..., 2, 3) (left, right) replace those joints of ``pose``;
        translation (..., 3) is added last. Leading axes broadcast (e.g. expression (T, 100) with
        jaw (T, 3) and one shape (300,) -> (T, V, 3)).
        """
        nj = len(JOINTS)
        params = {
            "shape": self._coeffs(shape, "shape", self.num_shape),
            "expression": self._coeffs(expression, "expression", self.num_expression),
            "pose": self._vector(pose, "pose", nj * 3, (nj, 3)),
            "rotation": self._vector(rotation, "rotation", 3),
            "neck": self._vector(neck, "neck", 3),
            "jaw": self._vector(jaw, "jaw", 3),
            "eyes": self._vector(eyes, "eyes", 6, (2, 3)),
            "translation": self._vector(translation, "translation", 3),
        }
        given = {k: v for k, v in params.items() if v is not None}
        try:
            batch = np.broadcast_shapes(*(v.shape[:-1] for v in given.values()))
        except ValueError:
            found = ", ".join(f"{k} {v.shape[:-1]}" for k, v in given.items())
            raise ImitatorError(f"FLAME evaluate: leading (frame) axes do not match ({found}); "
                                f"pass the same number of frames for every parameter") from None
        n = int(np.prod(batch, dtype=np.int64))

        def flat(name: str, width: int = 0) -> np.ndarray:  # (n, width), zeros when not given
            v = params[name]
            if v is None:
                return np.zeros((n, width))
            return np.broadcast_to(v, batch + (v.shape[-1],)).reshape(n, v.shape[-1])

        full_pose = flat("pose", nj * 3).reshape(n, nj, 3).copy()  # (n, 5, 3)
        for name, joints in (("rotation", [0]), ("neck", [1]), ("jaw", [2]), ("eyes", [3, 4])):
            if params[name] is not None:
                full_pose[:, joints] = flat(name, 3 * len(joints)).reshape(n, len(joints), 3)
        shape_c, expr_c, transl = flat("shape"), flat("expression"), flat("translation", 3)
        base = self.v_template  # (V, 3); one identity for all frames is blended once
        if params["shape"] is not None and params["shape"].ndim == 1:
            base = base + _blend(self.shapedirs, params["shape"][None])[0]
            shape_c = np.zeros((n, 0))

        out = np.empty((n, self.num_vertices, 3), dtype=np.float32)
        for s in range(0, n, _CHUNK):
            e = min(s + _CHUNK, n)
            out[s:e] = self._lbs(base, shape_c[s:e], expr_c[s:e], full_pose[s:e]) + transl[s:e, None]
        return out.reshape(batch + (self.num_vertices, 3))

    def _lbs(self, base: np.ndarray, shape: np.ndarray, expression: np.ndarray, pose: np.ndarray
             ) -> np.ndarray:
        """Blend shapes + pose correctives + linear blend skinning for b frames -> (b, V, 3)."""
        b, nv, nj = pose.shape[0], self.num_vertices, len(JOINTS)
        v = np.broadcast_to(base, (b, nv, 3)).copy()  # (b, V, 3)
        if shape.shape[1]:
            v += _blend(self.shapedirs, shape)
        if expression.shape[1]:
            v += _blend(self.exprdirs, expression)
        joints = self.J_regressor @ v  # (b, J, 3), from the shaped mesh as in the reference
        rot = rodrigues(pose)  # (b, J, 3, 3)
        feature = (rot[:, 1:] - np.eye(3)).reshape(b, 9 * (nj - 1))  # (b, 36)
        v += _blend(self.posedirs, feature)

        # world rotation / translation of each joint along the kinematic chain
        world_r = np.empty((b, nj, 3, 3))
        world_t = np.empty((b, nj, 3))
        for j, p in enumerate(self.parents):  # parents come before children (checked on load)
            if p < 0:
                world_r[:, j], world_t[:, j] = rot[:, j], joints[:, j]
            else:
                world_r[:, j] = world_r[:, p] @ rot[:, j]
                offset = joints[:, j] - joints[:, p]  # (b, 3) bone in the rest pose
                world_t[:, j] = world_t[:, p] + np.einsum("bij,bj->bi", world_r[:, p], offset)
        # skinning transforms map rest-pose points: x -> R x + (t - R joint)
        skin_t = world_t - np.einsum("bjik,bjk->bji", world_r, joints)  # (b, J, 3)
        blend_r = _per_vertex(self.weights, world_r.reshape(b, nj, 9)).reshape(b, nv, 3, 3)
        return np.einsum("bvik,bvk->bvi", blend_r, v) + _per_vertex(self.weights, skin_t)

    def head(self, name: str = "FLAME head", shape: Any = None,
             regions: dict[str, np.ndarray] | None = None) -> Head:
        """Rest mesh with the given identity ``shape`` as a Head (triangles, metres, +Y up).

        ``regions`` (e.g. from ``load_flame_masks``) become the Head's vertex regions; without
        them the Head has none (no lip set is guessed from geometry).
        """
        verts = self.evaluate(shape=shape)
        if verts.ndim != 2:
            raise ImitatorError(f"FLAME head '{name}': pass one shape vector, not a batch of "
                                f"{verts.shape[0]}")
        faces = self.faces.astype(np.int32)
        return Head(name=name, vertices=verts.astype(np.float32),
                    face_sizes=np.full(len(faces), 3, dtype=np.int32),
                    face_indices=faces.ravel(),
                    regions={k: np.asarray(v, dtype=np.int32) for k, v in (regions or {}).items()})

    def _coeffs(self, value: Any, name: str, available: int) -> np.ndarray | None:
        v = self._vector(value, name, None)
        if v is not None and v.shape[-1] > available:
            raise ImitatorError(f"{self.path}: {name} has {v.shape[-1]} coefficients but this "
                                f"FLAME model has {available}; pass at most {available}")
        return v

    def _vector(self, value: Any, name: str, width: int | None,
                alt: tuple[int, int] | None = None) -> np.ndarray | None:
        """(..., width) float64 array from ``value`` ((..., *alt) is flattened), or None."""
        if value is None:
            return None
        v = np.asarray(value, dtype=np.float64)
        if alt is not None and v.ndim >= 2 and v.shape[-2:] == alt:
            v = v.reshape(v.shape[:-2] + (alt[0] * alt[1],))
        if v.ndim == 0 or (width is not None and v.shape[-1] != width):
            want = f"(..., {width})" + (f" or (..., {alt[0]}, {alt[1]})" if alt else "")
            raise ImitatorError(f"FLAME evaluate: {name} has shape {v.shape}, expected {want}")
        if not np.isfinite(v).all():
            raise ImitatorError(f"FLAME evaluate: {name} contains NaN or Inf; fix the clip or "
                                f"parameters that produced it")
        return v


def _blend(dirs: np.ndarray, coeffs: np.ndarray) -> np.ndarray:
    """Blend-shape offsets (b, V, 3) from a basis (V, 3, K) and coefficients (b, k <= K)."""
    nv, k = dirs.shape[0], coeffs.shape[1]
    return (coeffs @ dirs[:, :, :k].reshape(nv * 3, -1).T).reshape(-1, nv, 3)


def _per_vertex(weights: np.ndarray, per_joint: np.ndarray) -> np.ndarray:
    """Skinning-weighted sum (b, V, c) of per-joint values (b, J, c), as one matrix product."""
    b, nj, c = per_joint.shape
    flat = weights @ per_joint.transpose(1, 0, 2).reshape(nj, b * c)  # (V, b * c)
    return flat.reshape(-1, b, c).transpose(1, 0, 2)


def _read(path: Path) -> dict[str, Any]:
    """Raw key -> value mapping from an .npz or (restricted) pickle FLAME file."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"PK\x03\x04" or path.suffix.lower() == ".npz":  # zip: an .npz
        return read_npz(path, fix="re-export it with plain arrays (J_regressor dense)")
    data = safe_load(path)
    if not isinstance(data, dict):
        raise ImitatorError(f"{path}: holds a {type(data).__name__}, not a FLAME model "
                            f"dictionary; {_GET_FLAME}")
    return data


def _array(data: dict[str, Any], key: str, path: Path, expected: tuple, integer: bool = False
           ) -> np.ndarray:
    """data[key] as a dense finite array whose shape matches ``expected`` (None = any size)."""
    shown = "(" + ", ".join("N" if n is None else str(n) for n in expected) + ")"
    if key not in data:
        raise ImitatorError(f"{path}: key '{key}' is missing (expected shape {shown}); this is "
                            f"not a FLAME model file; {_GET_FLAME}")
    value = data[key]
    if isinstance(value, ChumpyObject):
        raise ImitatorError(f"{path}: '{key}' is a chumpy expression ({value.chumpy_class}) that "
                            f"cannot be read without chumpy; convert the file to .npz with plain "
                            f"arrays")
    if hasattr(value, "toarray"):  # scipy sparse: the shape is checked before it is made dense
        shape = tuple(getattr(value, "shape", ()))
        if len(shape) != len(expected) or any(e is not None and e != n
                                              for e, n in zip(expected, shape)):
            raise ImitatorError(f"{path}: '{key}' has shape {shape}, expected {shown}; this is "
                                f"not a FLAME 2020/2023 model file; {_GET_FLAME}")
        value = value.toarray()
    try:
        arr = np.asarray(value)
    except Exception:  # noqa: BLE001 - ragged lists and the like
        arr = np.asarray(None)
    ok_kind = arr.dtype.kind in ("iu" if integer else "iuf")
    if integer and arr.dtype.kind == "f" and arr.size and np.array_equal(arr, np.round(arr)):
        ok_kind = True
    if not ok_kind:
        raise ImitatorError(f"{path}: '{key}' holds {arr.dtype} data, expected "
                            f"{'integers' if integer else 'numbers'} of shape {shown}; {_GET_FLAME}")
    if arr.ndim != len(expected) or any(e is not None and e != n for e, n in zip(expected, arr.shape)):
        raise ImitatorError(f"{path}: '{key}' has shape {arr.shape}, expected {shown}; this is "
                            f"not a FLAME 2020/2023 model file; {_GET_FLAME}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ImitatorError(f"{path}: '{key}' contains NaN or Inf; the file is damaged, "
                            f"re-download it")
    return arr


def _parents(kintree: np.ndarray, path: Path) -> np.ndarray:
    """Parent index per joint from kintree_table (row 0 parent ids, row 1 joint ids)."""
    ids = [int(i) for i in kintree[1]]
    if len(set(ids)) != len(ids):
        raise ImitatorError(f"{path}: 'kintree_table' repeats joint ids {ids}; re-download FLAME")
    index = {jid: k for k, jid in enumerate(ids)}
    parents = np.array([index.get(int(p), -1) for p in kintree[0]], dtype=np.int64)
    if (parents < 0).sum() != 1 or parents[0] != -1 or np.any(parents[1:] >= np.arange(1, len(ids))):
        raise ImitatorError(f"{path}: 'kintree_table' {kintree.tolist()} is not a single chain "
                            f"with the root first and parents before children; re-download FLAME")
    return parents


def load_flame(path: str | os.PathLike, *, num_shape: int = NUM_SHAPE) -> FlameModel:
    """Read and validate a FLAME 2020/2023 model (.pkl via the restricted unpickler, or .npz).

    ``num_shape`` splits ``shapedirs`` into identity (first ``num_shape``) and expression (rest).
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not the model file" if path.is_dir() else "FLAME model file not found"
        raise ImitatorError(f"{path}: {what}; {_GET_FLAME}")
    data = _read(path)
    nj = len(JOINTS)
    v_template = _array(data, "v_template", path, (None, 3)).astype(np.float64)
    nv = v_template.shape[0]
    faces = _array(data, "f", path, (None, 3), integer=True).astype(np.int64)
    if faces.size and (faces.min() < 0 or faces.max() >= nv):
        raise ImitatorError(f"{path}: 'f' indexes vertex {int(faces.max())} but the template has "
                            f"{nv} vertices; re-download FLAME")
    dirs = _array(data, "shapedirs", path, (nv, 3, None)).astype(np.float64)
    if dirs.shape[2] <= num_shape:
        raise ImitatorError(f"{path}: 'shapedirs' has shape {dirs.shape}, expected ({nv}, 3, "
                            f"{num_shape} + expressions); the file has no expression basis; "
                            f"{_GET_FLAME}")
    posedirs = _array(data, "posedirs", path, (nv, 3, 9 * (nj - 1))).astype(np.float64)
    regressor = _array(data, "J_regressor", path, (nj, nv)).astype(np.float64)
    kintree = _array(data, "kintree_table", path, (2, nj), integer=True)
    weights = _array(data, "weights", path, (nv, nj)).astype(np.float64)
    log.info("FLAME %s: %d vertices, %d shape + %d expression components", path.name, nv,
             num_shape, dirs.shape[2] - num_shape)
    return FlameModel(
        path=path, v_template=v_template, faces=faces.astype(np.int32),
        shapedirs=np.ascontiguousarray(dirs[:, :, :num_shape]),
        exprdirs=np.ascontiguousarray(dirs[:, :, num_shape:]),
        posedirs=posedirs, J_regressor=regressor, parents=_parents(kintree, path), weights=weights)


def load_flame_masks(path: str | os.PathLike, num_vertices: int = 5023) -> dict[str, np.ndarray]:
    """Vertex regions from FLAME's ``FLAME_masks.pkl`` (name -> vertex indices, e.g. "lips")."""
    path = Path(path)
    if not path.is_file():
        raise ImitatorError(f"{path}: FLAME masks file not found; download FLAME_masks.pkl from "
                            f"https://flame.is.tue.mpg.de or leave the masks path empty")
    data = safe_load(path)
    if not isinstance(data, dict):
        raise ImitatorError(f"{path}: holds a {type(data).__name__}, not FLAME masks (a "
                            f"dictionary of vertex index arrays); choose FLAME_masks.pkl")
    masks = {}
    for name, idx in data.items():
        try:
            arr = np.asarray(idx)
        except (ValueError, TypeError):  # ragged lists and the like
            arr = np.asarray(None)
        ok = arr.ndim == 1 and arr.dtype.kind in "iu" and (
            arr.size == 0 or (arr.min() >= 0 and arr.max() < num_vertices))
        if not ok:
            raise ImitatorError(f"{path}: mask '{name}' is not a list of vertex indices below "
                                f"{num_vertices}; choose the FLAME_masks.pkl matching the model")
        masks[str(name)] = arr.astype(np.int32)
    return masks
