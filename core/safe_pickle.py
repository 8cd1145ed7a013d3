"""Restricted unpickling for user files (FLAME models, VOCASET templates, old checkpoints).

``pickle.load`` runs whatever callable a file names, so user files never go through it. Here only
an allow-list of globals can be resolved: plain builtins, numpy array/dtype/scalar reconstruction
(numpy 1.x and 2.x spellings), scipy sparse matrices (rebuilt from their state arrays by a small
factory, never by calling the pickled class) and chumpy objects (captured by a stand-in class and
converted to numpy without importing chumpy). Any other global is refused before it is called.
"""

from __future__ import annotations

import _compat_pickle
import io
import logging
import os
import pickle
from collections.abc import Callable, Iterable, Mapping
from typing import IO, Any

import numpy as np

from .errors import ImitatorError

log = logging.getLogger(__name__)

__all__ = ["ChumpyObject", "loads", "safe_load"]

_SPARSE_FORMATS = ("csr", "csc", "coo")


def _numpy_reconstructors() -> dict[str, Any]:
    """numpy's own unpickling helpers, taken from reduce tuples so no deprecated module is imported."""
    array = np.zeros(1)
    funcs = {
        "_reconstruct": array.__reduce__()[0],
        "scalar": np.float64(0).__reduce__()[0],
        "_frombuffer": array.__reduce_ex__(5)[0],
    }
    table = {"numpy.ndarray": np.ndarray, "numpy.dtype": np.dtype, "numpy.matrix": np.matrix}
    for core in ("numpy.core", "numpy._core"):
        table[f"{core}.multiarray._reconstruct"] = funcs["_reconstruct"]
        table[f"{core}.multiarray.scalar"] = funcs["scalar"]
        table[f"{core}.numeric._frombuffer"] = funcs["_frombuffer"]
    return table


def _encode_latin1(text: str, encoding: str = "latin1") -> bytes:
    """Stand-in for ``_codecs.encode``, which protocol-2 pickles use to store bytes."""
    if encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591", "l1"):
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


_BUILTINS = {
    f"builtins.{t.__name__}": t
    for t in (set, frozenset, list, dict, tuple, bytes, bytearray, complex, slice, range, object,
              int, float, str, bool)
}


class ChumpyObject:
    """A chumpy object captured without chumpy: its class name and pickled ``__dict__``."""

    chumpy_class = "chumpy.ch.Ch"

    def __new__(cls, *args: Any, **kwargs: Any) -> "ChumpyObject":
        obj = super().__new__(cls)
        obj.state = {}
        return obj

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = {**(state[0] or {}), **(state[1] or {})}
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"{self.chumpy_class} has a non-dict state")
        self.state = state

    def __repr__(self) -> str:
        return f"<{self.chumpy_class} stand-in, keys={sorted(map(str, self.state))}>"


class _SparseState:
    """Captures a pickled scipy sparse matrix's ``__dict__``; rebuilt by ``_build_sparse``."""

    fmt = "csr"
    kind = "matrix"

    def __new__(cls, *args: Any, **kwargs: Any) -> "_SparseState":
        obj = super().__new__(cls)
        obj.state = {}
        return obj

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError("sparse matrix with a non-dict state")
        self.state = state


def _sparse_stand_in(module: str, name: str) -> type | None:
    """``scipy.sparse[._csc|.csc|...].csc_matrix`` -> a stand-in class, else None."""
    if module != "scipy.sparse" and not module.startswith("scipy.sparse."):
        return None
    fmt, _, kind = name.partition("_")
    if fmt not in _SPARSE_FORMATS or kind not in ("matrix", "array"):
        return None
    return type(f"_{name}_state", (_SparseState,), {"fmt": fmt, "kind": kind})


def _build_sparse(obj: _SparseState) -> Any:
    """Build the real scipy matrix from captured state arrays (validated by scipy)."""
    import scipy.sparse as sp

    st = obj.state
    shape = st.get("_shape", st.get("shape"))
    if not (isinstance(shape, tuple) and len(shape) == 2
            and all(isinstance(n, (int, np.integer)) and n >= 0 for n in shape)):
        raise ValueError(f"sparse {obj.fmt} matrix has no valid shape ({shape!r})")
    shape = (int(shape[0]), int(shape[1]))
    cls = getattr(sp, f"{obj.fmt}_{obj.kind}")

    def arr(key: str) -> np.ndarray:
        value = st.get(key)
        if not isinstance(value, np.ndarray):
            raise ValueError(f"sparse {obj.fmt} matrix is missing its {key!r} array")
        return value

    if obj.fmt == "coo":
        coords = st.get("coords")
        if coords is not None:
            row, col = (np.asarray(c) for c in coords)
        else:
            row, col = arr("row"), arr("col")
        return cls((arr("data"), (row, col)), shape=shape)
    return cls((arr("data"), arr("indices"), arr("indptr")), shape=shape)


_CHUMPY_EVAL: dict[str, Callable[[Callable[[str], Any]], Any]] = {
    # class name -> how to compute its value; `t(name)` is the evaluated term of that name
    "Ch": lambda t: t("x"),
    "Reshape": lambda t: np.reshape(t("a"), t("newshape")),
    "transpose": lambda t: np.transpose(t("a"), t("axes")),
    "Select": lambda t: np.ravel(t("a"))[t("idxs")].reshape(t("preferred_shape"))
    if t.has("preferred_shape") else np.ravel(t("a"))[t("idxs")],
    "add": lambda t: t("a") + t("b"),
    "subtract": lambda t: t("a") - t("b"),
    "multiply": lambda t: t("a") * t("b"),
    "divide": lambda t: t("x1") / t("x2"),
    "negative": lambda t: -t("x"),
    "dot": lambda t: t("a").dot(t("b")),
    "MatVecMult": lambda t: _mat_vec_mult(t("mtx"), t("vec")),
}


def _mat_vec_mult(mtx: Any, vec: np.ndarray) -> np.ndarray:
    """chumpy.ch.MatVecMult: mtx @ vec.ravel(), reshaped like vec's columns."""
    vec = np.asarray(vec)
    result = np.asarray(mtx.dot(vec.ravel())).ravel()
    return result.reshape(-1, vec.shape[1]) if vec.ndim > 1 and vec.shape[1] > 1 else result


class _Terms:
    """Evaluated terms of one chumpy object, for the ``_CHUMPY_EVAL`` table."""

    def __init__(self, obj: ChumpyObject, resolve: Callable[[Any], Any]):
        self._obj, self._resolve = obj, resolve

    def has(self, name: str) -> bool:
        return name in self._obj.state

    def __call__(self, name: str) -> Any:
        if name not in self._obj.state:
            raise ValueError(f"{self._obj.chumpy_class} has no {name!r} term")
        value = self._resolve(self._obj.state[name])
        if isinstance(value, ChumpyObject):
            raise ValueError(f"unsupported chumpy operation {value.chumpy_class}")
        return value


class _Resolver:
    """Post-pass turning stand-ins into numpy/scipy objects (shared references stay shared)."""

    def __init__(self) -> None:
        self._memo: dict[int, Any] = {}

    def __call__(self, obj: Any) -> Any:
        key = id(obj)
        if key in self._memo:
            return self._memo[key]
        if isinstance(obj, _SparseState):
            out = _build_sparse(obj)
        elif isinstance(obj, ChumpyObject):
            out = self._chumpy(obj)
        elif isinstance(obj, dict):
            out = {k: self(v) for k, v in obj.items()}
        elif isinstance(obj, list):
            out = [self(v) for v in obj]
        elif isinstance(obj, tuple):
            out = tuple(self(v) for v in obj)
        else:
            return obj
        self._memo[key] = out
        return out

    def _chumpy(self, obj: ChumpyObject) -> Any:
        """The array a chumpy object holds, or the stand-in itself when it cannot be computed."""
        evaluate = _CHUMPY_EVAL.get(obj.chumpy_class.rpartition(".")[2])
        if evaluate is None:
            return obj
        try:
            value = evaluate(_Terms(obj, self))
        except (ValueError, TypeError, IndexError, AttributeError) as exc:
            log.debug("chumpy %s left unconverted: %s", obj.chumpy_class, exc)
            return obj
        return np.asarray(value.toarray() if hasattr(value, "toarray") else value)


def _is_stand_in(cls: Any) -> bool:
    return isinstance(cls, type) and issubclass(cls, (ChumpyObject, _SparseState))


def _safe_reconstructor(cls: type, base: type, state: Any) -> Any:
    """``copyreg._reconstructor`` (protocol 0/1 objects), limited to our stand-in classes."""
    if not _is_stand_in(cls) or base is not object:
        raise pickle.UnpicklingError(f"refused copyreg._reconstructor for {cls!r}")
    return cls.__new__(cls)


def _safe_newobj(cls: type, *args: Any) -> Any:
    """``copyreg.__newobj__`` written as a plain call, limited to our stand-in classes."""
    if not _is_stand_in(cls):
        raise pickle.UnpicklingError(f"refused copyreg.__newobj__ for {cls!r}")
    return cls.__new__(cls)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes], allowed: Mapping[str, Any],
                 persistent_load: Callable[[Any], Any] | None):
        super().__init__(file, encoding="latin1")
        self._allowed = allowed
        self._stand_ins: dict[str, type] = {}
        if persistent_load is not None:
            self.persistent_load = persistent_load

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (__builtin__, copy_reg) -> Python 3 names, as pickle itself would do
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        qualified = f"{module}.{name}"
        if qualified in self._allowed:
            return self._allowed[qualified]
        if qualified not in self._stand_ins:
            stand_in = _sparse_stand_in(module, name)
            if stand_in is None and (module == "chumpy" or module.startswith("chumpy.")) \
                    and name.isidentifier():
                stand_in = type(f"_chumpy_{name}", (ChumpyObject,), {"chumpy_class": qualified})
            if stand_in is None:
                raise _Refused(qualified)
            self._stand_ins[qualified] = stand_in
        return self._stand_ins[qualified]


class _Refused(Exception):
    def __init__(self, qualified: str):
        super().__init__(qualified)
        self.qualified = qualified


def _allow_table(allowed: Mapping[str, Any] | Iterable[str] | None) -> dict[str, Any]:
    table: dict[str, Any] = {**_BUILTINS, **_numpy_reconstructors(),
                             "_codecs.encode": _encode_latin1,
                             "copyreg._reconstructor": _safe_reconstructor,
                             "copyreg.__newobj__": _safe_newobj}
    if allowed is None:
        return table
    if isinstance(allowed, Mapping):
        table.update(allowed)
        return table
    import importlib

    for qualified in allowed:  # the caller vouches for these names
        module, _, name = qualified.rpartition(".")
        table[qualified] = getattr(importlib.import_module(module), name)
    return table


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def safe_load(path_or_file: str | os.PathLike | IO[bytes],
              allowed: Mapping[str, Any] | Iterable[str] | None = None,
              *, persistent_load: Callable[[Any], Any] | None = None) -> Any:
    """Unpickle a user file with an allow-list; stand-ins come back as numpy/scipy objects.

    ``allowed`` adds globals: a mapping ``"module.name" -> object`` (the object may be a safe
    replacement) or names to import. Chumpy objects that cannot be computed without chumpy come
    back as ``ChumpyObject``. Every failure is an ``ImitatorError`` naming the file.
    """
    if isinstance(path_or_file, (str, os.PathLike)):
        where = str(path_or_file)
        try:
            with open(path_or_file, "rb") as f:
                return _load(f, where, allowed, persistent_load)
        except FileNotFoundError:
            raise ImitatorError(f"{where}: file not found; check the path") from None
        except IsADirectoryError:
            raise ImitatorError(f"{where}: is a folder, not a file; choose the file itself") from None
        except PermissionError:
            raise ImitatorError(f"{where}: permission denied; make the file readable") from None
    where = str(getattr(path_or_file, "name", "<stream>"))
    return _load(path_or_file, where, allowed, persistent_load)


def _load(f: IO[bytes], where: str, allowed: Any, persistent_load: Any) -> Any:
    fix = "re-download or re-export it"
    if f.seekable():
        start = f.tell()
        magic = f.read(4)
        f.seek(start)
        if magic == b"PK\x03\x04":
            raise ImitatorError(f"{where}: is a zip archive (.npz or PyTorch checkpoint), not a "
                                f"pickle; open it with the loader for that format")
    try:
        raw = _RestrictedUnpickler(f, _allow_table(allowed), persistent_load).load()
        return _Resolver()(raw)
    except _Refused as exc:
        raise ImitatorError(
            f"{where}: refused to load, the pickle asks for '{exc.qualified}', which is not "
            f"model data (the file may be malicious); use the official file") from None
    except ImitatorError:
        raise
    except EOFError:
        raise ImitatorError(f"{where}: file is empty or truncated; {fix}") from None
    except pickle.UnpicklingError as exc:
        msg = _one_line(exc)
        if "truncated" in msg:
            raise ImitatorError(f"{where}: file is truncated; {fix}") from None
        if "invalid load key" in msg:
            raise ImitatorError(f"{where}: not a pickle file ({msg}); choose the right file") from None
        raise ImitatorError(f"{where}: not a valid pickle file ({msg}); {fix}") from None
    except MemoryError:
        raise ImitatorError(f"{where}: corrupt pickle (asks for too much memory); {fix}") from None
    except Exception as exc:  # noqa: BLE001 - any decoding failure of a bad file
        raise ImitatorError(
            f"{where}: not a valid pickle file ({type(exc).__name__}: {_one_line(exc)}); "
            f"{fix}") from None


def loads(data: bytes, allowed: Mapping[str, Any] | Iterable[str] | None = None,
          *, name: str = "<bytes>") -> Any:
    """``safe_load`` for bytes already in memory; ``name`` is used in error messages."""
    stream = io.BytesIO(data)
    stream.name = name  # type: ignore[attr-defined]
    return safe_load(stream, allowed)

