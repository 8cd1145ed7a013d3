"""Hostile and broken inputs for the bad-input suite and the fuzzers: memory bombs, code-running
pickles, forged zips. Each builder returns bytes; nothing here is ever unpickled by plain pickle.

``canary`` is the global a malicious pickle would call: if any loader ever resolved and called it,
``CANARY_CALLS`` would not be empty (the suites assert it stays empty).
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile

import numpy as np

CANARY_CALLS: list[tuple] = []


def canary(*args):
    """What a hostile pickle runs; recording the call proves code ran."""
    CANARY_CALLS.append(args)
    return bytearray(8)


def glob(module: str, name: str) -> bytes:
    """GLOBAL opcode: push module.name."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def long1(n: int) -> bytes:
    """LONG1 opcode: push the integer n (any size)."""
    raw = n.to_bytes((n.bit_length() + 8) // 8 or 1, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def call(module: str, name: str, *args: bytes) -> bytes:
    """module.name(*args) as GLOBAL, MARK, args, TUPLE, REDUCE (args are opcode strings)."""
    return glob(module, name) + b"(" + b"".join(args) + b"tR"


def proto2(body: bytes) -> bytes:
    return b"\x80\x02" + body + b"."


def in_dict(value: bytes, key: str = "v_template") -> bytes:
    """{key: value}: what the FLAME loader reads first."""
    k = key.encode()
    return b"}" + b"X" + struct.pack("<I", len(k)) + k + value + b"s"


BOMB_BYTES = 6 * 10**9


def bytearray_bomb() -> bytes:
    """The issue's 62-byte pickle: bytearray(6e9) as a FLAME file's v_template."""
    return proto2(in_dict(call("builtins", "bytearray", long1(BOMB_BYTES))))


def bytes_bomb() -> bytes:
    return proto2(in_dict(call("builtins", "bytes", long1(10**13))))


def range_bomb() -> bytes:
    """list(range(10**10))."""
    return proto2(in_dict(glob("builtins", "list") + b"(" + call("builtins", "range", long1(10**10))
                          + b"tR"))


def memo_bomb() -> bytes:
    """LONG_BINPUT 300,000,000: the C unpickler would grow its memo table to 4.8 GB."""
    return proto2(b"N" + b"r" + struct.pack("<I", 300_000_000))


def shared_bomb(levels: int = 60) -> bytes:
    """A tuple of two references to the tuple before it, 60 deep, used as a dict key: hashing it
    visits 2**60 tuples."""
    body = b"N"
    for i in range(levels):
        body += b"r" + struct.pack("<I", i) + b"j" + struct.pack("<I", i) + b"\x86"
    return proto2(b"}" + body + b"Ns")


def deep_bomb(depth: int = 100_000) -> bytes:
    """100,000 nested 1-tuples as a dict key: hashing them overflows the C stack."""
    return proto2(b"}" + b"N" + b"\x85" * depth + b"Ns")


def object_array_bomb(n: int = 10**9) -> bytes:
    """numpy's own reconstruction with an object array of 1e9 elements in its state (8 GB)."""
    dtype = glob("numpy", "dtype") + b"(X\x02\x00\x00\x00O8K\x00K\x01tR" \
        b"(K\x03X\x01\x00\x00\x00|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK?tb"
    array = call("numpy.core.multiarray", "_reconstruct", glob("numpy", "ndarray"), b"K\x00\x85",
                 b"C\x01b")
    state = b"(K\x01" + long1(n) + b"\x85" + dtype + b"\x89]t" + b"b"
    return proto2(in_dict(array + state))


def reconstruct_bomb() -> bytes:
    """numpy _reconstruct asked for a (10**10,) float64 array up front."""
    return proto2(in_dict(call("numpy.core.multiarray", "_reconstruct", glob("numpy", "ndarray"),
                               long1(10**10) + b"\x85", b"C\x01d")))


def code_pickle(module: str = "hostile", name: str = "canary", arg: bytes = b"N") -> bytes:
    """A pickle that calls module.name(arg) when loaded by plain pickle."""
    return proto2(in_dict(call(module, name, arg)))


def os_system_pickle(marker: str) -> bytes:
    """os.system('touch MARKER'): a file appears if the pickle ever runs."""
    cmd = f"touch {marker}".encode()
    return proto2(in_dict(call("os", "system", b"X" + struct.pack("<I", len(cmd)) + cmd)))


HOSTILE_PICKLES = {
    "bytearray": bytearray_bomb, "bytes": bytes_bomb, "range": range_bomb, "memo": memo_bomb,
    "shared": shared_bomb, "deep": deep_bomb, "object-array": object_array_bomb,
    "reconstruct": reconstruct_bomb, "canary": code_pickle,
    "eval": lambda: code_pickle("builtins", "eval", b"X\x04\x00\x00\x001+1 "),
}


# ---------------------------------------------------------------- torch.save-style zips

def torch_zip(data_pkl: bytes, storages: dict[str, bytes] | None = None) -> bytes:
    """A checkpoint zip: archive/data.pkl + archive/data/<key> (stored, like torch.save)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/byteorder", "little")
        for key, raw in (storages or {}).items():
            z.writestr(f"archive/data/{key}", raw)
    return buf.getvalue()


def strided_tensor_pickle(size: int = 10**5) -> bytes:
    """state_dict = {'w': a (size, size) float tensor with strides (0, 0) on a 1-element storage}:
    40 GB once cloned."""
    storage = glob("torch", "FloatStorage")
    pid = b"(X\x07\x00\x00\x00storage" + storage + b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x01tQ"
    tensor = call("torch._utils", "_rebuild_tensor_v2", pid, b"K\x00", long1(size) + long1(size)
                  + b"\x86", b"K\x00K\x00\x86", b"\x89", glob("collections", "OrderedDict") + b")R")
    return proto2(b"}X\x0a\x00\x00\x00state_dict}X\x01\x00\x00\x00w" + tensor + b"ss")


def forged_npz(declared: int = 0xFFFF0000) -> bytes:
    """An .npz whose one member claims ``declared`` unpacked bytes in the zip directory
    (a deflate bomb as the reader sees it before decompressing)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        member = io.BytesIO()
        np.save(member, np.zeros(1000, np.float32))
        z.writestr("v_template.npy", member.getvalue())
    raw = bytearray(buf.getvalue())
    cd = raw.rindex(b"PK\x01\x02")
    raw[cd + 24:cd + 28] = struct.pack("<I", declared)  # uncompressed size in the central directory
    return bytes(raw)


def plain_pickle(obj) -> bytes:
    """A benign pickle of plain data (protocol 2, as FLAME files are)."""
    return pickle.dumps(obj, protocol=2)
