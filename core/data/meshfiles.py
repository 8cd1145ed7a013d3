"""Vertex positions from OBJ and PLY frames, and writers for both; small numpy parsers.

Only what a tracked clip needs: the vertex positions of each frame, in file order (that order is
the topology's vertex order). Faces are written for viewers, and read back only by tests.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..errors import ImitatorError
from ..fileio import atomic_write

__all__ = ["MESH_SUFFIXES", "faces_text", "natural_key", "read_mesh_vertices", "read_obj_vertices",
           "read_ply_vertices", "write_obj", "write_ply"]

MESH_SUFFIXES = (".obj", ".ply")

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


def natural_key(path: str | os.PathLike) -> list:
    """Sort key that orders embedded numbers by value: frame_2 before frame_10."""
    parts = re.split(r"(\d+)", Path(path).name.lower())
    return [(0, int(p), p) if p.isdigit() else (1, 0, p) for p in parts]


def read_mesh_vertices(path: str | os.PathLike) -> np.ndarray:
    """(V, 3) float64 vertex positions of an .obj or .ply file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".obj":
        return read_obj_vertices(path)
    if suffix == ".ply":
        return read_ply_vertices(path)
    raise ImitatorError(f"{path}: not an OBJ or PLY mesh; export the frames as .obj or .ply")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ImitatorError(f"{path}: mesh file not found; check the path") from None
    except OSError as exc:
        raise ImitatorError(f"{path}: cannot read the mesh ({exc.strerror}); check the file") from None


def read_obj_vertices(path: str | os.PathLike) -> np.ndarray:
    """The ``v x y z`` lines of an OBJ (extra columns such as vertex colours are ignored)."""
    path = Path(path)
    rows = [ln[2:] for ln in _read_bytes(path).split(b"\n") if ln[:2] in (b"v ", b"v\t")]
    if not rows:
        raise ImitatorError(f"{path}: OBJ file has no vertices ('v' lines); re-export the frame")
    try:
        split = [r.split() for r in rows]
        width = len(split[0])
        if all(len(r) == width for r in split):
            vertices = np.array(b" ".join(rows).split(), dtype=np.float64).reshape(len(rows), width)
        else:  # lines of different widths (some with colours): x y z of each
            vertices = np.array([r[:3] for r in split], dtype=np.float64)
    except ValueError as exc:
        raise ImitatorError(f"{path}: OBJ vertex line is not numeric ({exc}); re-export the frame") \
            from None
    if vertices.ndim != 2 or vertices.shape[1] < 3:
        raise ImitatorError(f"{path}: OBJ vertex lines have fewer than 3 coordinates; re-export it")
    return vertices[:, :3]


def read_ply_vertices(path: str | os.PathLike) -> np.ndarray:
    """x, y, z of the ``vertex`` element of an ASCII or binary PLY."""
    path = Path(path)
    data = _read_bytes(path)
    elements, fmt, body = _ply_header(path, data)
    offset, lines_before = 0, 0
    for name, count, props in elements:
        if name == "vertex":
            break
        if fmt == "ascii":
            lines_before += count
            continue
        if any(kind == "list" for _, kind, _ in props):
            raise ImitatorError(f"{path}: PLY element '{name}' with lists comes before the vertices; "
                                f"re-export it with the vertex element first")
        offset += count * int(sum(np.dtype(t).itemsize for _, _, t in props))
    else:
        raise ImitatorError(f"{path}: PLY file has no 'vertex' element; re-export the frame")
    _, count, props = elements[[e[0] for e in elements].index("vertex")]
    names = [p[0] for p in props]
    if len(set(names)) != len(names):
        raise ImitatorError(f"{path}: PLY vertex element repeats a property; re-export it")
    if not {"x", "y", "z"} <= set(names) or any(kind == "list" for _, kind, _ in props):
        raise ImitatorError(f"{path}: PLY vertices lack scalar x, y, z properties; re-export it")
    if fmt == "ascii":
        lines = body.decode("ascii", errors="replace").splitlines()
        rows = lines[lines_before:lines_before + count]
        try:
            table = np.array([r.split()[:len(names)] for r in rows], dtype=np.float64)
        except ValueError as exc:
            raise ImitatorError(f"{path}: PLY vertex line is malformed ({exc}); re-export it") \
                from None
        if table.shape != (count, len(names)):
            raise ImitatorError(f"{path}: PLY file is truncated ({len(rows)} of {count} vertices); "
                                f"re-export it")
        return table[:, [names.index(c) for c in "xyz"]]
    endian = "<" if fmt == "binary_little_endian" else ">"
    dtype = np.dtype([(n, endian + t) for n, _, t in props])
    if len(body) < offset + count * dtype.itemsize:
        raise ImitatorError(f"{path}: PLY file is truncated; re-export it")
    table = np.frombuffer(body, dtype=dtype, count=count, offset=offset)
    return np.stack([table[c].astype(np.float64) for c in "xyz"], axis=1)


def _ply_header(path: Path, data: bytes) -> tuple[list, str, bytes]:
    """[(element, count, [(prop, 'scalar'|'list', numpy type)])], format, bytes after the header."""
    match = re.search(rb"end_header\r?\n", data[:65536])
    if not data.startswith(b"ply") or match is None:
        raise ImitatorError(f"{path}: not a PLY file (no 'ply' ... 'end_header' header); re-export it")
    fmt, elements = "", []
    for line in data[:match.start()].decode("ascii", errors="replace").splitlines()[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        try:
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                count = int(words[2])
                if count < 0:
                    raise ValueError(count)
                elements.append((words[1], count, []))
            elif words[0] == "property" and words[1] == "list":
                elements[-1][2].append((words[4], "list", _PLY_TYPES[words[3]]))
            elif words[0] == "property":
                elements[-1][2].append((words[2], "scalar", _PLY_TYPES[words[1]]))
        except (IndexError, KeyError, ValueError):
            raise ImitatorError(f"{path}: PLY header line {line.strip()!r} is malformed; "
                                f"re-export it") from None
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise ImitatorError(f"{path}: unknown PLY format {fmt!r}; re-export it as binary or ASCII")
    return elements, fmt, data[match.end():]


def faces_text(face_sizes: np.ndarray, face_indices: np.ndarray) -> str:
    """OBJ ``f`` lines (1-based) for flat polygons; built once and reused for every frame."""
    starts = np.concatenate([[0], np.cumsum(face_sizes)[:-1]]).astype(np.int64)
    idx = np.asarray(face_indices, dtype=np.int64) + 1
    return "".join("f " + " ".join(map(str, idx[s:s + n])) + "\n"
                   for s, n in zip(starts.tolist(), np.asarray(face_sizes).tolist()))


def write_obj(path: str | os.PathLike, vertices: np.ndarray, faces: str = "") -> None:
    """One OBJ frame, atomically; ``faces`` is the text from ``faces_text`` (or empty)."""
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    text = ("v %.7f %.7f %.7f\n" * len(v)) % tuple(v.ravel())
    with atomic_write(Path(path)) as f:
        f.write(text.encode("ascii"))
        f.write(faces.encode("ascii"))


def write_ply(path: str | os.PathLike, vertices: np.ndarray, face_sizes: np.ndarray | None = None,
              face_indices: np.ndarray | None = None, *, binary: bool = True) -> None:
    """One PLY frame, atomically: float32 x, y, z (binary little-endian or ASCII) and faces."""
    v = np.asarray(vertices, dtype=np.float32).reshape(-1, 3)
    sizes = np.zeros(0, np.int64) if face_sizes is None else np.asarray(face_sizes, np.int64)
    idx = np.zeros(0, np.int64) if face_indices is None else np.asarray(face_indices, np.int64)
    header = (f"ply\nformat {'binary_little_endian' if binary else 'ascii'} 1.0\n"
              f"element vertex {len(v)}\nproperty float x\nproperty float y\nproperty float z\n"
              f"element face {len(sizes)}\nproperty list uchar int vertex_indices\nend_header\n")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    with atomic_write(Path(path)) as f:
        f.write(header.encode("ascii"))
        if binary:
            f.write(v.astype("<f4").tobytes())
            for s, n in zip(starts.tolist(), sizes.tolist()):
                f.write(np.uint8(n).tobytes() + idx[s:s + n].astype("<i4").tobytes())
        else:
            f.write((("%.7g %.7g %.7g\n" * len(v)) % tuple(v.ravel())).encode("ascii"))
            for s, n in zip(starts.tolist(), sizes.tolist()):
                f.write((f"{n} " + " ".join(map(str, idx[s:s + n])) + "\n").encode("ascii"))
