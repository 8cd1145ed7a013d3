"""Atomic writes: a temp file in the same folder, then os.replace, so nothing is half-written."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Iterator

from .errors import ImitatorError

if TYPE_CHECKING:
    import numpy as np


def current_umask() -> int:
    """The process umask, read without changing it where the system allows (Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (the only portable way to read it)
    os.umask(mask)
    return mask


def new_file_mode(path: Path, *, folder: bool = False) -> int:
    """The mode ``path`` gets: that of the file it replaces, else what ``open`` would give."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return (0o777 if folder else 0o666) & ~current_umask()


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[BinaryIO]:
    """Yield a binary file; on success it replaces ``path``, on error it vanishes.

    The file gets the mode of the file it replaces, or the umask's (``mkstemp`` alone would
    leave every export at 0600, unreadable to other users and tools).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = new_file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with contextlib.suppress(OSError):  # filesystems without modes (FAT, some mounts)
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def user_file_errors(path: Path, fix: str) -> Iterator[None]:
    """OS errors while opening or reading a user's file, as one-line ImitatorErrors naming it."""
    try:
        yield
    except FileNotFoundError:
        raise ImitatorError(f"{path}: file not found; check the path") from None
    except IsADirectoryError:
        raise ImitatorError(f"{path}: is a folder, not a file; choose the file itself") from None
    except PermissionError:
        raise ImitatorError(f"{path}: permission denied; make the file readable") from None
    except OSError as exc:
        raise ImitatorError(f"{path}: cannot be read ({exc.strerror or exc}); {fix}") from None


NPZ_MIN_BUDGET = 512 << 20  # bytes any .npz may unpack to, however small it is
NPZ_BUDGET_FACTOR = 8  # ... and this many times its size (compressed members)


def read_npz(path: str | os.PathLike, *, fix: str = "re-export it",
             max_bytes: int | None = None) -> dict[str, "np.ndarray"]:
    """The arrays of an .npz, never unpickled, each member's size checked before it is read.

    A file that is not a zip, a member that is not an .npy, Python objects, a member whose
    declared array or unpacked size exceeds ``max_bytes`` (default ``max(NPZ_MIN_BUDGET,
    NPZ_BUDGET_FACTOR x the file size)``: a deflate bomb), truncated or corrupt data: one-line
    ImitatorErrors naming the file and ending in ``fix``.
    """
    import zipfile
    import zlib

    import numpy as np

    path = Path(path)
    with user_file_errors(path, fix), open(path, "rb") as f:
        magic = f.read(4)
        size = os.fstat(f.fileno()).st_size
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        what = "empty (0 bytes)" if not magic else f"not an .npz archive (it starts with {magic!r})"
        raise ImitatorError(f"{path}: is {what}; save it with numpy.savez, or {fix}")
    limit = max_bytes if max_bytes is not None else max(NPZ_MIN_BUDGET, NPZ_BUDGET_FACTOR * size)
    used, out = 0, {}
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if info.is_dir():
                    continue
                name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                if not info.filename.endswith(".npy"):
                    raise ImitatorError(f"{path}: member {info.filename!r} is not a numpy array "
                                        f"(.npy); save the file with numpy.savez, or {fix}")
                with z.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    shape, fortran, dtype = (np.lib.format.read_array_header_1_0(member)
                                             if version == (1, 0) else
                                             np.lib.format.read_array_header_2_0(member))
                    if dtype.hasobject:
                        raise ImitatorError(f"{path}: '{name}' holds Python objects, which are not "
                                            f"loaded (they could run code); save plain numpy arrays")
                    nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
                    if nbytes > info.file_size:
                        raise ImitatorError(f"{path}: '{name}' is truncated (the header promises "
                                            f"{nbytes:,} bytes, the member holds {info.file_size:,}); "
                                            f"{fix}")
                    used += max(nbytes, info.file_size)
                    if used > limit:
                        raise ImitatorError(f"{path}: refused to load, '{name}' unpacks to "
                                            f"{max(nbytes, info.file_size) / 2**20:,.0f} MB, more than the "
                                            f"{limit / 2**20:,.0f} MB a file of {size:,} bytes may "
                                            f"use (the file is damaged or malicious); {fix}")
                    data = member.read(nbytes)
                    if len(data) < nbytes:
                        raise ImitatorError(f"{path}: '{name}' is truncated; {fix}")
                    array = np.frombuffer(data, dtype=dtype)
                    out[name] = (array.reshape(shape[::-1]).T if fortran else
                                 array.reshape(shape)).copy()
    except ImitatorError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError,
            RuntimeError, OverflowError) as exc:  # zip, deflate, .npy header and CRC errors
        reason = " ".join(str(exc).split())[:160]
        raise ImitatorError(f"{path}: corrupt .npz ({type(exc).__name__}: {reason}); {fix}") from None
    return out
