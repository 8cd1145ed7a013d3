"""Small fake FLAME files of the real structure (chumpy objects, sparse regressor), for tests.

Writing uses throwaway modules named chumpy.*; nothing here imports the real chumpy.
"""

from __future__ import annotations

import contextlib
import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse as sp

V, NJ, S, E = 20, 5, 300, 100  # FLAME: 5023 vertices; same joint and component counts


# ---------------------------------------------------------------- fake chumpy, for writing only

class Ch:
    """Pickles like chumpy.ch.Ch: a plain __dict__ with 'x' plus chumpy bookkeeping."""

    def __init__(self, x):
        self.x = np.asarray(x, dtype=np.float64)
        self._dirty_vars = {"x"}
        self._itr = None
        self._depends_on_deps = {}
        self._make_dense = False
        self._make_sparse = False


class Reshape:
    """Pickles like chumpy.reordering.Reshape(a=Ch, newshape=...)."""

    def __init__(self, a, newshape):
        self.a, self.newshape = a, newshape
        self._dirty_vars, self._itr, self._depends_on_deps = set(), None, {}


class cumsum:  # noqa: N801 - chumpy's own name; an op the loader cannot evaluate
    def __init__(self, a):
        self.a, self.axis = a, None


@contextlib.contextmanager
def fake_chumpy():
    """Throwaway modules named chumpy.* so pickle writes the real chumpy class paths."""
    mods = {name: types.ModuleType(name) for name in ("chumpy", "chumpy.ch", "chumpy.reordering",
                                                       "chumpy.ch_ops")}
    with pytest.MonkeyPatch.context() as mp:
        for cls, mod in ((Ch, "chumpy.ch"), (Reshape, "chumpy.reordering"), (cumsum, "chumpy.ch_ops")):
            setattr(mods[mod], cls.__name__, cls)
            mp.setattr(cls, "__module__", mod)
        for name, mod in mods.items():
            mp.setitem(sys.modules, name, mod)
        yield


# ---------------------------------------------------------------- a fake FLAME of 20 vertices

def fake_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    v_template = rng.normal(scale=0.05, size=(V, 3))
    faces = np.stack([np.arange(V - 2), np.arange(1, V - 1), np.arange(2, V)], axis=1).astype(np.uint32)
    weights = np.zeros((V, NJ))
    weights[0:4, 0] = 1.0  # root only
    weights[4:8, 1] = 1.0  # neck only
    weights[8:12, 2] = 1.0  # jaw only
    weights[12:14, 3] = 1.0  # left eye
    weights[14:16, 4] = 1.0  # right eye
    weights[16:20, 1] = [0.7, 0.5, 0.3, 0.1]  # neck/jaw blend
    weights[16:20, 2] = [0.3, 0.5, 0.7, 0.9]
    regressor = np.zeros((NJ, V))
    for j, rows in enumerate([range(0, 4), range(4, 8), range(8, 12), range(12, 14), range(14, 16)]):
        regressor[j, list(rows)] = 1.0 / len(rows)
    return {
        "v_template": v_template,
        "f": faces,
        "shapedirs": rng.normal(scale=1e-3, size=(V, 3, S + E)),
        "posedirs": rng.normal(scale=1e-3, size=(V, 3, 9 * (NJ - 1))),
        "J_regressor": regressor,
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
        "weights": weights,
    }


def pickle_2020(arrays: dict, **overrides) -> dict:
    """The FLAME 2020 generic_model.pkl layout: chumpy arrays, sparse csc J_regressor, strings."""
    data = {
        "v_template": Ch(arrays["v_template"]),
        "f": arrays["f"],
        "shapedirs": Ch(arrays["shapedirs"]),
        "posedirs": Reshape(Ch(arrays["posedirs"].ravel()), arrays["posedirs"].shape),
        "J_regressor": sp.csc_matrix(arrays["J_regressor"]),
        "kintree_table": arrays["kintree_table"],
        "weights": Ch(arrays["weights"]),
        "J": cumsum(Ch(np.zeros((NJ, 3)))),  # an extra chumpy expression the loader ignores
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }
    data.update(overrides)
    return data


def write_pickle(path, obj, protocol=2):
    with fake_chumpy(), open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path
