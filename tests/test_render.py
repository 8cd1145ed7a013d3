"""The headless CPU renderer and the mp4 writer (core.render) and the dataset preview."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pytest
import soundfile as sf

from core import render
from core.data import preview
from core.errors import ImitatorError
from core.faces.head import Head

BG = render.BACKGROUND


def uv_sphere(radius: float = 0.1, n_lat: int = 48, n_lon: int = 96
              ) -> tuple[np.ndarray, np.ndarray]:
    """A closed UV sphere with outward (counter-clockwise) triangles."""
    theta = np.linspace(0, np.pi, n_lat + 1)[1:-1]  # from the +Y pole down
    phi = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
    th, ph = np.meshgrid(theta, phi, indexing="ij")
    ring = np.stack([np.sin(th) * np.sin(ph), np.cos(th), np.sin(th) * np.cos(ph)], -1)
    ring = ring.reshape(-1, 3)
    verts = np.concatenate([[[0, 1, 0]], ring, [[0, -1, 0]]]) * radius
    top, bottom = 0, len(verts) - 1
    idx = lambda i, j: 1 + i * n_lon + (j % n_lon)  # noqa: E731
    tris = []
    for j in range(n_lon):
        tris.append([top, idx(0, j), idx(0, j + 1)])
        tris.append([bottom, idx(n_lat - 2, j + 1), idx(n_lat - 2, j)])
        for i in range(n_lat - 2):
            tris.append([idx(i, j), idx(i + 1, j), idx(i + 1, j + 1)])
            tris.append([idx(i, j), idx(i + 1, j + 1), idx(i, j + 1)])
    tris = np.array(tris, dtype=np.int64)
    return verts, tris


def cube(half: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """An axis-aligned cube with 4 own vertices per face (flat normals), outward triangles."""
    verts, tris = [], []
    for axis in range(3):
        for sign in (1.0, -1.0):
            n = np.zeros(3)
            n[axis] = sign
            u = np.roll(n, 1) if sign > 0 else -np.roll(n, 1)
            v = np.cross(n, u)
            base = len(verts)
            for du, dv in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                verts.append((n + du * u + dv * v) * half)
            tris += [[base, base + 1, base + 2], [base, base + 2, base + 3]]
    return np.array(verts), np.array(tris, dtype=np.int64)


def covered(image: np.ndarray) -> np.ndarray:
    return (image != BG).any(axis=-1)


def test_cube_is_outward_wound():
    v, t = cube()
    assert render.mesh_orientation(v, t) == 1
    assert render.mesh_orientation(v, t[:, ::-1]) == -1


def test_sphere_silhouette_and_shading():
    size, margin = 256, 0.06
    v, t = uv_sphere()
    assert render.mesh_orientation(v, t) == 1
    img = render.render_frames(v[None], t, size=size)[0]
    assert img.shape == (size, size, 3) and img.dtype == np.uint8
    r = size / (2 * (1 + 2 * margin))  # the framing: bounding box + margin on each side
    area = covered(img).sum()
    assert abs(area - np.pi * r * r) / (np.pi * r * r) < 0.02
    # The disc is centred
    ys, xs = np.nonzero(covered(img))
    assert abs(xs.mean() + 0.5 - size / 2) < 1 and abs(ys.mean() + 0.5 - size / 2) < 1
    # Front-facing centre brighter than the grazing rim on average; and no cavity colour at all
    lum = img.astype(float).mean(-1)
    yy, xx = np.mgrid[:size, :size] + 0.5
    d = np.hypot(xx - size / 2, yy - size / 2) / r
    centre, rim = lum[d < 0.1].mean(), lum[(d > 0.93) & (d < 0.98)].mean()
    assert centre > rim + 40
    # The key light comes from the upper left: that side is brighter than the lower right
    assert lum[(d < 0.8) & (xx < size / 2) & (yy < size / 2)].mean() > \
        lum[(d < 0.8) & (xx > size / 2) & (yy > size / 2)].mean() + 30
    # Grey material: R == G == B
    on = covered(img)
    assert np.abs(img[on].astype(int) - img[on][:, :1]).max() <= 1


def test_cube_front_is_a_flat_square():
    size = 200
    v, t = cube()
    img = render.render_frames(v[None], t, size=size)[0]
    side = size / (1 + 2 * 0.06)
    assert abs(covered(img).sum() - side * side) / (side * side) < 0.02
    # Only the front face is seen head-on: flat normal, one colour
    assert len(np.unique(img[covered(img)].reshape(-1, 3), axis=0)) == 1
    # Turned 45 degrees about Y: two faces seen, the one towards the key light (left) brighter
    c, s = np.cos(np.pi / 4), np.sin(np.pi / 4)
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    img = render.render_frames((v @ rot.T)[None], t, size=size)[0]
    row = img[size // 2].astype(int).mean(-1)
    assert row[size // 2 - 30] > row[size // 2 + 30] + 20
    # The side view of the unrotated cube shows the +X face: a square again
    img = render.render_frames(v[None], t, size=size, view="side")[0]
    assert abs(covered(img).sum() - side * side) / (side * side) < 0.02


def two_triangles(near_first: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A small near triangle (red) in front of a large far one (green), both facing the camera."""
    far = [[-1.0, -1.0, -0.5], [1.0, -1.0, -0.5], [0.0, 1.0, -0.5]]
    near = [[-0.3, -0.3, 0.5], [0.3, -0.3, 0.5], [0.0, 0.3, 0.5]]
    colors = np.array([[0, 0.8, 0]] * 3 + [[0.8, 0, 0]] * 3, dtype=np.float32)
    verts = np.array(far + near)
    tris = np.array([[0, 1, 2], [3, 4, 5]])
    if near_first:
        tris = tris[::-1]
    return verts, tris, colors


@pytest.mark.parametrize("near_first", [False, True])
def test_zbuffer_near_occludes_far_in_any_order(near_first):
    verts, tris, colors = two_triangles(near_first)
    assert render.mesh_orientation(verts, tris) == 0  # an open sheet: lit from both sides
    img = render.render_frames(verts[None], tris, size=128, colors=colors)[0].astype(int)
    c = img[64, 64]
    assert c[0] > 100 and c[1] == 0  # red: the near triangle at the centre
    corner = img[110, 20]  # inside the far triangle only
    assert corner[1] > 100 and corner[0] == 0
    # Same picture whichever order the triangles come in
    v2, t2, _ = two_triangles(not near_first)
    other = render.render_frames(v2[None], t2, size=128, colors=colors)[0].astype(int)
    assert np.array_equal(img, other)


@pytest.mark.parametrize("near_first", [False, True])
def test_zbuffer_two_closed_spheres(near_first):
    """Closed meshes take the front-face path: the nearer sphere hides the farther one."""
    v, t = uv_sphere(radius=0.1, n_lat=16, n_lon=32)
    near, far = v + [0.05, 0.0, 0.2], v - [0.05, 0.0, 0.2]
    parts = [(near, [0.8, 0.0, 0.0]), (far, [0.0, 0.8, 0.0])]
    if not near_first:
        parts = parts[::-1]
    verts = np.concatenate([p for p, _ in parts])
    tris = np.concatenate([t, t + len(v)])
    colors = np.concatenate([np.tile(c, (len(v), 1)) for _, c in parts]).astype(np.float32)
    assert render.mesh_orientation(verts, tris) == 1
    img = render.render_frames(verts[None], tris, size=128, colors=colors)[0].astype(int)
    assert img[64, 64, 0] > 80 and img[64, 64, 1] == 0  # overlap: near (red)
    assert img[64, 20, 1] > 40 and img[64, 20, 0] == 0  # left: only the far one (green)


def test_zbuffer_interpenetrating_triangles():
    """Two crossing triangles: each wins on its own near half (per pixel, not per face)."""
    a = [[-1.0, -1.0, -0.5], [1.0, -1.0, 0.5], [0.0, 1.0, 0.0]]  # nearer on the right
    b = [[-1.0, -1.0, 0.5], [1.0, -1.0, -0.5], [0.0, 1.0, 0.0]]  # nearer on the left
    colors = np.array([[0.8, 0, 0]] * 3 + [[0, 0, 0.8]] * 3, dtype=np.float32)
    img = render.render_frames(np.array(a + b)[None], np.array([[0, 1, 2], [3, 4, 5]]),
                               size=128, colors=colors)[0].astype(int)
    assert img[90, 100, 0] > 100 and img[90, 100, 2] == 0
    assert img[90, 28, 2] > 100 and img[90, 28, 0] == 0


def test_back_faces_of_a_closed_mesh_look_like_a_cavity():
    """A sphere with its front cap cut away shows its dark inside, not a lit surface."""
    v, t = uv_sphere(n_lat=24, n_lon=48)
    front_cap = (v[t][:, :, 2] > 0.07).all(axis=1)
    img = render.render_frames(v[None], t[~front_cap], size=128)[0].astype(int)
    inside = img[64, 64]
    assert (inside != BG).any() and inside.mean() < 90
    lit = render.render_frames(v[None], t, size=128)[0].astype(int)[64, 64]
    assert lit.mean() > 150


def test_rendering_is_deterministic_and_follows_the_motion():
    v, t = uv_sphere(n_lat=16, n_lon=32)
    frames = np.stack([v, v + [0.02, 0.0, 0.0], v * [1.0, 1.3, 1.0]])
    a = render.render_frames(frames, t, size=96)
    b = render.render_frames(frames.copy(), t.copy(), size=96)
    assert a.shape == (3, 96, 96, 3) and np.array_equal(a, b)
    # The camera is framed on the whole sequence: the shifted sphere moves right
    cx = [np.nonzero(covered(f))[1].mean() for f in a]
    assert cx[1] > cx[0] + 5
    assert covered(a[2]).sum() > covered(a[0]).sum() * 1.2


def test_panels_front_side_mouth():
    v, t = uv_sphere(n_lat=16, n_lon=32)
    panels = list(render.iter_panels(v[None].repeat(2, 0), t, size=64, side=True,
                                     mouth=np.arange(10)))
    assert len(panels) == 2 and panels[0].shape == (64, 192, 3)


@pytest.mark.parametrize("make, match", [
    (lambda v, t: (np.where(np.arange(v.size).reshape(v.shape) == 7, np.nan, v)[None], t), "NaN"),
    (lambda v, t: (v[None], np.where(t == t.max(), len(v), t)), "indices"),
    (lambda v, t: (v[None], t - 1), "indices"),
    (lambda v, t: (v[None], t[:, :2]), "triangles"),
    (lambda v, t: (v[None], t.astype(float)), "triangles"),
    (lambda v, t: (v[None, :, :2], t), "shape"),
])
def test_bad_meshes_are_one_line_errors(make, match):
    v, t = cube()
    verts, tris = make(v, t)
    with pytest.raises(ImitatorError, match=match) as e:
        render.render_frames(verts, tris, size=32)
    assert "\n" not in str(e.value)


def test_bad_view_and_size():
    v, t = cube()
    with pytest.raises(ImitatorError, match="view"):
        render.render_frames(v[None], t, view="top")
    with pytest.raises(ImitatorError, match="size"):
        render.render_frames(v[None], t, size=3)
    with pytest.raises(ImitatorError, match="indices"):
        render.render_frames(v[None], t, focus=np.array([0, len(v)]))


# ---------------------------------------------------------------------------------------------
# Video


def test_mp4_with_audio_samples(tmp_path):
    v, t = uv_sphere(n_lat=16, n_lon=32)
    frames = render.render_frames(np.stack([v * (1 + 0.02 * i) for i in range(12)]), t, size=64)
    sr = 16000
    samples = 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(sr * 0.5)) / sr)
    out = render.write_video(frames, 24, tmp_path / "sub" / "a.mp4", audio=(samples, sr))
    assert out == tmp_path / "sub" / "a.mp4"
    info = render.probe_video(out)
    assert info["frames"] == 12 and (info["width"], info["height"]) == (64, 64)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert info["audio"] and info["audio_codec"] == "aac"
    decoded = render.read_video_frames(out)
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(int) - frames).mean() < 4
    # Written atomically: nothing else is left in the folder
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["a.mp4"]
    # Longer audio is cut to the video; every frame is kept (also from a plain iterator)
    long_audio = np.tile(samples, 6)
    out = render.write_video(iter(frames), 24, tmp_path / "b.mp4", audio=(long_audio, sr),
                             num_frames=len(frames))
    info = render.probe_video(out)
    assert info["frames"] == 12 and info["audio"] and abs(info["duration"] - 0.5) < 0.06


def test_render_preview_with_audio_file_and_odd_size(tmp_path):
    v, t = uv_sphere(n_lat=16, n_lon=32)
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(8000, np.float32) + 0.01, 16000)
    out = render.render_preview(np.stack([v] * 5), t, 25, tmp_path / "p.mp4", audio_path=wav,
                                size=33, side=True)
    info = render.probe_video(out)
    assert info["frames"] == 5 and (info["width"], info["height"]) == (66, 34) and info["audio"]


def test_video_errors_leave_nothing_behind(tmp_path):
    v, t = cube()
    with pytest.raises(ImitatorError, match="Audio file not found: .*missing.wav"):
        render.render_preview(v[None], t, 30, tmp_path / "x.mp4",
                              audio_path=tmp_path / "missing.wav")
    bad = tmp_path / "not_audio.wav"
    bad.write_text("not audio")
    frames = np.zeros((3, 32, 32, 3), np.uint8)
    with pytest.raises(ImitatorError, match="FFmpeg failed") as e:
        render.write_video(frames, 30, tmp_path / "x.mp4", audio_path=bad)
    assert "\n" not in str(e.value)
    with pytest.raises(ImitatorError, match="fps"):
        render.write_video(frames, 0, tmp_path / "x.mp4")
    with pytest.raises(ImitatorError, match="uint8"):
        render.write_video(frames.astype(float), 30, tmp_path / "x.mp4")
    with pytest.raises(ImitatorError, match="NaN"):
        render.write_video(frames, 30, tmp_path / "x.mp4", audio=(np.full(100, np.nan), 16000))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not_audio.wav"]


def test_missing_ffmpeg_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import fails
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ImitatorError, match="imageio-ffmpeg") as e:
        render.write_video(np.zeros((1, 16, 16, 3), np.uint8), 30, tmp_path / "x.mp4")
    assert "\n" not in str(e.value) and not (tmp_path / "x.mp4").exists()


# ---------------------------------------------------------------------------------------------
# Dataset preview


def make_item(root, name="s1_01", frames=6, fps=30, faces=True):
    v, t = uv_sphere(n_lat=12, n_lon=24)
    seq = np.stack([v * (1 + 0.05 * np.sin(i)) for i in range(frames)]).astype(np.float32)
    (root / "vertices_npy").mkdir(parents=True)
    (root / "wav").mkdir()
    np.save(root / "vertices_npy" / f"{name}.npy", seq.reshape(frames, -1))
    audio = np.full(int(16000 * frames / fps), 0.01, np.float32)
    sf.write(root / "wav" / f"{name}.wav", audio, 16000)
    (root / "dataset.json").write_text(json.dumps({"fps": fps}))
    if faces:
        np.save(root / "faces.npy", t.astype(np.int32))
    return v, t


def test_preview_item_with_faces_npy(tmp_path):
    make_item(tmp_path / "d", frames=6, fps=30)
    out = preview.preview_item(tmp_path / "d", "s1_01", tmp_path / "p.mp4", size=48)
    info = render.probe_video(out)
    assert info["frames"] == 6 and (info["width"], info["height"]) == (48, 48) and info["audio"]


def test_preview_item_default_head_adds_lip_closeup(tmp_path, monkeypatch):
    v, t = make_item(tmp_path / "d", frames=4, fps=60, faces=False)
    head = Head("fake", v.astype(np.float32), np.full(len(t), 3, np.int32),
                t.reshape(-1).astype(np.int32),
                regions={"lips": np.arange(20), "tongue": np.arange(3)})
    import core.faces.default_head as dh

    monkeypatch.setattr(dh, "load_default_head", lambda cache_dir: head)
    out = preview.preview_item(tmp_path / "d", "s1_01", tmp_path / "p.mp4", size=32,
                               head_cache_dir=tmp_path / "cache")
    info = render.probe_video(out)
    assert info["frames"] == 4 and (info["width"], info["height"]) == (64, 32)
    # Wrong vertex count for the head -> the message says to add faces.npy
    head.vertices = head.vertices[:-1]
    with pytest.raises(ImitatorError, match="faces.npy"):
        preview.preview_item(tmp_path / "d", "s1_01", tmp_path / "q.mp4", size=32,
                             head_cache_dir=tmp_path / "cache")
    with pytest.raises(ImitatorError, match="faces.npy"):
        preview.preview_item(tmp_path / "d", "s1_01", tmp_path / "q.mp4", size=32)


def test_preview_item_bad_dataset(tmp_path):
    make_item(tmp_path / "d")
    with pytest.raises(ImitatorError, match="s1_02.npy not found"):
        preview.preview_item(tmp_path / "d", "s1_02", tmp_path / "p.mp4")
    (tmp_path / "d" / "wav" / "s1_01.wav").unlink()
    with pytest.raises(ImitatorError, match="s1_01.wav not found"):
        preview.preview_item(tmp_path / "d", "s1_01", tmp_path / "p.mp4")
    make_item(tmp_path / "e")
    (tmp_path / "e" / "dataset.json").write_text(json.dumps({"fps": 0}))
    with pytest.raises(ImitatorError, match="fps"):
        preview.preview_item(tmp_path / "e", "s1_01", tmp_path / "p.mp4")
    make_item(tmp_path / "f")
    np.save(tmp_path / "f" / "vertices_npy" / "s1_01.npy", np.full((3, 30), np.nan, np.float32))
    with pytest.raises(ImitatorError, match="NaN"):
        preview.preview_item(tmp_path / "f", "s1_01", tmp_path / "p.mp4")
    assert not (tmp_path / "p.mp4").exists()


def test_preview_command(tmp_path):
    make_item(tmp_path / "d", frames=3)
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    dataset = sub.add_parser("dataset").add_subparsers(dest="dataset_command")
    preview.add_preview_command(dataset)
    args = parser.parse_args(["dataset", "preview", "s1_01", "--data", str(tmp_path / "d"),
                              "--out", str(tmp_path / "c.mp4"), "--size", "32", "--no-mouth"])
    assert args.func(args) == 0
    assert render.probe_video(tmp_path / "c.mp4")["frames"] == 3
