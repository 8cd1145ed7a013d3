"""Bad input, as a new user meets it: every case gives one line that names the file and says what
to do, and changes nothing on disk (the Blender operator cases are in tests/blender/bl_bad_input.py).

Each case builds its input in a fresh folder, snapshots that folder and the shared model folder
(names, sizes, modes, contents), runs one CLI command or loader, and checks the message and the
snapshot. Hostile inputs (memory bombs, code-running pickles) come from tests/hostile.py and run
under a 3 GiB address-space cap, so a bomb that got through fails here instead of the machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import resource
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).parent))

import hostile  # noqa: E402
from fake_flame import fake_arrays  # noqa: E402
from tiny_corpus import register_commands  # noqa: E402

from core.errors import ImitatorError  # noqa: E402
from core.model import Imitator, ImitatorConfig  # noqa: E402

SR = 16000
V = 50
CAP = 3 << 30  # address space for a case: torch + a tiny model fit, a 6 GB bomb does not


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = ImitatorConfig(encoder="logmel", encoder_options={"dim": 16, "n_mels": 20}, feature_dim=16,
                            ff_dim=32, num_vertices=V, styles=["ann", "bob"], window=80, overlap=20)
    model = Imitator(config).eval()
    with torch.no_grad():
        model.motion_decoder.final.weight.normal_(std=0.002)
    folder = tmp_path_factory.mktemp("model") / "tiny"
    model.save_pretrained(folder)
    return folder


def speech(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) * rng.normal(size=t.size)).astype(np.float32)


def wav(path: Path, samples: np.ndarray | None = None) -> Path:
    sf.write(path, speech() if samples is None else samples, SR, subtype="PCM_16")
    return path


def snapshot(*roots: Path) -> dict:
    """Every file and folder under ``roots``: kind, mode, size and a hash of the contents."""
    state = {}
    for root in roots:
        for path in sorted([root, *root.rglob("*")]):
            st = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
            state[str(path)] = (path.is_dir(), st.st_mode, st.st_size if path.is_file() else 0, digest)
    return state


@contextlib.contextmanager
def memory_cap(limit: int = CAP):
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (min(limit, hard) if hard > 0 else limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


PROGRESS = re.compile(r"^[\w ]+: .*\[\d\d:\d\d")  # a tqdm bar line (the CLI's progress), not a message
WATCHED: list[Path] = []  # folders the running case must leave as they were
BEFORE: list[dict] = []  # their snapshot, taken by cli/raises just before the command runs


def _watch() -> None:
    if WATCHED:
        BEFORE[:] = [snapshot(*WATCHED)]


def cli(*argv) -> str:
    """Run ``python -m core ...``; it must fail with exactly one line on stderr; returns it."""
    import core.cli

    register_commands()
    _watch()
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = core.cli.main([str(a) for a in argv])
    text = err.getvalue()
    assert rc == 1, f"exit {rc}, stderr {text!r}"
    lines = [ln for ln in text.splitlines() if ln.strip() and not PROGRESS.match(ln)]
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    return lines[0]


def raises(fn: Callable, *args, **kwargs) -> str:
    _watch()
    with pytest.raises(ImitatorError) as info:
        fn(*args, **kwargs)
    return str(info.value)


@dataclass
class Case:
    id: str
    run: Callable[[Path, Path], str]  # (case folder, model folder) -> the one-line message
    words: tuple[str, ...]  # what the message must say: the file's name and what is wrong
    fix: str  # ... and a fragment of the fix it gives


CASES: list[Case] = []


def case(id: str, *words: str, fix: str):
    def register(fn):
        CASES.append(Case(id, fn, words, fix))
        return fn
    return register


# ---------------------------------------------------------------- FLAME files (pkl and npz)

def flame(tmp: Path, name: str, data: bytes) -> str:
    from core.faces.flame import load_flame

    (tmp / name).write_bytes(data)
    return raises(load_flame, tmp / name)


for _name, _build in hostile.HOSTILE_PICKLES.items():
    _fix = "use the official file"
    _words = ("refused to load",) if _name not in ("canary", "eval") else ("refused to load", "not model data")
    case(f"flame-pkl-{_name}", f"{_name}.pkl", *_words, fix=_fix)(
        lambda tmp, model, n=_name, b=_build: flame(tmp, f"{n}.pkl", b()))


@case("flame-pkl-os-system", "os.system", "refused", fix="use the official file")
def _(tmp, model):
    marker = tmp.parent / f"{tmp.name}-ran"
    msg = flame(tmp, "generic_model.pkl", hostile.os_system_pickle(str(marker)))
    assert not marker.exists()
    return msg


@case("flame-pkl-truncated", "generic_model.pkl", "truncated", fix="re-download")
def _(tmp, model):
    return flame(tmp, "generic_model.pkl", hostile.plain_pickle(fake_arrays())[:500])


@case("flame-pkl-empty", "generic_model.pkl", "empty", fix="re-download")
def _(tmp, model):
    return flame(tmp, "generic_model.pkl", b"")


@case("flame-pkl-text", "generic_model.pkl", "not a pickle file", fix="choose the right file")
def _(tmp, model):
    return flame(tmp, "generic_model.pkl", b"just some notes about FLAME\n")


@case("flame-pkl-list", "generic_model.pkl", "not a FLAME model dictionary", fix="flame.is.tue.mpg.de")
def _(tmp, model):
    return flame(tmp, "generic_model.pkl", hostile.plain_pickle([1, 2, 3]))


@case("flame-pkl-missing-key", "generic_model.pkl", "'v_template' is missing", fix="--flame")
def _(tmp, model):
    arrays = fake_arrays()
    del arrays["v_template"]
    return flame(tmp, "generic_model.pkl", hostile.plain_pickle(arrays))


@case("flame-pkl-nan", "generic_model.pkl", "NaN", fix="re-download")
def _(tmp, model):
    arrays = fake_arrays()
    arrays["shapedirs"][3, 1, 7] = np.nan
    return flame(tmp, "generic_model.pkl", hostile.plain_pickle(arrays))


@case("flame-npz-random-bytes", "flame.npz", "not an .npz archive", fix="numpy.savez")
def _(tmp, model):
    return flame(tmp, "flame.npz", np.random.default_rng(0).bytes(4096))


@case("flame-npz-objects", "flame.npz", "Python objects", fix="plain numpy arrays")
def _(tmp, model):
    np.savez(tmp / "flame.npz", v_template=np.array([{"a": 1}], dtype=object))
    return raises(__import__("core.faces.flame", fromlist=["load_flame"]).load_flame, tmp / "flame.npz")


@case("flame-npz-deflate-bomb", "flame.npz", "refused to load", fix="re-export it")
def _(tmp, model):
    return flame(tmp, "flame.npz", hostile.forged_npz())


@case("flame-missing", "nothing.pkl", "not found", fix="flame.is.tue.mpg.de")
def _(tmp, model):
    from core.faces.flame import load_flame

    return raises(load_flame, tmp / "nothing.pkl")


@case("flame-masks-bomb", "FLAME_masks.pkl", "refused to load", fix="use the official file")
def _(tmp, model):
    from core.faces.flame import load_flame_masks

    (tmp / "FLAME_masks.pkl").write_bytes(hostile.bytearray_bomb())
    return raises(load_flame_masks, tmp / "FLAME_masks.pkl")


@case("templates-pkl-bomb", "templates.pkl", "refused to load", fix="use the official file")
def _(tmp, model):
    from core.data.vocaset import _read_templates

    (tmp / "templates.pkl").write_bytes(hostile.range_bomb())
    return raises(_read_templates, tmp / "templates.pkl")


@case("adapt-flame-bomb-cli", "bomb.pkl", "refused to load", fix="use the official file")
def _(tmp, model):
    (tmp / "bomb.pkl").write_bytes(hostile.bytearray_bomb())
    np.savez(tmp / "take.npz", expression=np.zeros((30, 100)), jaw_pose=np.zeros((30, 3)), fps=30.0)
    return cli("adapt", "--model", model, "--clip", tmp / "take.npz", "--flame", tmp / "bomb.pkl",
               "--out", tmp / "s.imstyle")


# ---------------------------------------------------------------- official checkpoints

@case("convert-bytearray-bomb", "imitator.ckpt", "refused to load", fix="use the official file")
def _(tmp, model):
    (tmp / "imitator.ckpt").write_bytes(hostile.torch_zip(hostile.bytearray_bomb()))
    return cli("convert-official", tmp / "imitator.ckpt", "--out", tmp / "converted")


@case("convert-strided-tensor", "imitator.ckpt", "a tensor would take", fix="download the checkpoint again")
def _(tmp, model):
    (tmp / "imitator.ckpt").write_bytes(hostile.torch_zip(hostile.strided_tensor_pickle(), {"0": bytes(4)}))
    return cli("convert-official", tmp / "imitator.ckpt", "--out", tmp / "converted")


@case("convert-code", "imitator.ckpt", "os.system", fix="use the official file")
def _(tmp, model):
    (tmp / "imitator.ckpt").write_bytes(hostile.torch_zip(hostile.os_system_pickle(str(tmp / "ran"))))
    return cli("convert-official", tmp / "imitator.ckpt", "--out", tmp / "converted")


@case("convert-not-a-zip", "imitator.ckpt", "not a PyTorch checkpoint", fix="zip format")
def _(tmp, model):
    (tmp / "imitator.ckpt").write_bytes(np.random.default_rng(1).bytes(2048))
    return cli("convert-official", tmp / "imitator.ckpt", "--out", tmp / "converted")


@case("convert-non-utf8-names", "imitator.ckpt", "not a PyTorch checkpoint", fix="zip format")
def _(tmp, model):  # found by the fuzzer: zipfile raised UnicodeDecodeError
    data = bytearray(hostile.torch_zip(hostile.plain_pickle({})))
    for start in (data.index(b"PK\x03\x04"), data.index(b"PK\x01\x02")):  # flag: UTF-8 names
        flag = 6 if data[start:start + 4] == b"PK\x03\x04" else 8
        data[start + flag + 1] |= 0x08  # general-purpose bit 11
        name = start + (30 if flag == 6 else 46)
        data[name] = 0xFF
    (tmp / "imitator.ckpt").write_bytes(bytes(data))
    return cli("convert-official", tmp / "imitator.ckpt", "--out", tmp / "converted")


@case("flame-masks-ragged", "FLAME_masks.pkl", "not a list of vertex indices", fix="FLAME_masks.pkl")
def _(tmp, model):  # found by the fuzzer: np.asarray of a ragged list raised ValueError
    from core.faces.flame import load_flame_masks

    (tmp / "FLAME_masks.pkl").write_bytes(hostile.plain_pickle({"lips": [[1, 2], [3]]}))
    return raises(load_flame_masks, tmp / "FLAME_masks.pkl")


@case("templates-ragged", "templates.pkl", "expected (V, 3)", fix="regenerate the dataset")
def _(tmp, model):  # found by the fuzzer
    from core.data.vocaset import _read_templates

    (tmp / "templates.pkl").write_bytes(hostile.plain_pickle({"FaceTalk": [[1, 2, 3], [4]]}))
    return raises(_read_templates, tmp / "templates.pkl")


@case("convert-out-not-empty", "converted", "not empty", fix="--overwrite")
def _(tmp, model):
    (tmp / "imitator.ckpt").write_bytes(hostile.torch_zip(hostile.plain_pickle({})))
    (tmp / "converted").mkdir()
    (tmp / "converted" / "config.json").write_text("{}")
    return cli("convert-official", tmp / "imitator.ckpt", "--out", tmp / "converted")


@case("convert-out-is-file", "converted", "is a file, not a folder", fix="new folder name")
def _(tmp, model):
    (tmp / "imitator.ckpt").write_bytes(hostile.torch_zip(hostile.plain_pickle({})))
    (tmp / "converted").write_text("x")
    return cli("convert-official", tmp / "imitator.ckpt", "--out", tmp / "converted")


# ---------------------------------------------------------------- model folders

def broken_model(tmp: Path, model: Path, how: str) -> Path:
    import shutil

    folder = tmp / "model"
    shutil.copytree(model, folder)
    if how == "nan":
        from safetensors.torch import load_file, save_file
        from safetensors import safe_open

        with safe_open(str(folder / "model.safetensors"), "pt") as f:
            meta = f.metadata()
        state = load_file(folder / "model.safetensors")
        state["motion_decoder.final.weight"][0, 0] = float("nan")
        save_file(state, folder / "model.safetensors", metadata=meta)
    elif how == "corrupt":
        (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    elif how == "no-config":
        (folder / "config.json").unlink()
    elif how in ("huge-config", "huge-table"):
        cfg = json.loads((folder / "config.json").read_text())
        if how == "huge-config":  # 10**9 vertices: a 12 GB last layer, were it built before the check
            cfg["num_vertices"] = 10**9
        else:  # an 88 MB STFT window and mel table (buffers not in the weights file), and STFTs
            cfg["encoder_options"] = {**cfg["encoder_options"], "n_fft": 2 * 10**6}  # of 25 GB
        (folder / "config.json").write_text(json.dumps(cfg))
    elif how == "other-save":
        cfg = json.loads((folder / "config.json").read_text())
        cfg["_checkpoint"]["save_id"] = "0" * 32
        (folder / "config.json").write_text(json.dumps(cfg))
    return folder


for _how, _words, _fix in (("nan", ("model.safetensors", "NaN or Inf"), "train it again"),
                           ("corrupt", ("model.safetensors", "corrupt"), "re-download the model"),
                           ("no-config", ("config.json", "missing"), "re-download the model"),
                           ("other-save", ("different saves",), "re-download the model"),
                           ("huge-config", ("model.safetensors", "1000000000"), "re-download the model"),
                           ("huge-table", ("config.json", "n_fft = 2000000"), "give 1..4096")):
    case(f"model-{_how}", *_words, fix=_fix)(
        lambda tmp, model, how=_how: cli("generate", "--audio", wav(tmp / "a.wav"), "--model",
                                         broken_model(tmp, model, how), "--out", tmp / "anim.npz"))


# ---------------------------------------------------------------- generate: outputs and options

def generate(tmp: Path, model: Path, *extra) -> str:
    audio = tmp / "a.wav" if (tmp / "a.wav").exists() else wav(tmp / "a.wav")
    args = list(extra)
    if "--out" not in args:
        args += ["--out", tmp / "anim.npz"]
    return cli("generate", "--audio", audio, "--model", model, *args)


@case("generate-out-exists", "anim.npz", "already exists", fix="--overwrite")
def _(tmp, model):
    (tmp / "anim.npz").write_bytes(b"my earlier work")
    return generate(tmp, model)


@case("generate-out-folder", "--out", "is a folder", fix="give a file name")
def _(tmp, model):
    (tmp / "anim.npz").mkdir()
    return generate(tmp, model)


@case("generate-arkit-csv-folder", "--arkit-csv", "is a folder", fix="give a file name")
def _(tmp, model):
    (tmp / "take.csv").mkdir()
    return generate(tmp, model, "--arkit-csv", tmp / "take.csv")


@case("generate-obj-dir-exists", "frames", "already exists", fix="--overwrite")
def _(tmp, model):
    (tmp / "frames").mkdir()
    return generate(tmp, model, "--obj-dir", tmp / "frames")


@case("generate-obj-dir-foreign", "frames", "holds other files", fix="empty or new folder")
def _(tmp, model):
    (tmp / "frames").mkdir()
    (tmp / "frames" / "notes.txt").write_text("mine")
    return generate(tmp, model, "--obj-dir", tmp / "frames", "--overwrite")


@case("generate-obj-dir-file", "frames", "is a file, not a folder", fix="new folder name")
def _(tmp, model):
    (tmp / "frames").write_text("x")
    return generate(tmp, model, "--obj-dir", tmp / "frames")


@case("generate-out-suffix", "anim.txt", "must end in .npz", fix="anim.npz")
def _(tmp, model):
    return generate(tmp, model, "--out", tmp / "anim.txt")


@case("generate-out-is-input", "a.wav", "input", fix="write the output elsewhere")
def _(tmp, model):
    wav(tmp / "a.wav")
    os.link(tmp / "a.wav", tmp / "a.npz")  # the same file under an .npz name
    return generate(tmp, model, "--out", tmp / "a.npz", "--overwrite")


@case("generate-out-parent-file", "notes", "is a file, not a folder", fix="another place")
def _(tmp, model):
    (tmp / "notes").write_text("x")
    return generate(tmp, model, "--out", tmp / "notes" / "anim.npz")


@case("generate-same-output-twice", "same path", "--obj-dir", fix="its own name")
def _(tmp, model):
    return generate(tmp, model, "--out", tmp / "x.npz", "--obj-dir", tmp / "x.npz")


for _value, _word in (("inf", "finite"), ("nan", "finite"), ("1e6", "between 1 and 240"),
                      ("0", "between 1 and 240"), ("-30", "between 1 and 240")):
    case(f"generate-fps-{_value}", f"--fps {_value if _value not in ('1e6',) else '1e+06'}", _word,
         fix="e.g. 24" if _word != "finite" else "finite number")(
        lambda tmp, model, v=_value: generate(tmp, model, "--fps", v))


@case("generate-threads-negative", "--threads -1", "1 or more threads", fix="cores")
def _(tmp, model):
    return generate(tmp, model, "--threads", "-1")


@case("generate-threads-zero", "--threads 0", "1 or more threads", fix="cores")
def _(tmp, model):
    return generate(tmp, model, "--threads", "0")


# ---------------------------------------------------------------- audio

def bad_audio(tmp: Path, model: Path, name: str, data: bytes | None) -> str:
    if data is not None:
        (tmp / name).write_bytes(data)
    return cli("generate", "--audio", tmp / name, "--model", model, "--out", tmp / "anim.npz")


def header_only_wav() -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(0, np.float32), SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


for _id, _name, _data, _words, _fix in (
        ("missing", "missing.wav", None, ("missing.wav", "not found"), "check the path"),
        ("empty", "empty.wav", b"", ("empty.wav", "empty (0 bytes)"), "recording with speech"),
        ("text-as-mp3", "speech.mp3", b"these are my notes, not a recording\n" * 4,
         ("speech.mp3", "text file"), "convert it to WAV"),
        ("random-bytes", "speech.wav", np.random.default_rng(2).bytes(3000),
         ("speech.wav", "not a readable audio file"), "convert it to WAV"),
        ("header-only", "speech.wav", header_only_wav(), ("speech.wav", "holds no samples"),
         "recording with speech"),
        ("riff-junk", "bad.wav", b"RIFF0000WAVEjunk" * 10, ("bad.wav", "not a readable audio file"),
         "convert it to WAV")):
    case(f"audio-{_id}", *_words, fix=_fix)(
        lambda tmp, model, n=_name, d=_data: bad_audio(tmp, model, n, d))


@case("audio-folder", "speech.wav", "is a folder", fix="choose the file itself")
def _(tmp, model):
    (tmp / "speech.wav").mkdir()
    return bad_audio(tmp, model, "speech.wav", None)


@case("audio-nan", "nan.wav", "NaN or Inf", fix="re-export the audio")
def _(tmp, model):
    x = speech()
    x[100] = np.nan
    sf.write(tmp / "nan.wav", x, SR, subtype="FLOAT")
    return bad_audio(tmp, model, "nan.wav", None)


# ---------------------------------------------------------------- style profiles

@case("style-missing", "gone.imstyle", "not found", fix="check the path")
def _(tmp, model):
    return generate(tmp, model, "--style", tmp / "gone.imstyle")


@case("style-text", "notes.imstyle", "not a style profile", fix="made by Adapt Style")
def _(tmp, model):
    (tmp / "notes.imstyle").write_text("not a profile at all, just text")
    return generate(tmp, model, "--style", tmp / "notes.imstyle")


@case("style-truncated", "s.imstyle", "truncated", fix="adapt again")
def _(tmp, model):
    from core.style.profile import StyleProfile

    StyleProfile(np.zeros(16, np.float32), meta={"name": "s"}).save(tmp / "s.imstyle")
    data = (tmp / "s.imstyle").read_bytes()
    (tmp / "s.imstyle").write_bytes(data[:-20])
    return generate(tmp, model, "--style", tmp / "s.imstyle")


@case("style-other-model", "s.imstyle", "not with this model", fix="adapt the style again")
def _(tmp, model):
    from core.style.profile import StyleProfile

    StyleProfile(np.zeros(16, np.float32), meta={"name": "s", "base_model": "0" * 64,
                                                 "num_vertices": V}).save(tmp / "s.imstyle")
    return generate(tmp, model, "--style", tmp / "s.imstyle")


@case("style-unknown-name", "unknown style 'zed'", fix="ann")
def _(tmp, model):
    return generate(tmp, model, "--style", "zed")


# ---------------------------------------------------------------- clips (adapt)

def adapt(tmp: Path, model: Path, clip: Path, *extra) -> str:
    return cli("adapt", "--model", model, "--clip", clip, "--out", tmp / "style.imstyle", *extra)


def clip_npz(tmp: Path, name: str = "take.npz", frames: int = 60, nverts: int = V, **changes) -> Path:
    rng = np.random.default_rng(3)
    data = {"vertices": rng.normal(scale=0.05, size=(frames, nverts, 3)).astype(np.float32),
            "fps": 30.0, "audio": speech(frames / 30), "sample_rate": SR}
    data.update(changes)
    np.savez(tmp / name, **{k: v for k, v in data.items() if v is not None})
    return tmp / name


@case("clip-random-bytes", "take.npz", "not an .npz archive", fix="re-export the clip")
def _(tmp, model):
    (tmp / "take.npz").write_bytes(np.random.default_rng(4).bytes(5000))
    return adapt(tmp, model, tmp / "take.npz")


@case("clip-nan", "take.npz", "NaN or Inf", fix="clean or re-export the clip")
def _(tmp, model):
    v = np.random.default_rng(3).normal(scale=0.05, size=(60, V, 3)).astype(np.float32)
    v[7, 3, 1] = np.inf
    return adapt(tmp, model, clip_npz(tmp, vertices=v))


@case("clip-topology", "take.npz", "another head topology", fix="--clip-head MESH.obj")
def _(tmp, model):
    return adapt(tmp, model, clip_npz(tmp, nverts=51))


@case("clip-no-fps", "take.npz", "no 'fps'", fix="--fps")
def _(tmp, model):
    return adapt(tmp, model, clip_npz(tmp, fps=None))


@case("clip-objects", "take.npz", "Python objects", fix="plain numpy arrays")
def _(tmp, model):
    np.savez(tmp / "take.npz", vertices=np.array([None, 1], dtype=object), fps=30.0)
    return adapt(tmp, model, tmp / "take.npz")


@case("clip-npz-bomb", "take.npz", "refused to load", fix="re-export the clip")
def _(tmp, model):
    (tmp / "take.npz").write_bytes(hostile.forged_npz())
    return adapt(tmp, model, tmp / "take.npz")


@case("clip-empty-folder", "frames", "no .obj or .ply frames", fix="holds the mesh sequence")
def _(tmp, model):
    (tmp / "frames").mkdir()
    return adapt(tmp, model, tmp / "frames")


def adapt_frames(tmp: Path, model: Path, files: dict[str, str | bytes]) -> str:
    """``adapt`` on a folder of mesh frames (file name -> text or bytes) at 30 fps."""
    (tmp / "frames").mkdir()
    for name, data in files.items():
        (tmp / "frames" / name).write_bytes(data.encode() if isinstance(data, str) else data)
    return adapt(tmp, model, tmp / "frames", "--fps", "30")


PLY_HEAD = b"ply\nformat binary_little_endian 1.0\n"


@case("clip-obj-mismatch", "frame_1.obj", "every frame must share one topology", fix="share one topology")
def _(tmp, model):
    return adapt_frames(tmp, model, {"frame_0.obj": "v 0 0 0\n" * V, "frame_1.obj": "v 0 0 0\n" * (V - 1)})


@case("clip-obj-not-numeric", "frame_0.obj", "not numeric", fix="re-export the frame")
def _(tmp, model):
    return adapt_frames(tmp, model, {"frame_0.obj": "v 0 0 zero\n" * V})


@case("clip-ply-truncated", "frame_0.ply", "truncated", fix="re-export it")
def _(tmp, model):
    from core.data.meshfiles import write_ply

    write_ply(tmp / "whole.ply", np.zeros((V, 3)))
    data = (tmp / "whole.ply").read_bytes()
    return adapt_frames(tmp, model, {"frame_0.ply": data[:len(data) // 2]})


@case("clip-ply-huge-count", "frame_0.ply", "truncated", fix="re-export it")
def _(tmp, model):
    return adapt_frames(tmp, model, {"frame_0.ply": PLY_HEAD + b"element vertex 4000000000\nproperty float x\n"
                                     b"property float y\nproperty float z\nend_header\n" + bytes(120)})


@case("clip-ply-repeated-property", "frame_0.ply", "repeats a property", fix="re-export it")
def _(tmp, model):  # found by the fuzzer: numpy's dtype raised ValueError
    return adapt_frames(tmp, model, {"frame_0.ply": PLY_HEAD + b"element vertex 2\nproperty float x\n"
                                     b"property float x\nproperty float y\nproperty float z\nend_header\n"
                                     + bytes(32)})


@case("clip-flame-params-bomb", "take.npz", "GB as vertices", fix="trim the clip")
def _(tmp, model):  # 0.3 MB of deflated zeros: 200,000 frames of FLAME parameters, 12 GB evaluated
    import zipfile

    from core.faces.flame import FlameModel

    flame = FlameModel(tmp / "flame.pkl", np.zeros((5023, 3)), np.zeros((1, 3), np.int32),
                       np.zeros((5023, 3, 300)), np.zeros((5023, 3, 100)), np.zeros((5023, 3, 36)),
                       np.zeros((5, 5023)), np.array([-1, 0, 1, 1, 1]), np.zeros((5023, 5)))
    with zipfile.ZipFile(tmp / "take.npz", "w", zipfile.ZIP_DEFLATED) as z:
        for key, width in (("expression", 100), ("jaw_pose", 3)):
            buf = io.BytesIO()
            np.save(buf, np.zeros((200_000, width), np.float32))
            z.writestr(f"{key}.npy", buf.getvalue())
        buf = io.BytesIO()
        np.save(buf, np.float64(30.0))
        z.writestr("fps.npy", buf.getvalue())
    from core.data.clips import load_clip

    return raises(load_clip, tmp / "take.npz", flame=flame)


@case("clip-unknown-format", "take.mov", "unknown clip format", fix="use .npz")
def _(tmp, model):
    (tmp / "take.mov").write_bytes(b"\x00" * 100)
    return adapt(tmp, model, tmp / "take.mov")


@case("adapt-out-suffix", "style.txt", "must end in .imstyle", fix="style.imstyle")
def _(tmp, model):
    return cli("adapt", "--model", model, "--clip", clip_npz(tmp), "--out", tmp / "style.txt")


@case("adapt-out-exists", "style.imstyle", "already exists", fix="--overwrite")
def _(tmp, model):
    (tmp / "style.imstyle").write_bytes(b"an earlier profile")
    return adapt(tmp, model, clip_npz(tmp))


@case("adapt-lr-nan", "--lr1 nan", "finite", fix="finite number")
def _(tmp, model):
    return adapt(tmp, model, clip_npz(tmp), "--lr1", "nan")


@case("adapt-fps-huge", "--fps 1e+06", "between 1 and 240", fix="e.g. 24")
def _(tmp, model):
    return adapt(tmp, model, clip_npz(tmp), "--fps", "1e6")


# ---------------------------------------------------------------- Live Link Face CSV

def livelink(tmp: Path, rows: list[str], header: str | None = None) -> str:
    from core.data.livelink import LIVE_LINK_NAMES, ROTATION_NAMES, read_arkit_csv

    names = [n[0].upper() + n[1:] for n in LIVE_LINK_NAMES]
    head = header or ",".join(["Timecode", "BlendShapeCount", *names, *ROTATION_NAMES])
    (tmp / "take.csv").write_text("\n".join([head, *rows]) + "\n")
    return raises(read_arkit_csv, tmp / "take.csv")


def ll_row(tc: str, value: str = "0.1") -> str:
    return ",".join([tc, "61", *([value] * 61)])


@case("livelink-bad-timecode", "take.csv", "row 4", "unreadable timecode", fix="export the take again")
def _(tmp, model):
    rows = [ll_row(f"10:00:00:{i:02d}.000") for i in range(6)]
    rows[2] = ll_row("10:00:0x:02.000")
    return livelink(tmp, rows)


@case("livelink-hours-apart", "take.csv", "jumps", "row 3", fix="export the take again")
def _(tmp, model):  # 99 hours between two rows: 21 million interpolated frames (8.9 GB) before
    return livelink(tmp, [ll_row("00:00:00:00.000"), ll_row("99:00:00:00.000")])


@case("livelink-not-number", "take.csv", "not a number", fix="export the take again")
def _(tmp, model):
    return livelink(tmp, [ll_row("10:00:00:00.000"), ll_row("10:00:00:01.000", "abc")])


@case("livelink-no-columns", "take.csv", "no ARKit blendshape columns", fix="Live Link Face CSV")
def _(tmp, model):
    return livelink(tmp, ["1,2,3"], header="a,b,c")


@case("livelink-short-row", "take.csv", "row 3", "columns", fix="export the take again")
def _(tmp, model):
    return livelink(tmp, [ll_row("10:00:00:00.000"), "10:00:00:01.000,61,0.1"])


@case("livelink-nan", "take.csv", "NaN or Inf", fix="re-export the take")
def _(tmp, model):
    return livelink(tmp, [ll_row("10:00:00:00.000"), ll_row("10:00:00:01.000", "nan")])


# ---------------------------------------------------------------- animation files

@case("animation-random-npz", "anim.npz", "not an .npz archive", fix="export the animation again")
def _(tmp, model):
    from core.animation import Animation

    (tmp / "anim.npz").write_bytes(b"\x93NUMPY" + bytes(200))
    return raises(Animation.load, tmp / "anim.npz")


@case("animation-missing-key", "anim.npz", "not a readable animation", fix="export the animation again")
def _(tmp, model):
    from core.animation import Animation

    np.savez(tmp / "anim.npz", weights=np.zeros((3, 2)))
    return raises(Animation.load, tmp / "anim.npz")


# ---------------------------------------------------------------- the suite

@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_line_naming_the_file_and_the_fix(c: Case, model_dir, tmp_path):
    tmp = tmp_path / "case"
    tmp.mkdir()
    calls = len(hostile.CANARY_CALLS)
    WATCHED[:] = [tmp, model_dir]
    BEFORE.clear()
    try:
        with memory_cap():
            message = c.run(tmp, model_dir)
    finally:
        WATCHED.clear()
    assert BEFORE, "the case ran no command"
    assert snapshot(tmp, model_dir) == BEFORE[0], "the refused command changed files"
    assert "\n" not in message.strip(), message
    for word in c.words:
        assert word in message, f"{word!r} not in: {message}"
    assert c.fix in message, f"fix {c.fix!r} not in: {message}"
    assert "Traceback" not in message and "out of memory" not in message, message
    assert len(hostile.CANARY_CALLS) == calls


def test_the_suite_has_at_least_sixty_cases():
    assert len(CASES) >= 60, len(CASES)


# ---------------------------------------------------------------- warnings, not errors

def test_silent_audio_is_warned_once_and_still_animated(model_dir, tmp_path, caplog):
    import core.cli

    register_commands()
    wav(tmp_path / "silence.wav", np.zeros(SR, np.float32))
    with caplog.at_level(logging.WARNING):
        rc = core.cli.main(["generate", "--audio", str(tmp_path / "silence.wav"), "--model",
                            str(model_dir), "--out", str(tmp_path / "anim.npz")])
    assert rc == 0
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 1 and "silence.wav" in warned[0] and "silent" in warned[0], warned
    assert "\n" not in warned[0]
    from core.animation import Animation

    anim = Animation.load(tmp_path / "anim.npz")
    assert anim.num_frames == 30 and np.isfinite(anim.vertices()).all()  # the model on silence


def test_truncated_wav_is_warned_and_used(model_dir, tmp_path, caplog):
    import core.cli

    register_commands()
    wav(tmp_path / "full.wav", speech(2.0))
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[:len(data) // 2])
    with caplog.at_level(logging.WARNING):
        rc = core.cli.main(["generate", "--audio", str(tmp_path / "cut.wav"), "--model", str(model_dir),
                            "--out", str(tmp_path / "anim.npz")])
    assert rc == 0
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 1 and "cut.wav" in warned[0] and "truncated" in warned[0], warned
    from core.animation import Animation

    assert Animation.load(tmp_path / "anim.npz").num_frames in (29, 30)  # the 1 s that is there


def test_exports_follow_the_umask(model_dir, tmp_path):
    import core.cli

    register_commands()
    old = os.umask(0o022)
    try:
        assert core.cli.main(["generate", "--audio", str(wav(tmp_path / "a.wav")), "--model",
                              str(model_dir), "--out", str(tmp_path / "anim.npz"), "--obj-dir",
                              str(tmp_path / "frames")]) == 0
    finally:
        os.umask(old)
    assert (tmp_path / "anim.npz").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "frames").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "frames" / "frame_00000.obj").stat().st_mode & 0o777 == 0o644
    # an existing file keeps its mode when replaced
    os.chmod(tmp_path / "anim.npz", 0o640)
    assert core.cli.main(["generate", "--audio", str(tmp_path / "a.wav"), "--model", str(model_dir),
                          "--out", str(tmp_path / "anim.npz"), "--overwrite"]) == 0
    assert (tmp_path / "anim.npz").stat().st_mode & 0o777 == 0o640


def test_overwrite_replaces_the_npz(model_dir, tmp_path):
    import core.cli

    register_commands()
    (tmp_path / "anim.npz").write_bytes(b"old")
    assert core.cli.main(["generate", "--audio", str(wav(tmp_path / "a.wav")), "--model",
                          str(model_dir), "--out", str(tmp_path / "anim.npz"), "--overwrite"]) == 0
    assert (tmp_path / "anim.npz").read_bytes()[:2] == b"PK"


def test_budget_keeps_real_files_loading(tmp_path):
    """The bounds refuse bombs, not data: a FLAME-sized pickle with shared arrays still loads."""
    from core.safe_pickle import loads

    big = np.random.default_rng(0).normal(size=(5023, 3, 400))  # 48 MB, FLAME 2023's shapedirs
    data = hostile.plain_pickle({"shapedirs": big, "again": big, "f": np.arange(30000).reshape(-1, 3)})
    out = loads(data, name="flame.pkl")
    assert np.array_equal(out["shapedirs"], big) and out["again"] is out["shapedirs"]
    assert type(out["shapedirs"]) is np.ndarray
    with pytest.raises(ImitatorError, match="refused to load"):
        loads(data, name="flame.pkl", max_bytes=10 << 20)
