"""Fuzzing every restricted unpickler and file reader with hypothesis, in a memory-capped process.

    python tests/fuzz_targets.py [--reader NAME ...] [--examples N] [--cap-mib M] [--json OUT]

Each reader gets generated inputs of two kinds: mutations of a valid file of its format (bytes
flipped, set to boundary values, length fields replaced by huge numbers, chunks cut, duplicated or
inserted, the file truncated) and inputs built from the format's own grammar (pickle opcode
programs that call allowed and forbidden globals with huge arguments; zips of .npy members with
random headers; PLY headers with random counts and types; OBJ, CSV and safetensors headers with
random tokens). The property: the reader returns or raises ``ImitatorError``; nothing else may
escape, no "ran out of memory" (the process's address space is capped with ``RLIMIT_AS``, so a
bomb that got past the budgets fails here rather than taking the machine), and the canary global
(``hostile.canary``, named by the generated pickles, as is ``os.system``) is never called.
Used by tests/test_fuzz.py (few examples by default, 10,000 per reader when marked slow) and by
``python -m bench fuzz``.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import resource
import shutil
import struct
import sys
import tempfile
import time
import traceback
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

DEFAULT_CAP_MIB = 3072
INTERESTING_INTS = (0, 1, 2, 3, 7, 8, 255, 256, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 2**31, 10**9,
                    6 * 10**9, 2**62, 2**63 - 1, 2**64 - 1)


# ---------------------------------------------------------------- valid seed files, per reader

def _seeds(folder: Path) -> dict[str, bytes]:
    """One valid file of each format, as bytes."""
    import collections

    import numpy as np
    import torch

    import fake_flame
    from core.audio import save_wav
    from core.data.clips import Clip, save_clip_npz
    from core.data.livelink import write_arkit_csv
    from core.data.meshfiles import write_obj, write_ply
    from core.style.profile import StyleProfile

    rng = np.random.default_rng(0)
    out: dict[str, bytes] = {}
    arrays = fake_flame.fake_arrays()
    fake_flame.write_pickle(folder / "flame.pkl", fake_flame.pickle_2020(arrays))
    out["flame-pkl"] = (folder / "flame.pkl").read_bytes()
    np.savez(folder / "flame.npz", **arrays)
    out["flame-npz"] = (folder / "flame.npz").read_bytes()
    state = collections.OrderedDict([("nn_model.audio_feature_map.weight", torch.randn(4, 6)),
                                     ("nn_model.obj_vector.weight", torch.randn(4, 2)),
                                     ("nn_model.vertice_map_r.decoder.0.weight", torch.randn(4, 4))])
    torch.save({"epoch": 3, "state_dict": state, "hyper_parameters": {"lr": 1e-4, "name": "x"}},
               folder / "official.ckpt")
    out["official-ckpt"] = (folder / "official.ckpt").read_bytes()
    import pickle

    out["flame-masks-pkl"] = pickle.dumps({"lips": np.arange(3, 12), "face": np.arange(20)}, protocol=2)
    out["templates-pkl"] = pickle.dumps({"FaceTalk_1": rng.normal(size=(20, 3)).astype(np.float32),
                                         "FaceTalk_2": rng.normal(size=(20, 3))}, protocol=2)
    StyleProfile(rng.normal(size=8).astype(np.float32), rng.normal(size=(60, 8)).astype(np.float32),
                 rng.normal(size=60).astype(np.float32), {"name": "s", "topology": "t"}).save(
        folder / "s.imstyle")
    out["imstyle"] = (folder / "s.imstyle").read_bytes()
    save_clip_npz(folder / "clip.npz", Clip(rng.normal(size=(12, 20, 3)).astype(np.float32), 30.0,
                                            rng.normal(size=6400).astype(np.float32) * 0.1, 16000))
    out["npz-clip"] = (folder / "clip.npz").read_bytes()
    write_obj(folder / "f.obj", rng.normal(size=(20, 3)), "f 1 2 3\nf 2 3 4\n")
    out["obj"] = (folder / "f.obj").read_bytes()
    write_ply(folder / "f.ply", rng.normal(size=(20, 3)), np.full(3, 3), np.arange(9))
    out["ply"] = (folder / "f.ply").read_bytes()
    write_arkit_csv(folder / "take.csv", rng.uniform(size=(8, 52)), 60.0)
    out["livelink-csv"] = (folder / "take.csv").read_bytes()
    save_wav(folder / "a.wav", rng.normal(size=1600).astype(np.float32) * 0.1, 16000, "PCM_16")
    out["wav"] = (folder / "a.wav").read_bytes()
    return out


# ---------------------------------------------------------------- the readers

def _readers() -> dict[str, tuple[str, Callable[[Path], object]]]:
    from core.audio import load_audio
    from core.data.clips import load_clip
    from core.data.livelink import read_arkit_csv
    from core.data.meshfiles import read_obj_vertices, read_ply_vertices
    from core.data.vocaset import _read_templates
    from core.faces.flame import load_flame, load_flame_masks
    from core.model.convert import read_official_state
    from core.style.profile import load_style_profile


    return {
        "flame-pkl": (".pkl", load_flame),
        "flame-masks-pkl": (".pkl", load_flame_masks),
        "flame-npz": (".npz", load_flame),
        "official-ckpt": (".ckpt", read_official_state),
        "templates-pkl": (".pkl", _read_templates),
        "imstyle": (".imstyle", load_style_profile),
        "npz-clip": (".npz", load_clip),
        "obj": (".obj", read_obj_vertices),
        "ply": (".ply", read_ply_vertices),
        "livelink-csv": (".csv", read_arkit_csv),
        "wav": (".wav", lambda p: load_audio(p, allow_silent=True)),
    }


SEED_OF: dict[str, str] = {}  # readers that share another's seed file
PICKLE_READERS = ("flame-pkl", "flame-masks-pkl", "templates-pkl")


# ---------------------------------------------------------------- strategies

def _strategies(seeds: dict[str, bytes]):
    from hypothesis import strategies as st

    import hostile

    big_int = st.one_of(st.sampled_from(INTERESTING_INTS), st.integers(-2**70, 2**70))

    # -- mutations of a valid file
    mutation = st.tuples(
        st.sampled_from(["flip", "set", "int32", "int64", "cut", "dup", "insert", "truncate"]),
        st.floats(0, 1), st.integers(0, 255), st.sampled_from(INTERESTING_INTS),
        st.binary(max_size=16))

    def mutate(seed: bytes, edits) -> bytes:
        data = bytearray(seed)
        for op, where, byte, number, blob in edits:
            if not data:
                data = bytearray(blob)
                continue
            i = min(int(where * len(data)), len(data) - 1)
            if op == "flip":
                data[i] ^= 1 << (byte % 8)
            elif op == "set":
                data[i] = byte
            elif op in ("int32", "int64"):
                size = 4 if op == "int32" else 8
                data[i:i + size] = (number % 2 ** (8 * size)).to_bytes(size, "little")
            elif op == "cut":
                del data[i:i + 1 + byte]
            elif op == "dup":
                data[i:i] = data[i:i + 1 + byte * 4]
            elif op == "insert":
                data[i:i] = blob
            else:
                del data[i:]
        return bytes(data)

    def mutations(name: str):
        seed = seeds[SEED_OF.get(name, name)]
        return st.lists(mutation, min_size=1, max_size=6).map(lambda e: mutate(seed, e))

    # -- pickle opcode programs
    names = st.sampled_from([
        ("builtins", "bytearray"), ("builtins", "bytes"), ("builtins", "list"), ("builtins", "range"),
        ("builtins", "tuple"), ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "dict"),
        ("builtins", "str"), ("builtins", "int"), ("builtins", "object"), ("builtins", "eval"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy", "matrix"), ("numpy.core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("_codecs", "encode"), ("copyreg", "_reconstructor"),
        ("copyreg", "__newobj__"), ("scipy.sparse._csc", "csc_matrix"), ("scipy.sparse", "coo_matrix"),
        ("chumpy.ch", "Ch"), ("chumpy.ch_ops", "add"), ("chumpy.ch_ops", "dot"),
        ("chumpy.reordering", "Reshape"), ("chumpy.reordering", "Select"), ("chumpy.ch", "MatVecMult"),
        ("hostile", "canary"), ("os", "system"), ("subprocess", "Popen"), ("torch._utils",
                                                                           "_rebuild_tensor_v2"),
        ("torch", "FloatStorage"), ("collections", "OrderedDict"), ("pytorch_lightning", "Callback")])

    def text(s: str) -> bytes:
        raw = s.encode("utf-8", "surrogatepass")
        return b"X" + struct.pack("<I", len(raw)) + raw

    leaf = st.one_of(
        st.just(b"N"), st.just(b"\x88"), st.just(b"\x89"), big_int.map(hostile.long1),
        st.integers(0, 255).map(lambda n: b"K" + bytes([n])),
        st.floats(allow_nan=True).map(lambda f: b"G" + struct.pack(">d", f)),
        st.text(max_size=12).map(text), st.binary(max_size=24).map(lambda b: b"C" + bytes([len(b)]) + b),
        st.sampled_from(["O8", "<f8", "<f4", "|u1", "<i8", "|b1", "|V4"]).map(text),
        names.map(lambda mn: hostile.glob(*mn)),
        st.integers(0, 2**32 - 1).map(lambda n: b"j" + struct.pack("<I", n)))  # memo get

    def combine(children):
        return st.one_of(
            st.lists(children, max_size=5).map(lambda xs: b"(" + b"".join(xs) + b"t"),
            st.lists(children, max_size=5).map(lambda xs: b"(" + b"".join(xs) + b"l"),
            st.lists(st.tuples(children, children), max_size=4).map(
                lambda kv: b"}(" + b"".join(k + v for k, v in kv) + b"u"),
            st.tuples(names, st.lists(children, max_size=4)).map(
                lambda t: hostile.glob(*t[0]) + b"(" + b"".join(t[1]) + b"tR"),
            st.tuples(children, children).map(lambda t: t[0] + t[1] + b"b"),  # BUILD
            st.tuples(children, st.integers(0, 2**32 - 1)).map(
                lambda t: t[0] + b"r" + struct.pack("<I", t[1])),  # memo put
            st.tuples(children, st.sampled_from([b"\x85", b"\x86", b"\x87", b"2", b"0", b"Q",
                                                b"\x81", b"\x92", b"\x94", b"\x93"])).map(
                lambda t: t[0] + t[1]))

    program = st.recursive(leaf, combine, max_leaves=30)
    pickles = st.one_of(
        program.map(lambda body: b"\x80\x02" + hostile.in_dict(body) + b"."),
        program.map(lambda body: b"\x80\x04" + body + b"."),
        st.sampled_from(sorted(hostile.HOSTILE_PICKLES)).map(lambda n: hostile.HOSTILE_PICKLES[n]()))

    # -- zips of .npy members with random headers (npz readers) or a checkpoint's layout
    dims = st.lists(st.one_of(st.integers(0, 40), st.sampled_from(INTERESTING_INTS)), max_size=4)
    descr = st.sampled_from(["<f8", "<f4", "|O", "<i8", "|u1", ">f4", "|V16", "<U3", "bogus"])

    def npy(d: str, shape: list[int], fortran: bool, body: bytes) -> bytes:
        header = repr({"descr": d, "fortran_order": fortran, "shape": tuple(shape)}).encode()
        header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + body

    key = st.sampled_from(["vertices", "fps", "audio", "sample_rate", "v_template", "f", "shapedirs",
                           "posedirs", "J_regressor", "kintree_table", "weights", "expression",
                           "jaw_pose", "audio_path", "arkit", "x"])
    member = st.tuples(key, descr, dims, st.booleans(), st.binary(max_size=256))

    def npz(members, deflate: bool) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED) as z:
            for k, d, shape, fortran, body in members:
                z.writestr(f"{k}.npy", npy(d, shape, fortran, body))
        return buf.getvalue()

    npzs = st.one_of(st.builds(npz, st.lists(member, max_size=5), st.booleans()),
                     st.integers(0, 2**32 - 1).map(hostile.forged_npz))
    ckpts = st.one_of(pickles.map(hostile.torch_zip),
                      st.just(hostile.torch_zip(hostile.strided_tensor_pickle(), {"0": bytes(4)})))

    # -- text formats
    number = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                       st.sampled_from(["", "nan", "-inf", "1e309", "0x10", "1,5", "abc", "1e-400"]),
                       st.integers(-10**30, 10**30).map(str))
    obj_line = st.one_of(st.lists(number, max_size=6).map(lambda xs: "v " + " ".join(xs)),
                         st.text(max_size=30), st.just("f 1 2 3"), st.just("vt 0 0"))
    objs = st.lists(obj_line, max_size=40).map(lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass"))
    ply_type = st.sampled_from(["float", "double", "uchar", "int", "int8", "uint32", "list", "bogus"])
    ply_prop = st.tuples(ply_type, st.sampled_from(["x", "y", "z", "nx", "red"]))
    ply_elem = st.tuples(st.sampled_from(["vertex", "face", "edge"]),
                         st.one_of(st.integers(-5, 50), st.sampled_from(INTERESTING_INTS)),
                         st.lists(ply_prop, max_size=5))
    ply_fmt = st.sampled_from(["ascii", "binary_little_endian", "binary_big_endian", "bogus"])

    def ply(fmt: str, elems, body: bytes) -> bytes:
        lines = ["ply", f"format {fmt} 1.0"]
        for name, count, props in elems:
            lines.append(f"element {name} {count}")
            lines += [f"property list uchar int {n}" if t == "list" else f"property {t} {n}"
                      for t, n in props]
        return ("\n".join(lines + ["end_header"]) + "\n").encode() + body

    plys = st.builds(ply, ply_fmt, st.lists(ply_elem, max_size=3), st.binary(max_size=400))
    timecode = st.one_of(st.tuples(*[st.integers(0, 99)] * 4, st.integers(0, 999)).map(
        lambda t: "%02d:%02d:%02d:%02d.%03d" % t), st.integers(0, 10**6).map(str), st.text(max_size=12))

    from core.data.livelink import LIVE_LINK_NAMES, ROTATION_NAMES

    header = ",".join(["Timecode", "BlendShapeCount", *(n[0].upper() + n[1:] for n in LIVE_LINK_NAMES),
                       *ROTATION_NAMES])
    weight = st.one_of(st.floats(0, 1).map(lambda f: f"{f:.6f}"), number)
    row = st.one_of(
        st.tuples(timecode, st.lists(number, min_size=0, max_size=64)).map(
            lambda t: ",".join([t[0], "61", *t[1]])),
        st.tuples(timecode, st.lists(weight, min_size=61, max_size=61)).map(  # full rows
            lambda t: ",".join([t[0], "61", *t[1]])))
    csvs = st.tuples(st.one_of(st.just(header), st.text(max_size=60)), st.lists(row, max_size=12)).map(
        lambda t: "\n".join([t[0], *t[1]]).encode("utf-8", "surrogatepass"))

    tensor_entry = st.fixed_dictionaries({
        "dtype": st.sampled_from(["F32", "F64", "I64", "BOOL", "F16", "U8", "X"]),
        "shape": dims, "data_offsets": st.lists(st.one_of(st.integers(0, 600),
                                                          st.sampled_from(INTERESTING_INTS)),
                                                min_size=2, max_size=2)})

    def imstyle(entries: dict, meta_ok: bool, body: bytes) -> bytes:
        head = dict(entries)
        if meta_ok:
            head["__metadata__"] = {"format": "imitator-style", "version": "1", "profile": "{}"}
        raw = json.dumps(head).encode()
        return struct.pack("<Q", len(raw)) + raw + body

    styles = st.builds(imstyle, st.dictionaries(st.sampled_from(["style", "final.weight", "final.bias"]),
                                                tensor_entry, max_size=3),
                       st.booleans(), st.binary(max_size=700))

    grammar = {"flame-pkl": pickles, "flame-masks-pkl": pickles, "templates-pkl": pickles,
               "flame-npz": npzs, "npz-clip": npzs, "official-ckpt": ckpts, "obj": objs, "ply": plys,
               "livelink-csv": csvs, "imstyle": styles, "wav": st.binary(max_size=600).map(
                   lambda b: b"RIFF" + struct.pack("<I", len(b) + 4) + b"WAVE" + b)}
    return {name: st.one_of(mutations(name), grammar[name], st.binary(max_size=300))
            for name in grammar}


# ---------------------------------------------------------------- running

class Escaped(AssertionError):
    """A reader let something other than ImitatorError out, ran out of memory, or ran code."""


def check(reader: Callable[[Path], object], path: Path, data: bytes, marker: Path) -> str:
    """Feed one input; returns "ok" or "refused"; raises Escaped on a failure of the property."""
    import hostile
    from core.errors import ImitatorError

    path.write_bytes(data)
    calls = len(hostile.CANARY_CALLS)
    try:
        reader(path)
        outcome = "ok"
    except ImitatorError as exc:
        if "out of memory" in str(exc):
            raise Escaped(f"the memory cap was hit: {exc}") from None
        if "\n" in str(exc).strip():
            raise Escaped(f"a message of several lines: {exc!r}") from None
        outcome = "refused"
    except MemoryError:
        raise Escaped("MemoryError escaped (a bomb got past the budgets)") from None
    except Exception as exc:  # noqa: BLE001 - the property under test
        raise Escaped(f"{type(exc).__name__} escaped: {exc}\n{traceback.format_exc()}") from None
    if len(hostile.CANARY_CALLS) != calls or marker.exists():
        raise Escaped("the canary ran: a pickle executed code")
    return outcome


def fuzz(names: list[str], examples: int, cap_mib: int) -> list[dict]:
    """Run hypothesis on each reader (in this process, under the cap); one result row each."""
    from hypothesis import HealthCheck, given, settings

    resource.setrlimit(resource.RLIMIT_AS, (cap_mib << 20, resource.getrlimit(resource.RLIMIT_AS)[1]))
    work = Path(tempfile.mkdtemp(prefix="imitator-fuzz-"))
    seeds = _seeds(work)
    strategies = _strategies(seeds)
    readers = _readers()
    marker = work / "os-system-ran"
    rows = []
    for name in names:
        suffix, reader = readers[name]
        path = work / f"input{suffix}"
        counts = {"ok": 0, "refused": 0}
        failure = ""

        @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck), print_blob=False)
        @given(strategies[name])
        def run(data: bytes) -> None:
            counts[check(reader, path, data, marker)] += 1

        t0 = time.perf_counter()
        try:
            run()
        except Escaped as exc:
            failure = " ".join(str(exc).split())[:400]
        rows.append({"reader": name, "inputs": counts["ok"] + counts["refused"], "loaded": counts["ok"],
                     "refused": counts["refused"], "seconds": round(time.perf_counter() - t0, 1),
                     "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                     "cap_mib": cap_mib, "failure": failure})
        print(json.dumps(rows[-1]), flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reader", action="append", help="reader name (default: all)")
    p.add_argument("--examples", type=int, default=100, help="generated inputs per reader")
    p.add_argument("--cap-mib", type=int, default=DEFAULT_CAP_MIB, help="address-space cap (MiB)")
    p.add_argument("--json", type=Path, help="write the rows here")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    logging.disable(logging.WARNING)  # the readers' warnings about the inputs, thousands of them
    warnings.simplefilter("ignore")  # zipfile's duplicate-name warnings while building inputs
    import torch

    torch.set_num_threads(1)
    names = args.reader or list(_readers())
    rows = fuzz(names, args.examples, args.cap_mib)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 1 if any(r["failure"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
