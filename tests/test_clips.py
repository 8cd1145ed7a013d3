"""Tracked-clip importers: round trips for every format, validation, resampling."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from core.audio import save_wav
from core.data import clips
from core.data.clips import (Clip, load_clip, resample, resample_frames, save_arkit_csv,
                             save_clip_npz, save_obj_sequence, validate_clip)
from core.data.livelink import LIVE_LINK_NAMES, read_arkit_csv
from core.data.meshfiles import natural_key, write_obj, write_ply
from core.errors import ImitatorError
from core.faces.default_head import ARKIT_SHAPE_NAMES
from core.faces.flame import load_flame
from core.faces.head import Head
from fake_flame import fake_arrays, pickle_2020, write_pickle

SR = 16000


@pytest.fixture(scope="module")
def head() -> Head:
    """A 40-vertex head ~20 cm across (quads and triangles) with the 52 ARKit shape keys."""
    rng = np.random.default_rng(1)
    V = 40
    sizes = np.array([4] * 8 + [3] * 10, dtype=np.int32)
    indices = rng.integers(0, V, size=int(sizes.sum())).astype(np.int32)
    keys = {n: rng.normal(scale=2e-3, size=(V, 3)).astype(np.float32) for n in ARKIT_SHAPE_NAMES}
    return Head("test head", rng.normal(scale=0.08, size=(V, 3)).astype(np.float32), sizes,
                indices, keys)


def moving(head: Head, frames: int = 45, fps: float = 30.0, seed: int = 0) -> Clip:
    """A clip on ``head`` with smooth motion (mm-scale) and matching audio."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / fps
    motion = np.sin(2 * np.pi * 1.5 * t)[:, None, None] * rng.normal(scale=3e-3, size=head.vertices.shape)
    audio = (0.2 * np.sin(2 * np.pi * 220 * np.arange(round(frames / fps * SR)) / SR)).astype(np.float32)
    return Clip((head.vertices + motion).astype(np.float32), fps, audio, SR)


def assert_same(a: Clip, b: Clip, atol: float = 1e-6) -> None:
    assert a.vertices.shape == b.vertices.shape
    np.testing.assert_allclose(a.vertices, b.vertices, atol=atol, rtol=0)
    assert a.fps == pytest.approx(b.fps)
    assert (a.audio is None) == (b.audio is None)
    if a.audio is not None:
        assert a.sample_rate == b.sample_rate
        np.testing.assert_allclose(a.audio, b.audio, atol=1e-6)


# --- round trips ----------------------------------------------------------------------------------


def test_npz_round_trip(tmp_path, head):
    clip = moving(head)
    save_clip_npz(tmp_path / "c.npz", clip)
    back = load_clip(tmp_path / "c.npz", head)
    assert back.vertices.dtype == np.float32
    assert_same(back, clip, atol=0)


def test_npz_flat_vertices_and_audio_path(tmp_path, head):
    clip = moving(head, fps=25)
    save_wav(tmp_path / "take.wav", clip.audio, SR)
    np.savez(tmp_path / "c.npz", vertices=clip.vertices.reshape(clip.num_frames, -1), fps=25.0,
             audio_path="take.wav")
    assert_same(load_clip(tmp_path / "c.npz", head), clip)


def test_npz_without_fps_needs_one(tmp_path, head):
    np.savez(tmp_path / "c.npz", vertices=moving(head).vertices)
    with pytest.raises(ImitatorError, match=r"c\.npz: no 'fps'"):
        load_clip(tmp_path / "c.npz", head)
    assert load_clip(tmp_path / "c.npz", head, fps=30).fps == 30


def test_obj_sequence_round_trip(tmp_path, head):
    clip = moving(head)
    save_obj_sequence(tmp_path / "seq", clip, head)
    names = sorted(p.name for p in (tmp_path / "seq").iterdir())
    assert names[:2] == ["audio.wav", "clip.json"] and len(names) == clip.num_frames + 2
    text = (tmp_path / "seq" / "frame_00000.obj").read_text()
    assert text.count("\nf ") + text.startswith("f ") == len(head.face_sizes)
    back = load_clip(tmp_path / "seq", head)  # fps from clip.json, audio found in the folder
    assert_same(back, clip)
    with pytest.raises(ImitatorError, match="already exists"):
        save_obj_sequence(tmp_path / "seq", clip, head)
    save_obj_sequence(tmp_path / "seq", resample(clip, 15), head, overwrite=True)
    assert load_clip(tmp_path / "seq", head).num_frames == 23


def test_frames_sorted_naturally(tmp_path, head):
    # frame_10 sorts before frame_2 as text; the clip must still be 0, 1, 2, ..., 11
    for i in range(12):
        write_obj(tmp_path / f"frame_{i}.obj", head.vertices + 1e-3 * i)
    assert sorted(["frame_10.obj", "frame_2.obj"], key=natural_key) == ["frame_2.obj", "frame_10.obj"]
    clip = load_clip(tmp_path, head, fps=30)
    assert clip.audio is None
    steps = (clip.vertices - head.vertices).mean(axis=(1, 2)) / 1e-3
    np.testing.assert_allclose(steps, np.arange(12), atol=1e-3)


@pytest.mark.parametrize("binary", [True, False])
def test_ply_folder_round_trip(tmp_path, head, binary):
    clip = moving(head, frames=20)
    for i, frame in enumerate(clip.vertices):
        write_ply(tmp_path / f"f{i}.ply", frame, head.face_sizes, head.face_indices, binary=binary)
    save_wav(tmp_path / "voice.wav", clip.audio, SR)
    (tmp_path / "meta.json").write_text(json.dumps({"fps": 30}))
    assert_same(load_clip(tmp_path, head), clip)


def test_frames_folder_bad_inputs(tmp_path, head):
    with pytest.raises(ImitatorError, match="no .obj or .ply frames"):
        load_clip(tmp_path, head, fps=30)
    write_obj(tmp_path / "a1.obj", head.vertices)
    write_obj(tmp_path / "a2.obj", head.vertices[:-1])
    with pytest.raises(ImitatorError, match=r"a2\.obj: frame has 39 vertices"):
        load_clip(tmp_path, head, fps=30)
    write_obj(tmp_path / "a2.obj", head.vertices)
    with pytest.raises(ImitatorError, match="no frame rate"):
        load_clip(tmp_path, head)
    with pytest.raises(ImitatorError, match="single mesh frame"):
        load_clip(tmp_path / "a1.obj", head)


def test_obj_with_colours_and_odd_lines(tmp_path, head):
    v = head.vertices.astype(np.float64)
    lines = ["# exported", "o head", "vn 0 0 1", "vt 0.5 0.5"]
    lines += [f"v {x:.7f} {y:.7f} {z:.7f}" + (" 0.5 0.5 0.5" if i % 2 else "")
              for i, (x, y, z) in enumerate(v)]
    (tmp_path / "frame_0.obj").write_text("\r\n".join(lines + ["f 1/1/1 2/1/1 3/1/1"]) + "\r\n")
    clip = load_clip(tmp_path, head, fps=24)
    np.testing.assert_allclose(clip.vertices[0], v, atol=1e-7)


def test_unknown_or_missing_clip(tmp_path, head):
    with pytest.raises(ImitatorError, match="clip not found"):
        load_clip(tmp_path / "nope.npz", head)
    (tmp_path / "c.txt").write_text("x")
    with pytest.raises(ImitatorError, match=r"c\.txt: unknown clip format '\.txt'"):
        load_clip(tmp_path / "c.txt", head)
    (tmp_path / "c.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ImitatorError, match=r"c\.npz: corrupt \.npz \(BadZipFile"):
        load_clip(tmp_path / "c.npz", head)
    np.savez(tmp_path / "d.npz", weights=np.zeros(3))
    with pytest.raises(ImitatorError, match="neither 'vertices' nor FLAME 'expression'"):
        load_clip(tmp_path / "d.npz", head)


@pytest.fixture(scope="module")
def flame(tmp_path_factory):
    path = tmp_path_factory.mktemp("flame") / "generic_model.pkl"
    return load_flame(write_pickle(path, pickle_2020(fake_arrays())))


def test_flame_parameters(tmp_path, flame):
    rng = np.random.default_rng(3)
    T, fps = 40, 30.0
    params = {"expression": rng.normal(size=(T, 50)), "jaw_pose": rng.normal(scale=0.1, size=(T, 3)),
              "neck_pose": rng.normal(scale=0.05, size=(T, 3)),
              "eye_pose": rng.normal(scale=0.05, size=(T, 6)), "shape": rng.normal(size=300)}
    audio = 0.1 * rng.standard_normal(int(T / fps * SR)).astype(np.float32)
    np.savez(tmp_path / "flame.npz", fps=fps, audio=audio, sample_rate=SR, **params)
    clip = load_clip(tmp_path / "flame.npz", flame=flame)
    expected = flame.evaluate(shape=params["shape"], expression=params["expression"],
                              jaw=params["jaw_pose"], neck=params["neck_pose"], eyes=params["eye_pose"])
    np.testing.assert_allclose(clip.vertices, expected, atol=1e-7)
    assert clip.fps == fps and np.array_equal(clip.audio, audio)
    # every parameter counts: leaving out the jaw or the eyes would change the result
    for left_out in ("jaw", "eyes"):
        partial = {"shape": params["shape"], "expression": params["expression"],
                   "jaw": params["jaw_pose"], "eyes": params["eye_pose"], "neck": params["neck_pose"]}
        del partial[left_out]
        assert np.abs(flame.evaluate(**partial) - clip.vertices).max() > 1e-4
    with pytest.raises(ImitatorError, match="FLAME parameters; choose your FLAME model"):
        load_clip(tmp_path / "flame.npz")
    params["jaw_pose"][7, 1] = np.nan
    np.savez(tmp_path / "bad.npz", fps=fps, **params)
    with pytest.raises(ImitatorError, match=r"bad\.npz: 'jaw_pose' holds NaN or Inf at frame 7"):
        load_clip(tmp_path / "bad.npz", flame=flame)


def test_arkit_csv_round_trip(tmp_path, head):
    rng = np.random.default_rng(4)
    T = 75  # 1.25 s at 60 fps: the frame field wraps, so the rate is read from the timecodes
    weights = np.clip(rng.normal(0.3, 0.2, size=(T, 52)), 0, 1).astype(np.float32)
    save_arkit_csv(tmp_path / "take.csv", weights, 60)
    lines = (tmp_path / "take.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert header[:4] == ["Timecode", "BlendShapeCount", "EyeBlinkLeft", "EyeLookDownLeft"]
    assert header.index("JawRight") < header.index("JawLeft")  # Live Link Face's own order
    assert len(header) == 2 + 52 + 9 and lines[1].split(",")[1] == "61"
    assert lines[1].startswith("00:00:00:00.000,") and lines[61].startswith("00:00:01:00.000,")
    clip = load_clip(tmp_path / "take.csv", head)
    assert clip.fps == 60 and clip.num_frames == T
    np.testing.assert_allclose(clip.arkit, weights, atol=1e-7)
    keys = np.stack([head.shape_keys[n] for n in ARKIT_SHAPE_NAMES])
    expected = head.vertices + np.einsum("tk,kvc->tvc", weights, keys)
    np.testing.assert_allclose(clip.vertices, expected, atol=1e-6)


def test_arkit_csv_from_live_link_face(tmp_path, head):
    """A hand-written export: 30 fps take, one dropped frame, PascalCase names, sub-frames."""
    header = ["Timecode", "BlendShapeCount", *(n[0].upper() + n[1:] for n in LIVE_LINK_NAMES),
              "HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
              "RightEyeYaw", "RightEyePitch", "RightEyeRoll"]
    jaw = LIVE_LINK_NAMES.index("jawOpen")
    rows = []
    for f in [*range(25, 30), *range(0, 12), *range(13, 20)]:  # 14:03:52:25 .. 14:03:53:19, 12 dropped
        second = 52 if f >= 25 else 53
        values = np.zeros(61)
        values[jaw] = 0.05 * (f + (30 if second == 53 else 0) - 25)  # linear in time
        rows.append(f"14:03:{second}:{f:02d}.207,61," + ",".join(f"{x:.5f}" for x in values))
    (tmp_path / "MySlate_1_iPhone.csv").write_text("\n".join([",".join(header), *rows]) + "\n")
    take = read_arkit_csv(tmp_path / "MySlate_1_iPhone.csv")
    assert take.fps == 30  # FF ran up to 29
    assert len(take.weights) == 25  # the dropped frame is filled
    j = ARKIT_SHAPE_NAMES.index("jawOpen")
    np.testing.assert_allclose(take.weights[:, j], 0.05 * np.arange(25), atol=1e-6)
    with pytest.raises(ImitatorError, match="needs a head with ARKit shape keys"):
        load_clip(tmp_path / "MySlate_1_iPhone.csv")
    bare = Head("bare", head.vertices, head.face_sizes, head.face_indices)
    with pytest.raises(ImitatorError, match="head 'bare' has no ARKit shape keys"):
        load_clip(tmp_path / "MySlate_1_iPhone.csv", bare)


# --- validation -----------------------------------------------------------------------------------


def test_wrong_topology_names_both(head):
    clip = Clip(np.zeros((5, 41, 3), np.float32), 30.0, source=None)
    with pytest.raises(ImitatorError, match=r"clip has 41 vertices but head 'test head' has 40"):
        validate_clip(clip, head)


def test_nan_frame_named(head):
    clip = moving(head)
    clip.vertices[17, 3, 1] = np.nan
    clip.vertices[30, 0, 0] = np.inf
    with pytest.raises(ImitatorError, match=r"frame 17 holds NaN or Inf vertices \(2 bad frames\)"):
        validate_clip(clip, head)


def test_millimetres_converted(head, caplog):
    clip = moving(head)
    mm = Clip(clip.vertices * 1000, clip.fps, clip.audio, SR)
    with caplog.at_level(logging.INFO, logger=clips.__name__):
        out = validate_clip(mm, head)
    assert "millimetres" in caplog.text
    np.testing.assert_allclose(out.vertices, clip.vertices, atol=1e-6)
    assert np.array_equal(validate_clip(clip, head).vertices, clip.vertices)  # metres untouched
    with pytest.raises(ImitatorError, match=r"100x the size of head 'test head'"):
        validate_clip(Clip(clip.vertices * 100, clip.fps), head)  # centimetres: refused


def test_audio_length(head):
    clip = moving(head, frames=60, fps=30)  # 2 s
    long_ = np.concatenate([clip.audio, np.full(int(0.15 * SR), 0.1, np.float32)])
    out = validate_clip(Clip(clip.vertices, 30, long_, SR), head)
    assert len(out.audio) == 2 * SR and np.array_equal(out.audio, clip.audio)
    out = validate_clip(Clip(clip.vertices, 30, clip.audio[: int(1.85 * SR)], SR), head)
    assert len(out.audio) == 2 * SR and not out.audio[-int(0.1 * SR):].any()
    with pytest.raises(ImitatorError, match=r"audio is 1\.50 s, shorter than the motion \(2\.00 s\)"):
        validate_clip(Clip(clip.vertices, 30, clip.audio[: int(1.5 * SR)], SR), head)
    with pytest.raises(ImitatorError, match="longer than the motion"):
        validate_clip(Clip(clip.vertices, 30, np.tile(clip.audio, 2), SR), head)
    with pytest.raises(ImitatorError, match="no audio"):
        validate_clip(Clip(clip.vertices, 30), head, require_audio=True)


@pytest.mark.parametrize("fps", [0.0, -30.0, float("nan"), 5.0, 1000.0])
def test_bad_fps_refused(head, fps):
    with pytest.raises(ImitatorError, match="fps"):
        validate_clip(Clip(moving(head).vertices, fps), head)


# --- resampling -----------------------------------------------------------------------------------


def test_resample_sinusoid():
    f_in, f_out, hz = 60.0, 25.0, 1.3
    t = np.arange(300) / f_in  # 5 s
    wave = np.sin(2 * np.pi * hz * t).astype(np.float32)[:, None, None] * np.ones((1, 2, 3), np.float32)
    out = resample_frames(wave, f_in, f_out)
    assert out.shape == (125, 2, 3)  # frames at 0, 1/25, ..., 4.96 s: inside the 0..4.983 s span
    truth = np.sin(2 * np.pi * hz * np.arange(125) / f_out)
    err = np.abs(out[:, 0, 0] - truth).max()
    assert err < (2 * np.pi * hz / f_in) ** 2 / 8 + 1e-6  # linear interpolation's bound
    # a time axis off by one output frame would be far off
    assert np.abs(out[1:, 0, 0] - truth[:-1]).max() > 0.1


def test_resample_60_to_30_is_every_other_frame(head):
    clip = moving(head, frames=61, fps=60)
    half = resample(clip, 30)
    assert half.fps == 30 and np.array_equal(half.vertices, clip.vertices[::2])
    assert half.audio is clip.audio
    double = resample(half, 60)
    np.testing.assert_allclose(double.vertices[::2], half.vertices)
    np.testing.assert_allclose(double.vertices[1::2], (half.vertices[:-1] + half.vertices[1:]) / 2,
                               atol=1e-7)
