"""Head fit and motion transfer: known answers on the default head remeshed and moved, another
person's head, the lips kept apart, the fit file, and heads that are not heads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.animation import Animation
from core.errors import ImitatorError
from core.faces import head_fit as hf
from core.faces import mesh_geometry as mg
from core.faces.default_head import build_default_head
from core.faces.transfer import clip_to_model, lip_gap, target_lip_points, transfer_animation
from head_samples import IDENTITY, cube, plane, remesh, sealed_mouth

CENTRES = (520, 540)  # the default head's lip centres (the shipped model's closure centres)


@pytest.fixture(scope="module")
def head():
    return build_default_head()


@pytest.fixture(scope="module")
def sample_animation():
    """The shipped model on the shipped speech sample."""
    import torch

    from core.model.checkpoint import from_pretrained
    from core.model.generate import generate_file

    torch.set_num_threads(1)
    model = from_pretrained("models/default", "cpu")
    assert model.config.lip_closure["centres"] == list(CENTRES)
    return generate_file(model, "models/sample/sample.wav")


@pytest.fixture(scope="module")
def remeshed(head):
    target = remesh(head)
    return target, hf.fit_head(head, target.vertices, target.triangles, name="Remeshed")


def _ground_truth(head, target, anim: Animation) -> np.ndarray:
    """The source animation sampled at each target vertex's own point of the source surface
    (its birth vertex's lip side and part known), turned and scaled like the target."""
    src = hf._source(head)
    V, F = src.vertices, src.triangles
    group = np.where(src.body[target.birth], src.side[target.birth], 3)
    allowed = np.zeros((4, len(F)), bool)
    body = src.body[F].all(1)
    allowed[0], allowed[1], allowed[2], allowed[3] = body, body & (src.tri_side != 2), body & (src.tri_side != 1), True
    tri, bary, _ = mg.closest_points_grouped(target.original, group, V, F, allowed)
    offsets = np.einsum("vj,tvjc->tvc", bary, anim.offsets()[:, F[tri]])
    return offsets @ (target.scale * target.rotation).T


def test_closest_points_match_brute_force():
    rng = np.random.default_rng(0)
    a, b, c = (rng.normal(size=(500, 3)) for _ in range(3))
    p = rng.normal(size=(500, 3)) * 2
    bary, dist = mg.closest_on_triangles(p, a, b, c)
    assert np.all(bary >= -1e-9) and np.allclose(bary.sum(1), 1)
    # brute force on a fine barycentric grid: never closer than the exact answer
    g = np.linspace(0, 1, 41)
    u, v = np.meshgrid(g, g)
    keep = u + v <= 1
    u, v = u[keep], v[keep]
    pts = a[:, None] * (1 - u - v)[None, :, None] + b[:, None] * u[None, :, None] + c[:, None] * v[None, :, None]
    brute = np.linalg.norm(pts - p[:, None], axis=2).min(1)
    assert np.all(dist <= brute + 1e-9) and np.all(brute - dist < 0.05)


def test_known_answer_remeshed_scaled_moved(head, sample_animation, remeshed):
    target, fit = remeshed
    assert fit.scale == pytest.approx(target.scale, rel=2e-3)
    truth_fitted = target.scale * head.vertices.astype(np.float64) @ target.rotation.T + target.shift
    assert np.linalg.norm(fit.fitted - truth_fitted, axis=1).mean() < 0.5e-3
    out = transfer_animation(sample_animation, fit, target.vertices, CENTRES)
    assert out.basis.shape == (64, len(target.vertices), 3) and out.num_frames == sample_animation.num_frames
    err = np.linalg.norm(out.offsets() - _ground_truth(head, target, sample_animation), axis=2)  # (T, V)
    lips = np.isin(target.birth, head.regions["lips"])
    assert lips.sum() > 100
    # issue 14: mean <= 0.3 mm, max <= 1 mm (v0.7 model: 0.12 / 0.82 mm, the contact step included)
    assert err[:, lips].mean() <= 0.3e-3 and err[:, lips].max() <= 1e-3, (err[:, lips].mean(), err[:, lips].max())


def test_lips_close_where_the_source_closes(head, sample_animation, remeshed):
    target, fit = remeshed
    anim = sample_animation
    As, g0 = lip_gap(anim.basis, anim.bias, anim.template, *CENTRES)
    src_gap = np.linalg.norm(anim.weights @ As.T + g0, axis=1)
    closed = src_gap < 1e-3
    assert closed.sum() >= 10 and (~closed).sum() >= 10
    points = target_lip_points(fit, CENTRES)
    gaps = {}
    for contact in (False, True):
        out = transfer_animation(anim, fit, target.vertices, CENTRES, contact=contact)
        A, g = lip_gap(out.basis, out.bias, out.template, *points)
        gaps[contact] = np.linalg.norm(out.weights @ A.T + g, axis=1) / fit.scale
    assert (gaps[True][closed] < 1e-3).mean() >= 0.95
    assert (gaps[False][closed] < 1e-3).mean() < 0.5  # the remeshed lips are thinner: without it they stay apart
    assert np.corrcoef(gaps[True], src_gap)[0, 1] > 0.95  # and the gap follows the speech


def test_another_identity_and_topology(head, sample_animation):
    other = build_default_head(identity=IDENTITY)
    assert np.linalg.norm(other.vertices - head.vertices, axis=1).max() > 5e-3
    target = remesh(other, keep=0.55, scale=0.9, angle=-0.4, seed=3)
    fit = hf.fit_head(head, target.vertices, target.triangles, name="Other")
    out = transfer_animation(sample_animation, fit, target.vertices, CENTRES)
    anim = sample_animation
    As, g0 = lip_gap(anim.basis, anim.bias, anim.template, *CENTRES)
    closed = np.linalg.norm(anim.weights @ As.T + g0, axis=1) < 1e-3
    A, g = lip_gap(out.basis, out.bias, out.template, *target_lip_points(fit, CENTRES))
    gap = np.linalg.norm(out.weights @ A.T + g, axis=1) / fit.scale
    assert (gap[closed] < 1e-3).mean() >= 0.95
    assert gap.max() > 5e-3  # and it opens
    # nothing outside the face moves more than 0.5 mm
    outside = np.isin(target.birth, np.concatenate([other.regions["scalp"], other.regions["neck"]]))
    moved = np.linalg.norm(out.offsets() - out.offsets()[:1] * 0, axis=2)[:, outside] / fit.scale
    assert outside.sum() > 20 and moved.max() <= 0.5e-3
    # the slit is never bridged: upper lip vertices lie on the model's upper side only, and lower on lower
    src = hf._source(head)
    up = np.isin(target.birth, other.regions["upper_lip"])
    lo = np.isin(target.birth, other.regions["lower_lip"])
    on_lower = ((src.side[fit.corners] == 2) * fit.bary).sum(1)  # share of the point on the lower side
    on_upper = ((src.side[fit.corners] == 1) * fit.bary).sum(1)
    corner_x = np.abs(other.vertices[other.regions["lips"], 0]).max()
    inner = np.abs(target.original[:, 0]) < 0.8 * corner_x  # away from the mouth corners, where they meet
    assert up.sum() > 50 and lo.sum() > 30
    assert on_lower[up & inner].max() == 0 and on_upper[lo & inner].max() == 0
    assert on_lower[up].max() < 0.1 and on_upper[lo].max() < 0.1
    # the jaw carries the lower lip: at the widest opening the lower lip moves, the upper one much less
    frame = int(np.argmax(gap))
    d = np.linalg.norm(out.offsets()[frame], axis=1)
    assert d[lo].mean() > 2 * d[up].mean()


def test_fit_file_round_trip_and_other_mesh(tmp_path, remeshed):
    target, fit = remeshed
    path = tmp_path / "head.imfit"
    fit.save(path)
    back = hf.HeadFit.load(path)
    assert back.target_topology == fit.target_topology and back.scale == fit.scale
    assert np.array_equal(back.corners, fit.corners) and np.array_equal(back.rotation, fit.rotation)
    assert back.landmarks.keys() == fit.landmarks.keys()
    assert [p.name for p in tmp_path.iterdir()] == ["head.imfit"]
    back.check_target("Remeshed", len(target.vertices), fit.target_topology)
    with pytest.raises(ImitatorError, match="made for another mesh than 'Cube'.*Fit Head"):
        back.check_target("Cube", 602, "0123456789abcdef")
    (tmp_path / "bad.imfit").write_bytes(b"not a fit")
    with pytest.raises(ImitatorError, match="bad.imfit: not a readable head fit"):
        hf.HeadFit.load(tmp_path / "bad.imfit")


def test_clip_on_the_target_maps_back_to_the_model(head, sample_animation, remeshed):
    target, fit = remeshed
    out = transfer_animation(sample_animation, fit, target.vertices, CENTRES, contact=False)
    frames = out.vertices()[::10]
    back = clip_to_model(np.concatenate([target.vertices[None], frames]).astype(np.float32), fit,
                         head.vertices)
    want = sample_animation.vertices()[::10]
    lips = head.regions["lips"]
    err = np.linalg.norm(back[1:, lips] - want[:, lips], axis=2)
    assert err.mean() < 0.3e-3


def test_given_landmarks_are_used_and_contradictions_refused(head, remeshed):
    target, fit = remeshed
    marks = {k: np.asarray(fit.landmarks[k]) for k in ("nose_tip", "chin", "mouth_corner_left",
                                                        "mouth_corner_right", "upper_lip_centre")}
    again = hf.fit_head(head, target.vertices, target.triangles, name="Remeshed", landmarks=marks)
    assert np.abs(again.fitted - fit.fitted).max() < 1e-3
    swapped = dict(marks, mouth_corner_left=marks["nose_tip"], nose_tip=marks["mouth_corner_left"])
    with pytest.raises(ImitatorError, match="'Remeshed': the landmarks contradict each other"):
        hf.fit_head(head, target.vertices, target.triangles, name="Remeshed", landmarks=swapped)
    with pytest.raises(ImitatorError, match="unknown landmark"):
        hf.fit_head(head, target.vertices, target.triangles, name="Remeshed", landmarks={"navel": [0, 0, 0]})


@pytest.mark.parametrize("case, message", [
    ("cube", "'Cube' (does not look like a head|has no mouth opening)"),
    ("tiny_cube", "'Cube' has 8 vertices"),
    ("plane", "'Plane' is flat"),
    ("loose", "'Loose' is loose parts only"),
    ("sealed", "'Sealed' has no mouth opening"),
])
def test_not_a_head_is_refused(head, case, message):
    if case == "cube":
        v, f, name = *cube(), "Cube"
    elif case == "tiny_cube":
        v, f, name = np.array(np.meshgrid([0, 1], [0, 1], [0, 1])).T.reshape(-1, 3) * 0.1, np.zeros((12, 3), int), "Cube"
    elif case == "plane":
        v, f, name = *plane(), "Plane"
    elif case == "loose":
        tris = head.triangles()
        v, f, name = head.vertices[tris.ravel()], np.arange(tris.size).reshape(-1, 3), "Loose"
    else:
        v, f, name = *sealed_mouth(head), "Sealed"
    with pytest.raises(ImitatorError, match=message):
        hf.fit_head(head, v, f, name=name)


def test_cli_fit_head_then_generate_on_it(tmp_path, remeshed, head):
    from core.cli import main

    target, _ = remeshed
    obj = tmp_path / "mine.obj"
    obj.write_text("".join(f"v {a:.7f} {b:.7f} {c:.7f}\n" for a, b, c in target.vertices)
                   + "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in target.triangles))
    fit = tmp_path / "mine.imfit"
    assert main(["fit-head", str(obj), "--out", str(fit)]) == 0
    assert main(["fit-head", str(obj), "--out", str(fit)]) == 1  # exists: refused, file kept
    out = tmp_path / "anim.npz"
    assert main(["generate", "--audio", "models/sample/sample.wav", "--head", str(fit), "--out", str(out),
                 "--obj-dir", str(tmp_path / "frames"), "--threads", "1"]) == 0
    anim = Animation.load(out)
    assert anim.num_vertices == len(target.vertices) and anim.basis.shape[0] <= 64
    assert np.allclose(anim.template, target.vertices, atol=1e-6)
    frame = (tmp_path / "frames" / "frame_00000.obj").read_text()
    assert frame.count("\nf ") == len(target.triangles) - 1 or frame.count("f ") >= len(target.triangles)
    assert main(["generate", "--audio", "models/sample/sample.wav", "--head", str(tmp_path / "no.imfit"),
                 "--out", str(tmp_path / "x.npz")]) == 1
    assert not (tmp_path / "x.npz").exists()


def test_adapt_takes_a_clip_of_another_topology(tmp_path, head, sample_animation, remeshed, capsys):
    from core.audio import load_audio
    from core.cli import main
    from core.data.clips import Clip, save_obj_sequence
    from core.faces.head import Head
    from core.style.profile import read_profile_info

    target, fit = remeshed
    moved = transfer_animation(sample_animation, fit, target.vertices, CENTRES).vertices().astype(np.float32)
    tri = target.triangles.astype(np.int32)
    mesh = Head("Remeshed", target.vertices.astype(np.float32), np.full(len(tri), 3, np.int32), tri.ravel())
    audio = load_audio("models/sample/sample.wav", 16000)
    folder = save_obj_sequence(tmp_path / "clip", Clip(np.concatenate([target.vertices[None], moved]).astype(np.float32),
                                                      sample_animation.fps, audio, 16000), mesh)
    out = tmp_path / "them.imstyle"
    assert main(["adapt", "--clip", str(folder), "--out", str(out), "--steps1", "3", "--steps2", "0",
                 "--threads", "1", "--no-lip-loss"]) == 0
    assert read_profile_info(out)["topology"] == head.topology
    # vertices only (an npz) and no mesh of its topology: refused with the fix, nothing written
    npz = tmp_path / "clip.npz"
    np.savez(npz, vertices=moved, fps=30.0)
    bad = tmp_path / "bad.imstyle"
    assert main(["adapt", "--clip", str(npz), "--audio", "models/sample/sample.wav", "--out", str(bad),
                 "--steps1", "3", "--steps2", "0"]) == 1
    assert "clip.npz: the clip is on another head topology" in capsys.readouterr().err
    assert not bad.exists()
    obj = tmp_path / "mesh.obj"
    obj.write_text("".join(f"v {a:.7f} {b:.7f} {c:.7f}\n" for a, b, c in target.vertices)
                   + "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in target.triangles))
    assert main(["adapt", "--clip", str(npz), "--audio", "models/sample/sample.wav", "--out", str(bad),
                 "--steps1", "3", "--steps2", "0", "--clip-head", str(obj), "--threads", "1"]) == 0


def test_fit_head_on_a_fake_flame_file_with_a_realistic_template(tmp_path, remeshed, capsys):
    """A FLAME model file whose template is the remeshed default head: fit-head reads its template."""
    from core.cli import main

    target, _ = remeshed
    V = len(target.vertices)
    rng = np.random.default_rng(0)
    weights = np.zeros((V, 5))
    weights[:, 0] = 1.0
    flame = tmp_path / "flame.npz"
    np.savez(flame, v_template=target.vertices, f=target.triangles, shapedirs=rng.normal(scale=1e-6, size=(V, 3, 301)),
             posedirs=np.zeros((V, 3, 36)), J_regressor=np.full((5, V), 1.0 / V),
             kintree_table=np.array([[-1, 0, 1, 1, 1], [0, 1, 2, 3, 4]]), weights=weights)
    assert main(["fit-head", str(flame), "--out", str(tmp_path / "flame.imfit")]) == 0
    assert "'flame' (3044 vertices)" in capsys.readouterr().out or V != 3044
    assert main(["fit-head", str(tmp_path / "head.ply"), "--out", str(tmp_path / "x.imfit")]) == 1
    assert "give the head as an .obj mesh" in capsys.readouterr().err and not (tmp_path / "x.imfit").exists()


@pytest.mark.parametrize("stretch", [(1.3, 0.9, 1.0), (0.8, 1.2, 1.1)])
def test_stylized_proportions(head, sample_animation, stretch):
    """A cartoon-like head (the default head stretched unevenly, then remeshed): the lips still
    close where the model's close, open as wide, and no upper-lip vertex follows the lower lip."""
    from core.faces.head import Head

    stylized = Head("stylized", head.vertices * np.array(stretch, np.float32), head.face_sizes, head.face_indices,
                    head.shape_keys, head.regions)
    target = remesh(stylized, keep=0.5, scale=1.0, angle=0.3, seed=5)
    fit = hf.fit_head(head, target.vertices, target.triangles, name="Stylized")
    out = transfer_animation(sample_animation, fit, target.vertices, CENTRES)
    anim = sample_animation
    As, g0 = lip_gap(anim.basis, anim.bias, anim.template, *CENTRES)
    src_gap = np.linalg.norm(anim.weights @ As.T + g0, axis=1)
    A, g = lip_gap(out.basis, out.bias, out.template, *target_lip_points(fit, CENTRES))
    gap = np.linalg.norm(out.weights @ A.T + g, axis=1)
    assert (gap[src_gap < 1e-3] < 1e-3).mean() >= 0.95 and np.corrcoef(gap, src_gap)[0, 1] > 0.95
    src = hf._source(head)
    up = np.isin(target.birth, head.regions["upper_lip"])
    assert ((src.side[fit.corners[up]] == 2) * fit.bary[up]).sum(1).max() < 0.1


def test_adapt_takes_a_flame_clip_through_the_users_flame_model(tmp_path, head, remeshed, capsys):
    from core.cli import main
    from core.style.profile import read_profile_info
    from head_samples import fake_flame_with_jaw, jaw_clip

    target, _ = remeshed
    mouth_y = float(target.vertices[np.isin(target.birth, CENTRES)][:, 1].mean())
    flame = tmp_path / "flame.npz"
    fake_flame_with_jaw(target.vertices, target.triangles, mouth_y, flame)
    clip = tmp_path / "tracked.npz"
    jaw_clip(clip, Path("models/sample/sample.wav").resolve())
    out = tmp_path / "flame.imstyle"
    assert main(["adapt", "--clip", str(clip), "--out", str(out), "--steps1", "3", "--steps2", "0",
                 "--threads", "1", "--no-lip-loss"]) == 1
    assert "tracked.npz: holds FLAME parameters" in capsys.readouterr().err and not out.exists()
    assert main(["adapt", "--clip", str(clip), "--flame", str(flame), "--out", str(out), "--steps1", "3",
                 "--steps2", "0", "--threads", "1", "--no-lip-loss"]) == 0
    assert read_profile_info(out)["topology"] == head.topology
