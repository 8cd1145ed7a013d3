"""FLAME loading (restricted unpickler, chumpy without chumpy, .npz) and evaluation, on fake files."""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.spatial.transform import Rotation

from core.errors import ImitatorError
from core.faces.flame import JOINTS, FlameModel, load_flame, load_flame_masks, rodrigues
from core.safe_pickle import ChumpyObject, safe_load

from fake_flame import NJ, E, S, V, Ch, cumsum, fake_arrays, fake_chumpy, pickle_2020, write_pickle  # noqa: F401


@pytest.fixture(autouse=True)
def no_chumpy(monkeypatch):
    """Outside ``fake_chumpy`` any attempt to import chumpy fails."""
    for name in ("chumpy", "chumpy.ch", "chumpy.reordering", "chumpy.ch_ops"):
        monkeypatch.setitem(sys.modules, name, None)


@pytest.fixture()
def arrays():
    return fake_arrays()


@pytest.fixture()
def pkl_2020(tmp_path, arrays):
    return write_pickle(tmp_path / "generic_model.pkl", pickle_2020(arrays))


@pytest.fixture()
def model(pkl_2020) -> FlameModel:
    return load_flame(pkl_2020)


def assert_one_line_error(excinfo, *needles):
    msg = str(excinfo.value)
    assert "\n" not in msg and msg.strip() == msg
    for needle in needles:
        assert str(needle) in msg, (needle, msg)


# ---------------------------------------------------------------- loading

def assert_model_equals(m: FlameModel, a: dict):
    np.testing.assert_array_equal(m.v_template, a["v_template"])
    np.testing.assert_array_equal(m.faces, a["f"])
    np.testing.assert_array_equal(m.shapedirs, a["shapedirs"][:, :, :S])
    np.testing.assert_array_equal(m.exprdirs, a["shapedirs"][:, :, S:])
    np.testing.assert_array_equal(m.posedirs, a["posedirs"])
    np.testing.assert_array_equal(m.J_regressor, a["J_regressor"])
    np.testing.assert_array_equal(m.weights, a["weights"])
    np.testing.assert_array_equal(m.parents, [-1, 0, 1, 1, 1])
    assert (m.num_shape, m.num_expression, m.num_vertices) == (S, E, V)


def test_2020_pickle_loads_written_arrays_without_chumpy(model, arrays, pkl_2020):
    assert_model_equals(model, arrays)
    assert sys.modules["chumpy.ch"] is None  # importing chumpy would have failed
    with pytest.raises(ImportError):  # what plain pickle does with this file
        pickle.loads(pkl_2020.read_bytes(), encoding="latin1")


def test_safe_load_converts_chumpy_and_sparse(pkl_2020, arrays):
    data = safe_load(pkl_2020)
    assert type(data["shapedirs"]) is np.ndarray
    assert type(data["posedirs"]) is np.ndarray and data["posedirs"].shape == (V, 3, 36)
    assert type(data["J_regressor"]) is sp.csc_matrix
    assert isinstance(data["J"], ChumpyObject) and data["J"].chumpy_class == "chumpy.ch_ops.cumsum"
    assert data["bs_style"] == "lbs" and data["bs_type"] == "lrotmin"


@pytest.mark.parametrize("protocol", [0, 1, 2, 4, 5])
def test_2023_style_plain_numpy_pickle_any_protocol(tmp_path, arrays, protocol):
    """FLAME 2023 stores plain numpy arrays; J_regressor stays sparse."""
    data = dict(arrays, J_regressor=sp.csc_matrix(arrays["J_regressor"]), bs_style="lbs")
    m = load_flame(write_pickle(tmp_path / "flame2023.pkl", data, protocol))
    assert_model_equals(m, arrays)


def test_npz_variant(tmp_path, arrays):
    path = tmp_path / "flame.npz"
    np.savez(path, **arrays, bs_style="lbs")
    assert_model_equals(load_flame(path), arrays)


class _Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 ``str`` opcodes (BINSTRING), like pickles made by Python 2."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def test_python2_era_pickle_needs_latin1(tmp_path, arrays):
    path = tmp_path / "generic_model.pkl"
    with fake_chumpy(), open(path, "wb") as f:
        _Py2Pickler(f, protocol=2).dump(pickle_2020(arrays))
    raw = path.read_bytes()
    assert b"_codecs" not in raw and pickle.BINSTRING in raw  # really Python-2 style strings
    with fake_chumpy(), pytest.raises(UnicodeDecodeError):  # a plain ASCII load fails
        pickle.loads(raw)
    assert_model_equals(load_flame(path), arrays)


def test_numpy2_module_names(tmp_path, arrays):
    raw = pickle.dumps(dict(arrays), protocol=2)
    assert b"numpy.core.multiarray" in raw
    path = tmp_path / "np2.pkl"
    path.write_bytes(raw.replace(b"numpy.core.multiarray", b"numpy._core.multiarray"))
    assert_model_equals(load_flame(path), arrays)


@pytest.mark.parametrize("kind", ["csr_matrix", "csc_matrix", "coo_matrix", "csr_array", "coo_array"])
@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_sparse_matrices_roundtrip(tmp_path, kind, protocol):
    dense = np.array([[0.0, 1.5, 0.0], [2.0, 0.0, -3.0]])
    mat = getattr(sp, kind)(dense)
    out = safe_load(write_pickle(tmp_path / "m.pkl", {"m": mat}, protocol))["m"]
    assert type(out) is type(mat)
    np.testing.assert_array_equal(out.toarray(), dense)


# ---------------------------------------------------------------- refusing and bad files

class _Evil:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_os_system_pickle_is_refused_and_not_run(tmp_path, protocol):
    marker = tmp_path / "SOMEFILE"
    payload = {"v_template": _Evil(os.system, (f"touch {marker}",))}
    path = write_pickle(tmp_path / "evil.pkl", payload, protocol)
    # sanity: a plain pickle.load would run it (done in a child process to keep this one clean)
    with pytest.raises(ImitatorError) as excinfo:
        load_flame(path)
    assert not marker.exists()
    assert_one_line_error(excinfo, path, "system")
    subprocess.run([sys.executable, "-c", f"import pickle; pickle.load(open({str(path)!r}, 'rb'))"],
                   check=False, capture_output=True)
    assert marker.exists()  # the payload is real: unrestricted unpickling executes it


@pytest.mark.parametrize("func, args, name", [
    (eval, ("1+1",), "builtins.eval"),
    (subprocess.Popen, (["true"],), "subprocess.Popen"),
    (getattr, (1, "real"), "builtins.getattr"),
])
def test_other_globals_are_refused(tmp_path, func, args, name):
    path = write_pickle(tmp_path / "evil.pkl", [1, _Evil(func, args)])
    with pytest.raises(ImitatorError) as excinfo:
        safe_load(path)
    assert_one_line_error(excinfo, path, name)


def test_reconstructor_cannot_build_arbitrary_classes(tmp_path):
    # protocol 0 writes copy_reg._reconstructor(cls, object, None) for plain objects; a class that
    # is allowed as a global (set) must still not be built through it
    raw = b"ccopy_reg\n_reconstructor\n(c__builtin__\nset\nc__builtin__\nobject\nNtR."
    path = tmp_path / "r.pkl"
    path.write_bytes(raw)
    with pytest.raises(ImitatorError) as excinfo:
        safe_load(path)
    assert_one_line_error(excinfo, path)


def test_truncated_pickle(tmp_path, pkl_2020):
    raw = pkl_2020.read_bytes()
    path = tmp_path / "truncated.pkl"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ImitatorError) as excinfo:
        load_flame(path)
    assert_one_line_error(excinfo, path, "truncated")


def test_truncated_npz(tmp_path, arrays):
    good = tmp_path / "good.npz"
    np.savez(good, **arrays)
    path = tmp_path / "truncated.npz"
    path.write_bytes(good.read_bytes()[:-200])
    with pytest.raises(ImitatorError) as excinfo:
        load_flame(path)
    assert_one_line_error(excinfo, path)


@pytest.mark.parametrize("content", [b"", b"hello, this is text\n", b"\x89PNG\r\n\x1a\n0000"])
def test_not_a_pickle(tmp_path, content):
    path = tmp_path / "model.pkl"
    path.write_bytes(content)
    with pytest.raises(ImitatorError) as excinfo:
        load_flame(path)
    assert_one_line_error(excinfo, path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImitatorError) as excinfo:
        load_flame(tmp_path / "nope.pkl")
    assert_one_line_error(excinfo, tmp_path / "nope.pkl", "not found")
    with pytest.raises(ImitatorError) as excinfo:
        load_flame(tmp_path)
    assert_one_line_error(excinfo, tmp_path, "folder")
    with pytest.raises(ImitatorError) as excinfo:
        safe_load(tmp_path / "nope.pkl")
    assert_one_line_error(excinfo, tmp_path / "nope.pkl")


@pytest.mark.parametrize("key, bad, expected", [
    ("v_template", np.zeros((V, 2)), "(N, 3)"),
    ("shapedirs", np.zeros((V, 3, 50)), "300"),
    ("shapedirs", np.zeros((V + 1, 3, S + E)), f"({V}, 3, N)"),
    ("posedirs", np.zeros((V, 3, 35)), f"({V}, 3, 36)"),
    ("J_regressor", sp.csc_matrix(np.zeros((4, V))), f"(5, {V})"),
    ("weights", np.zeros((V, 4)), f"({V}, 5)"),
    ("kintree_table", np.zeros((2, 4), np.int64), "(2, 5)"),
    ("f", np.zeros((7, 4), np.int64), "(N, 3)"),
])
def test_wrong_shapes(tmp_path, arrays, key, bad, expected):
    path = write_pickle(tmp_path / "bad.pkl", dict(arrays, **{key: bad}))
    with pytest.raises(ImitatorError) as excinfo:
        load_flame(path)
    assert_one_line_error(excinfo, path, f"'{key}'", expected, str(np.shape(bad)))


def test_missing_key_bad_faces_and_non_dict(tmp_path, arrays):
    no_weights = {k: v for k, v in arrays.items() if k != "weights"}
    path = write_pickle(tmp_path / "a.pkl", no_weights)
    with pytest.raises(ImitatorError) as excinfo:
        load_flame(path)
    assert_one_line_error(excinfo, path, "'weights'", "missing")
    path = write_pickle(tmp_path / "b.pkl", dict(arrays, f=arrays["f"] + V))
    with pytest.raises(ImitatorError) as excinfo:
        load_flame(path)
    assert_one_line_error(excinfo, path, "'f'")
    path = write_pickle(tmp_path / "c.pkl", [1, 2, 3])
    with pytest.raises(ImitatorError) as excinfo:
        load_flame(path)
    assert_one_line_error(excinfo, path, "list")
    path = write_pickle(tmp_path / "d.pkl", dict(arrays, weights=np.full((V, NJ), np.nan)))
    with pytest.raises(ImitatorError) as excinfo:
        load_flame(path)
    assert_one_line_error(excinfo, path, "NaN")


def test_unconvertible_chumpy_in_a_required_key(tmp_path, arrays):
    path = write_pickle(tmp_path / "m.pkl", pickle_2020(arrays, weights=cumsum(Ch(arrays["weights"]))))
    with pytest.raises(ImitatorError) as excinfo:
        load_flame(path)
    assert_one_line_error(excinfo, path, "'weights'", "chumpy")


# ---------------------------------------------------------------- evaluation

def test_rodrigues_matches_scipy():
    rng = np.random.default_rng(1)
    vecs = np.concatenate([rng.normal(size=(50, 3)), rng.normal(size=(5, 3)) * 1e-9, np.zeros((1, 3))])
    np.testing.assert_allclose(rodrigues(vecs), Rotation.from_rotvec(vecs).as_matrix(), atol=1e-12)


def test_zero_params_give_the_template(model, arrays):
    out = model.evaluate()
    assert out.shape == (V, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, arrays["v_template"], atol=1e-7)
    zeros = model.evaluate(shape=np.zeros(S), expression=np.zeros((4, E)), pose=np.zeros((4, NJ, 3)),
                           translation=np.zeros(3))
    assert zeros.shape == (4, V, 3)
    np.testing.assert_allclose(zeros, np.broadcast_to(arrays["v_template"], (4, V, 3)), atol=1e-7)


def rotate_about(points, rotvec, center):
    return (points - center) @ Rotation.from_rotvec(rotvec).as_matrix().T + center


def test_jaw_moves_only_jaw_skinned_vertices(tmp_path, arrays):
    """Without pose correctives, a jaw rotation moves exactly the vertices with jaw weight."""
    path = tmp_path / "m.npz"
    np.savez(path, **dict(arrays, posedirs=np.zeros_like(arrays["posedirs"])))
    m = load_flame(path)
    jaw = np.array([0.3, -0.1, 0.05])
    out = m.evaluate(jaw=jaw)
    moved = np.linalg.norm(out - arrays["v_template"], axis=1) > 1e-6
    np.testing.assert_array_equal(moved, arrays["weights"][:, 2] > 0)
    # independent: blend of the identity and a rotation about the jaw joint
    v, w = arrays["v_template"], arrays["weights"][:, 2:3]
    jaw_joint = arrays["J_regressor"][2] @ v
    expected = (1 - w) * v + w * rotate_about(v, jaw, jaw_joint)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_jaw_with_pose_correctives_matches_reference(model, arrays):
    jaw = np.array([0.25, 0.02, -0.04])
    R = Rotation.from_rotvec(jaw).as_matrix()
    feature = np.zeros((NJ - 1, 3, 3))
    feature[1] = R - np.eye(3)  # joints 1..4; the jaw is joint 2
    v = arrays["v_template"] + arrays["posedirs"] @ feature.ravel()
    w = arrays["weights"][:, 2:3]
    jaw_joint = arrays["J_regressor"][2] @ arrays["v_template"]
    expected = (1 - w) * v + w * rotate_about(v, jaw, jaw_joint)
    np.testing.assert_allclose(model.evaluate(jaw=jaw), expected, atol=1e-6)
    # the same through the full pose vector, in JOINTS order
    pose = np.zeros((NJ, 3))
    pose[JOINTS.index("jaw")] = jaw
    np.testing.assert_allclose(model.evaluate(pose=pose), expected, atol=1e-6)
    np.testing.assert_allclose(model.evaluate(pose=pose.ravel()), expected, atol=1e-6)


def test_kinematic_chain_shape_and_translation(model, arrays):
    """Neck then jaw, on a shaped head, plus translation: jaw vertices follow both rotations."""
    rng = np.random.default_rng(3)
    shape, neck, jaw, t = rng.normal(size=S), np.array([0.1, 0.4, 0.0]), np.array([0.3, 0, 0]), \
        np.array([0.01, -0.02, 0.5])
    out = model.evaluate(shape=shape, neck=neck, jaw=jaw, translation=t)
    a = arrays
    shaped = a["v_template"] + a["shapedirs"][:, :, :S] @ shape
    joints = a["J_regressor"] @ shaped
    feature = np.zeros((NJ - 1, 3, 3))
    feature[0] = Rotation.from_rotvec(neck).as_matrix() - np.eye(3)
    feature[1] = Rotation.from_rotvec(jaw).as_matrix() - np.eye(3)
    posed = shaped + a["posedirs"] @ feature.ravel()
    by_neck = rotate_about(posed, neck, joints[1])
    by_jaw = rotate_about(rotate_about(posed, jaw, joints[2]), neck, joints[1])
    w = a["weights"]
    expected = w[:, :1] * posed + w[:, 1:2] * by_neck + w[:, 2:3] * by_jaw \
        + w[:, 3:4] * by_neck + w[:, 4:5] * by_neck + t  # eyes hang off the neck, unrotated
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_global_rotation_is_rigid_about_root(model, arrays):
    rot = np.array([0.0, 0.7, 0.2])
    out = model.evaluate(rotation=rot)
    root = arrays["J_regressor"][0] @ arrays["v_template"]
    np.testing.assert_allclose(out, rotate_about(arrays["v_template"], rot, root), atol=1e-6)


def test_expression_blendshapes_are_linear(model, arrays):
    rng = np.random.default_rng(2)
    e1, e2 = rng.normal(size=E), rng.normal(size=E)
    base = model.evaluate().astype(np.float64)
    d1, d2 = model.evaluate(expression=e1) - base, model.evaluate(expression=e2) - base
    np.testing.assert_allclose(model.evaluate(expression=2 * e1 - 3 * e2) - base, 2 * d1 - 3 * d2, atol=1e-6)
    np.testing.assert_allclose(d1, arrays["shapedirs"][:, :, S:] @ e1, atol=1e-6)
    assert np.abs(d1).max() > 1e-3  # not trivially zero
    # fewer coefficients than the model has: the rest are zero
    np.testing.assert_allclose(model.evaluate(expression=e1[:10]) - base,
                               arrays["shapedirs"][:, :, S:S + 10] @ e1[:10], atol=1e-6)


def test_batched_matches_per_frame(model):
    rng = np.random.default_rng(4)
    T = 7
    expr, jaw, shape = rng.normal(size=(T, E)), rng.normal(scale=0.2, size=(T, 3)), rng.normal(size=S)
    out = model.evaluate(shape=shape, expression=expr, jaw=jaw)
    assert out.shape == (T, V, 3)
    for t in range(T):
        np.testing.assert_allclose(out[t], model.evaluate(shape=shape, expression=expr[t], jaw=jaw[t]),
                                   atol=1e-6)
    shapes = rng.normal(size=(2, 1, 50))  # two identities x T frames -> (2, T, V, 3)
    both = model.evaluate(shape=shapes, expression=expr, jaw=jaw)
    assert both.shape == (2, T, V, 3)
    np.testing.assert_allclose(both[1, 3], model.evaluate(shape=shapes[1, 0], expression=expr[3], jaw=jaw[3]),
                               atol=1e-6)
    assert not np.allclose(both[0], both[1])
    eyes = rng.normal(scale=0.2, size=(T, 2, 3))
    np.testing.assert_allclose(model.evaluate(eyes=eyes), model.evaluate(eyes=eyes.reshape(T, 6)))
    assert not np.allclose(model.evaluate(eyes=eyes)[:, 12:16], model.evaluate()[12:16])


def test_bad_parameters(model):
    with pytest.raises(ImitatorError, match="expression has 101"):
        model.evaluate(expression=np.zeros(E + 1))
    with pytest.raises(ImitatorError, match="jaw has shape"):
        model.evaluate(jaw=np.zeros(4))
    with pytest.raises(ImitatorError, match="NaN"):
        model.evaluate(jaw=[np.nan, 0, 0])
    with pytest.raises(ImitatorError, match="frame"):
        model.evaluate(expression=np.zeros((3, E)), jaw=np.zeros((4, 3)))


# ---------------------------------------------------------------- Head and masks

def test_head(model, arrays, tmp_path):
    shape = np.random.default_rng(5).normal(size=20)
    masks = {"lips": np.array([8, 9, 10], dtype=np.int64), "neck": np.arange(4, 8, dtype=np.uint32)}
    regions = load_flame_masks(write_pickle(tmp_path / "FLAME_masks.pkl", masks), num_vertices=V)
    head = model.head("Alice", shape=shape, regions=regions)
    assert head.name == "Alice" and head.num_vertices == V and head.vertices.dtype == np.float32
    np.testing.assert_allclose(head.vertices, arrays["v_template"] + arrays["shapedirs"][:, :, :20] @ shape,
                               atol=1e-6)
    np.testing.assert_array_equal(head.triangles(), arrays["f"])
    assert set(np.unique(head.face_sizes)) == {3}
    np.testing.assert_array_equal(head.regions["lips"], [8, 9, 10])
    assert model.head().topology == head.topology and model.head().regions == {}
    with pytest.raises(ImitatorError) as excinfo:
        load_flame_masks(write_pickle(tmp_path / "bad_masks.pkl", {"lips": np.array([V])}), num_vertices=V)
    assert_one_line_error(excinfo, tmp_path / "bad_masks.pkl", "lips")
