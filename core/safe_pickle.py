"""Restricted unpickling for user files (FLAME models, VOCASET templates, old checkpoints).

``pickle.load`` runs whatever callable a file names, so user files never go through it. Here only
an allow-list of globals can be resolved: plain builtins, numpy array/dtype/scalar reconstruction
(numpy 1.x and 2.x spellings), scipy sparse matrices (rebuilt from their state arrays by a small
factory, never by calling the pickled class) and chumpy objects (captured by a stand-in class and
converted to numpy without importing chumpy). Any other global is refused before it is called.

Bounded: before anything is unpickled, the opcodes are scanned (``_scan``): declared lengths must
fit in the file, memo indices stay sequential, and nesting depth and the size of shared structures
(what hashing or printing them would expand to) are capped. Every allowed call that allocates
(``bytearray(n)``, ``list(range(n))``, numpy arrays and their ``__setstate__``, chumpy arithmetic,
sparse ``toarray``) is charged against a size budget (``max(64 MiB, 4 x the file size)`` unless
the caller gives ``max_bytes``) *before* it allocates, so a 62-byte pickle cannot ask for 6 GB.
"""

from __future__ import annotations

import _compat_pickle
import io
import logging
import operator
import os
import pickle
import pickletools
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from .errors import ImitatorError
from .fileio import user_file_errors

log = logging.getLogger(__name__)

__all__ = ["ChumpyObject", "loads", "safe_load"]

_SPARSE_FORMATS = ("csr", "csc", "coo")


MIN_BUDGET = 64 << 20  # bytes any file may allocate through calls, however small it is
BUDGET_FACTOR = 4  # ... and this many times its own size (numpy copies, sparse builds, chumpy ops)
MAX_DEPTH = 200  # nesting of containers (deeper ones overflow the C stack when hashed)
_FIX = "re-download or re-export it"


class _OverBudget(Exception):
    """An allowed call would allocate more than the load's budget (raised before it allocates)."""

    def __init__(self, what: str, nbytes: float, limit: int):
        super().__init__(what)
        self.what, self.nbytes, self.limit = what, nbytes, limit


class _Budget:
    """Bytes the calls of one load may still allocate."""

    def __init__(self, limit: int):
        self.limit, self.used = int(limit), 0

    def spend(self, nbytes: float, what: str) -> None:
        nbytes = max(0.0, float(nbytes))
        if self.used + nbytes > self.limit:
            raise _OverBudget(what, nbytes, self.limit)
        self.used += int(nbytes)


def _length(obj: Any) -> float:
    """len(obj), inf for a range too long for len(), 0 when it has none."""
    try:
        return float(len(obj))
    except OverflowError:
        return float("inf")
    except TypeError:
        return 0.0


def _count(shape: Any) -> float:
    """Elements of an array of ``shape`` (an int or a tuple of ints); inf when it is not one."""
    dims = (shape,) if isinstance(shape, (int, np.integer)) else shape
    try:
        return float(np.prod([float(operator.index(n)) for n in dims], dtype=np.float64))
    except TypeError:
        return float("inf")


def _itemsize(dtype: Any) -> int:
    try:
        return max(1, int(np.dtype(dtype).itemsize))
    except Exception:  # noqa: BLE001 - numpy refuses it itself later
        return 1


def _guarded_constructors(budget: _Budget) -> dict[str, Any]:
    """Builtins that allocate, wrapped to charge ``budget`` first; the rest as they are."""

    def sized(kind: type, per_item: int) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            if args:
                x = args[0]
                if isinstance(x, (int, np.integer)) and kind in (bytes, bytearray):
                    n = float(x)
                elif isinstance(x, str):
                    n = 4.0 * len(x)
                else:
                    n = _length(x)
                budget.spend(n * per_item, f"builtins.{kind.__name__}")
            return kind(*args)
        call.__name__ = kind.__name__
        return call

    def ranged(*args: Any) -> range:
        r = range(*args)
        budget.spend(8 * _length(r), "builtins.range")  # what consuming it would allocate
        return r

    def text(*args: Any) -> str:
        if args and not isinstance(args[0], (str, bytes, bytearray, int, float, bool)):
            raise pickle.UnpicklingError(f"refused builtins.str of a {type(args[0]).__name__}")
        budget.spend(4 * _length(args[0]) if args else 0, "builtins.str")
        return str(*args)

    table: dict[str, Any] = {f"builtins.{t.__name__}": t
                             for t in (complex, slice, object, int, float, bool)}
    table.update({"builtins.bytes": sized(bytes, 1), "builtins.bytearray": sized(bytearray, 1),
                  "builtins.list": sized(list, 8), "builtins.tuple": sized(tuple, 8),
                  "builtins.set": sized(set, 32), "builtins.frozenset": sized(frozenset, 32),
                  "builtins.dict": sized(dict, 100), "builtins.range": ranged, "builtins.str": text})
    return table


class _BudgetArray(np.ndarray):
    """What ``_reconstruct`` makes: its ``__setstate__`` (the BUILD opcode) charges the budget."""

    budget: _Budget | None = None

    def __setstate__(self, state: Any) -> None:
        shape, dtype = (state[1], state[2]) if isinstance(state, tuple) and len(state) == 5 else \
            (state[0], state[1]) if isinstance(state, tuple) and len(state) == 4 else ((), "b")
        if self.budget is not None:
            self.budget.spend(_count(shape) * _itemsize(dtype), "a numpy array")
        super().__setstate__(state)


class _BudgetMatrix(_BudgetArray, np.matrix):
    pass


class _ClassRef:
    """``numpy.ndarray`` / ``numpy.matrix`` as a pickle names them: an argument of
    ``_reconstruct``; calling them directly (never done by numpy's own pickles) is refused."""

    target: type = np.ndarray

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        raise pickle.UnpicklingError(f"refused a direct call of numpy.{cls.target.__name__}")


class _NdarrayRef(_ClassRef):
    target = np.ndarray


class _MatrixRef(_ClassRef):
    target = np.matrix


def _numpy_reconstructors(budget: _Budget) -> dict[str, Any]:
    """numpy's own unpickling helpers (taken from reduce tuples so no deprecated module is
    imported), each charging ``budget`` before it allocates."""
    array = np.zeros(1)
    reconstruct = array.__reduce__()[0]
    scalar = np.float64(0).__reduce__()[0]
    frombuffer = array.__reduce_ex__(5)[0]

    def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        guarded = {_NdarrayRef: _BudgetArray, _MatrixRef: _BudgetMatrix}.get(subtype)
        if guarded is None:
            raise pickle.UnpicklingError(f"refused numpy _reconstruct of {subtype!r}")
        budget.spend(_count(shape) * _itemsize(dtype), "a numpy array")
        out = reconstruct(guarded, shape, dtype)
        out.budget = budget
        return out

    def _scalar(dtype: Any, *args: Any) -> Any:
        budget.spend(_itemsize(dtype), "a numpy scalar")
        return scalar(dtype, *args)

    table: dict[str, Any] = {"numpy.ndarray": _NdarrayRef, "numpy.dtype": np.dtype,
                             "numpy.matrix": _MatrixRef}
    for core in ("numpy.core", "numpy._core"):
        table[f"{core}.multiarray._reconstruct"] = _reconstruct
        table[f"{core}.multiarray.scalar"] = _scalar
        table[f"{core}.numeric._frombuffer"] = frombuffer  # a view of bytes already read
    return table


def _plain(value: Any) -> Any:
    """A ``_BudgetArray`` as the plain ndarray (or matrix) it stands for; anything else as is."""
    if isinstance(value, _BudgetMatrix):
        return value.view(np.matrix)
    if isinstance(value, _BudgetArray):
        return value.view(np.ndarray)
    return value


def _encode_latin1(text: str, encoding: str = "latin1") -> bytes:
    """Stand-in for ``_codecs.encode``, which protocol-2 pickles use to store bytes."""
    if encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591", "l1"):
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


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

    st = {k: _plain(v) for k, v in obj.state.items()}
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


def _result_shape(kind: str, t: Callable[[str], Any]) -> tuple:
    """Shape a chumpy operation's result will have, computed before the operation runs."""
    shape = lambda name: tuple(getattr(t(name), "shape", np.shape(t(name))))  # noqa: E731
    if kind in ("add", "subtract", "multiply"):
        return np.broadcast_shapes(shape("a"), shape("b"))
    if kind == "divide":
        return np.broadcast_shapes(shape("x1"), shape("x2"))
    if kind == "dot":
        a, b = shape("a"), shape("b")
        return a[:-1] + b[:-2] + b[-1:] if len(b) >= 2 else a[:-1]
    if kind == "MatVecMult":
        return (shape("mtx")[0],) + shape("vec")[1:2]
    return ()  # views and selections: no larger than their inputs


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

    def __init__(self, budget: _Budget) -> None:
        self._memo: dict[int, Any] = {}
        self._budget = budget

    def __call__(self, obj: Any) -> Any:
        key = id(obj)
        if key in self._memo:
            return self._memo[key]
        if isinstance(obj, _BudgetArray):
            out = _plain(obj)
        elif isinstance(obj, _SparseState):
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
        kind = obj.chumpy_class.rpartition(".")[2]
        evaluate = _CHUMPY_EVAL.get(kind)
        if evaluate is None:
            return obj
        terms = _Terms(obj, self)
        try:
            self._budget.spend(8 * _count(_result_shape(kind, terms)), f"chumpy {kind}")
            value = evaluate(terms)
        except (ValueError, TypeError, IndexError, AttributeError) as exc:
            log.debug("chumpy %s left unconverted: %s", obj.chumpy_class, exc)
            return obj
        if hasattr(value, "toarray"):
            self._budget.spend(_count(value.shape) * _itemsize(value.dtype), "a dense copy of a "
                               "sparse matrix")
            value = value.toarray()
        return np.asarray(value)


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


def _allow_table(allowed: Mapping[str, Any] | Iterable[str] | None, budget: _Budget
                 ) -> dict[str, Any]:
    table: dict[str, Any] = {**_guarded_constructors(budget), **_numpy_reconstructors(budget),
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
              *, persistent_load: Callable[[Any], Any] | None = None,
              max_bytes: int | None = None) -> Any:
    """Unpickle a user file with an allow-list; stand-ins come back as numpy/scipy objects.

    ``allowed`` adds globals: a mapping ``"module.name" -> object`` (the object may be a safe
    replacement) or names to import. Chumpy objects that cannot be computed without chumpy come
    back as ``ChumpyObject``. ``max_bytes``: what the pickle's calls may allocate (default
    ``max(MIN_BUDGET, BUDGET_FACTOR x its size)``). Every failure is an ``ImitatorError`` naming
    the file.
    """
    if isinstance(path_or_file, (str, os.PathLike)):
        where = str(path_or_file)
        with user_file_errors(Path(path_or_file), _FIX), open(path_or_file, "rb") as f:
            data = f.read()
    else:
        where = str(getattr(path_or_file, "name", "<stream>"))
        data = path_or_file.read()
    return _load(bytes(data), where, allowed, persistent_load, max_bytes)


def _mb(n: float) -> str:
    return "an unbounded amount" if n == float("inf") else f"{n / 2**20:,.0f} MB"


class _TooComplex(Exception):
    """The opcode scan found something the C unpickler must not be given."""


def _scan(data: bytes) -> None:
    """Check a pickle's opcodes before unpickling: lengths, memo indices, nesting, sharing.

    Declared lengths beyond the end of the data are reported by ``genops`` (the C unpickler would
    allocate them first); memo indices must stay near the number of values memoized so far (the
    C unpickler grows its memo table to the index); and a shadow stack tracks, for every value,
    its nesting depth and its size with shared parts counted each time (what hashing or printing
    it costs: a tuple of two references to the tuple before it doubles at every step).
    """
    max_weight = max(10**6, 8 * len(data))
    stack: list[Any] = []
    memo: dict[int, list[int]] = {}
    mark = object()
    puts = 0
    for op, arg, _pos in pickletools.genops(data):
        name = op.name
        if name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            index = puts if name == "MEMOIZE" else int(arg)
            if index > puts + 1024:
                raise _TooComplex(f"memo index {index} after {puts} memoized values")
            puts += 1
            if stack and stack[-1] is not mark:
                memo[index] = stack[-1]
            continue
        if name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo.get(int(arg), [1, 0]))
            continue
        if name == "DUP":
            stack.append(stack[-1] if stack else [1, 0])
            continue
        if name == "MARK":
            stack.append(mark)
            continue
        if name == "STOP":
            return
        before = op.stack_before
        popped: list[Any] = []
        if pickletools.markobject in before:
            while stack and stack[-1] is not mark:
                popped.append(stack.pop())
            if stack:
                stack.pop()
            below = before.index(pickletools.markobject)
        else:
            below = len(before)
        for _ in range(below):
            if stack:
                popped.append(stack.pop())
        popped = [p for p in popped if p is not mark]
        if name in ("APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD") and popped:
            node, items = popped[-1], popped[:-1]  # the container is mutated in place
        else:
            node, items = [1, 0], popped
        node[0] += sum(p[0] for p in items)
        node[1] = max([node[1]] + [p[1] + 1 for p in items])
        if node[0] > max_weight:
            raise _TooComplex(f"shared references that expand to more than {max_weight:,} values")
        if node[1] > MAX_DEPTH:
            raise _TooComplex(f"values nested more than {MAX_DEPTH} deep")
        if op.stack_after:
            stack.append(node)


def _load(data: bytes, where: str, allowed: Any, persistent_load: Any, max_bytes: int | None
          ) -> Any:
    if data[:4] == b"PK\x03\x04":
        raise ImitatorError(f"{where}: is a zip archive (.npz or PyTorch checkpoint), not a "
                            f"pickle; open it with the loader for that format")
    if not data:
        raise ImitatorError(f"{where}: file is empty (0 bytes); {_FIX}")
    budget = _Budget(max_bytes if max_bytes is not None
                     else max(MIN_BUDGET, BUDGET_FACTOR * len(data)))
    try:
        _scan(data)
    except _TooComplex as exc:
        raise ImitatorError(f"{where}: refused to load, the pickle holds {exc} (the file is damaged "
                            f"or malicious); use the official file") from None
    except ValueError as exc:
        msg = _one_line(exc)
        if "unknown" in msg and "opcode" in msg:
            raise ImitatorError(f"{where}: not a pickle file ({msg}); choose the right file") from None
        raise ImitatorError(f"{where}: file is truncated ({msg}); {_FIX}") from None
    stream = io.BytesIO(data)
    try:
        raw = _RestrictedUnpickler(stream, _allow_table(allowed, budget), persistent_load).load()
        return _Resolver(budget)(raw)
    except _Refused as exc:
        raise ImitatorError(
            f"{where}: refused to load, the pickle asks for '{exc.qualified}', which is not "
            f"model data (the file may be malicious); use the official file") from None
    except _OverBudget as exc:
        raise ImitatorError(
            f"{where}: refused to load, {exc.what} would take {_mb(exc.nbytes)}, more than the "
            f"{_mb(exc.limit)} a pickle of {len(data):,} bytes may use (the file is damaged or "
            f"malicious); use the official file") from None
    except ImitatorError:
        raise
    except EOFError:
        raise ImitatorError(f"{where}: file is empty or truncated; {_FIX}") from None
    except pickle.UnpicklingError as exc:
        msg = _one_line(exc)
        if "truncated" in msg:
            raise ImitatorError(f"{where}: file is truncated; {_FIX}") from None
        if "invalid load key" in msg:
            raise ImitatorError(f"{where}: not a pickle file ({msg}); choose the right file") from None
        raise ImitatorError(f"{where}: not a valid pickle file ({msg}); {_FIX}") from None
    except MemoryError:
        raise ImitatorError(f"{where}: ran out of memory while loading it (budget "
                            f"{_mb(budget.limit)}); free memory or {_FIX}") from None
    except Exception as exc:  # noqa: BLE001 - any decoding failure of a bad file
        raise ImitatorError(
            f"{where}: not a valid pickle file ({type(exc).__name__}: {_one_line(exc)}); "
            f"{_FIX}") from None


def loads(data: bytes, allowed: Mapping[str, Any] | Iterable[str] | None = None,
          *, name: str = "<bytes>", max_bytes: int | None = None) -> Any:
    """``safe_load`` for bytes already in memory; ``name`` is used in error messages."""
    stream = io.BytesIO(data)
    stream.name = name  # type: ignore[attr-defined]
    return safe_load(stream, allowed, max_bytes=max_bytes)
