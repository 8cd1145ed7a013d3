"""Official Imitator checkpoint (PyTorch Lightning ``.ckpt``) -> our model folder, no pickled code run.

``python -m core convert-official CKPT --out DIR``

How the file is read: a ``torch.save`` file is a zip holding ``<root>/data.pkl`` (the pickle) and
``<root>/data/<key>`` (raw tensor bytes). The pickle goes through ``core.safe_pickle.safe_load``
(restricted unpickler), with
* ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter`` and ``torch.<Type>Storage`` mapped to
  small functions here that build tensors from the raw bytes with numpy (bounds checked), and a
  ``persistent_load`` that reads ``data/<key>``: torch's own unpickler is never used;
* Lightning/OmegaConf/typing/argparse classes (callback states, hyper-parameters) mapped to inert
  stand-ins, found by scanning the pickle's opcodes first; any other global (``os.system``, ...)
  is refused by ``safe_load``.
``torch.load(weights_only=True)`` was not used: it refuses the Lightning callback classes the
official checkpoints reference (PL 1.0.8 keys ``callbacks`` by class) unless they are allow-listed
globally, and a file-specific restricted loader keeps the same rules as every other user file.

Key names and shapes (bala1144/Imitator ``imitator/models/nn_model.py``, Lightning prefix ``nn_model.``):
``audio_encoder.*`` (transformers 4.17 Wav2Vec2Model, ``pos_conv_embed.conv.weight_g/_v``),
``audio_feature_map`` (64, 768), ``PPE.pe`` (600, 1, 64, dropped: recomputed),
``transformer_decoder.layers.N.*`` (nn.TransformerDecoderLayer), ``obj_vector.weight`` (64, 8),
``vertice_map_r.decoder.{0,2,4,6}`` (64, 64) and ``vertice_map_r.decoder.final_out_layer`` (3V, 64).
"""

from __future__ import annotations

import argparse
import collections
import io
import logging
import pickletools
import re
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ImitatorError
from ..safe_pickle import BUDGET_FACTOR, MIN_BUDGET, safe_load
from .config import VOCASET_TRAIN_SUBJECTS, ImitatorConfig
from .imitator import Imitator

log = logging.getLogger(__name__)

# top-level packages whose classes may appear in a checkpoint's non-weight entries; they become
# inert stand-ins (never imported, never called)
_STAND_IN_PACKAGES = {"pytorch_lightning", "lightning", "lightning_fabric", "omegaconf", "typing",
                      "argparse", "pathlib", "imitator", "torch", "collections", "enum"}

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16", "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` etc.: only carries the element type."""

    def __init__(self, name: str, dtype: Any):
        self.name, self.dtype = name, dtype


class _Opaque:
    """Inert stand-in for any allowed non-weight class: records what it was given, runs nothing."""

    qualified = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> "_Opaque":
        obj = super().__new__(cls)
        obj.args, obj.state = args, None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<{self.qualified} (not loaded)>"


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None, *rest: Any) -> Any:
    return data


class _TorchZip:
    """The tensors of one ``torch.save`` zip, read as raw bytes on demand."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.zip = zipfile.ZipFile(path)
            names = self.zip.namelist()
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as e:  # names not UTF-8
            raise ImitatorError(f"{path}: not a PyTorch checkpoint ({' '.join(str(e).split())[:120]}); "
                                f"official checkpoints are "
                                f"the .ckpt files of the release (zip format, torch >= 1.6)") from None
        pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if not pkl:
            raise ImitatorError(f"{path}: zip file without data.pkl; not a PyTorch checkpoint")
        self.root = pkl[0][: -len("data.pkl")]
        self.storages: dict[str, torch.Tensor] = {}
        # what reading may allocate: the tensors of a checkpoint are no larger than its zip
        # (torch.save stores them uncompressed); a deflated member that claims more is a bomb
        self.limit = max(MIN_BUDGET, BUDGET_FACTOR * path.stat().st_size)
        self.used = 0
        order = self.root + "byteorder"
        self.big_endian = order in names and self._read(order).strip() == b"big"

    def spend(self, nbytes: int, what: str) -> None:
        """Charge ``nbytes`` against the budget before allocating them; refuse beyond it."""
        if self.used + nbytes > self.limit:
            raise ImitatorError(f"{self.path}: refused to load, {what} would take "
                                f"{nbytes / 2**20:,.0f} MB, more than the {self.limit / 2**20:,.0f} MB "
                                f"a checkpoint of this size may use (the file is damaged or "
                                f"malicious); download the checkpoint again")
        self.used += nbytes

    def pickle_bytes(self) -> bytes:
        return self._read(self.root + "data.pkl")

    def _read(self, name: str) -> bytes:
        try:
            self.spend(self.zip.getinfo(name).file_size, f"entry {name}")
            return self.zip.read(name)
        except KeyError:
            raise ImitatorError(f"{self.path}: entry {name} is missing (truncated file?); download "
                                f"the checkpoint again") from None
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError,
                RuntimeError, ValueError) as e:  # CRC, deflate, unsupported or encrypted entries
            raise ImitatorError(f"{self.path}: corrupt entry {name} ({' '.join(str(e).split())}); "
                                f"download the checkpoint again") from None

    def persistent_load(self, pid: Any) -> torch.Tensor:
        """('storage', type, key, location, numel) -> 1-D tensor of that storage's elements."""
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise ImitatorError(f"{self.path}: unsupported tensor storage record {str(pid)[:80]}")
        _, stype, key, _location, numel = pid[:5]
        key = str(key)
        if key not in self.storages:
            raw = self._read(f"{self.root}data/{key}")
            if stype.dtype == "bfloat16":
                arr = np.frombuffer(raw, dtype=">u2" if self.big_endian else "<u2").astype(np.int16)
                tensor = torch.from_numpy(arr.copy()).view(torch.bfloat16)
            else:
                dtype = np.dtype(stype.dtype).newbyteorder(">" if self.big_endian else "<")
                arr = np.frombuffer(raw, dtype=dtype).astype(np.dtype(stype.dtype).newbyteorder("="))
                tensor = torch.from_numpy(arr.copy())
            if tensor.numel() < int(numel):
                raise ImitatorError(f"{self.path}: tensor data {key} is shorter than declared "
                                    f"(truncated file?); download the checkpoint again")
            self.storages[key] = tensor
        return self.storages[key]

    def rebuild_tensor(self, storage: Any, offset: Any, size: Any, stride: Any, *rest: Any) -> torch.Tensor:
        """``torch._utils._rebuild_tensor_v2`` from a 1-D storage, with the bounds checked first."""
        if not (isinstance(storage, torch.Tensor) and isinstance(offset, int)
                and isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride)
                and all(isinstance(n, int) and n >= 0 for n in size + stride) and offset >= 0):
            raise ImitatorError(f"{self.path}: malformed tensor record; download the checkpoint again")
        if all(size):
            last = offset + sum((n - 1) * s for n, s in zip(size, stride))
            if last >= storage.numel():
                raise ImitatorError(f"{self.path}: tensor reaches past its data (corrupt file); "
                                    f"download the checkpoint again")
        numel = 1
        for n in size:
            numel *= n
        self.spend(numel * storage.element_size(), "a tensor")  # strides 0 repeat one value
        return torch.as_strided(storage, size, stride, offset).clone()


def _scan_globals(data: bytes) -> set[str]:
    """Globals a pickle names (GLOBAL/INST args; STACK_GLOBAL from the two strings pushed before)."""
    found: set[str] = set()
    strings: list[str] = []
    memo: dict[int, str] = {}
    last: str | None = None
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("GLOBAL", "INST"):
                module, name = str(arg).split(" ", 1)
                found.add(f"{module}.{name}")
            elif isinstance(arg, str) and op.name.endswith(("UNICODE", "STRING", "UNICODE8")):
                strings.append(arg)
                last = arg
                continue
            elif op.name in ("BINPUT", "LONG_BINPUT", "PUT") and last is not None:
                memo[int(arg)] = last
            elif op.name == "MEMOIZE" and last is not None:
                memo[len(memo)] = last
            elif op.name in ("BINGET", "LONG_BINGET", "GET") and int(arg) in memo:
                strings.append(memo[int(arg)])
                last = memo[int(arg)]
                continue
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.add(f"{strings[-2]}.{strings[-1]}")
            last = None
    except Exception:  # noqa: BLE001 - a broken pickle is reported by safe_load itself
        pass
    return found


def _allow_table(reader: _TorchZip, names: set[str]) -> dict[str, Any]:
    table: dict[str, Any] = {
        "collections.OrderedDict": collections.OrderedDict,
        "torch._utils._rebuild_tensor_v2": reader.rebuild_tensor,
        "torch._utils._rebuild_tensor": reader.rebuild_tensor,
        "torch._utils._rebuild_parameter": _rebuild_parameter,
    }
    for name, dtype in _STORAGE_DTYPES.items():
        table[f"torch.{name}"] = _StorageType(name, dtype)
    for qualified in names:
        if qualified in table or qualified.split(".", 1)[0] not in _STAND_IN_PACKAGES:
            continue
        table[qualified] = type(f"_Opaque_{qualified.rpartition('.')[2]}", (_Opaque,),
                                {"qualified": qualified})
    return table


def read_official_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The model weights of an official checkpoint (``state_dict``, ``nn_model.`` prefix removed)."""
    path = Path(path)
    if not path.is_file():
        raise ImitatorError(f"{path}: checkpoint not found; pass the official .ckpt file")
    reader = _TorchZip(path)
    data = reader.pickle_bytes()
    stream = io.BytesIO(data)
    stream.name = str(path)  # type: ignore[attr-defined]
    obj = safe_load(stream, _allow_table(reader, _scan_globals(data)),
                    persistent_load=reader.persistent_load)
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not state:
        raise ImitatorError(f"{path}: holds no state_dict; pass an Imitator checkpoint")
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            out[str(key).removeprefix("nn_model.")] = value
    if "audio_feature_map.weight" not in out or "obj_vector.weight" not in out:
        raise ImitatorError(f"{path}: not an Imitator checkpoint (no audio_feature_map/obj_vector "
                            f"weights)")
    return out


# --- key mapping and config inference --------------------------------------------------------------
def _count(state: dict[str, torch.Tensor], pattern: str) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def infer_wav2vec2_config(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """A Wav2Vec2Config dict for the ``audio_encoder.*`` weights (defaults = wav2vec2-base; the
    head count assumes 64-d heads, as base and large have)."""
    from transformers import Wav2Vec2Config

    enc = {k[len("audio_encoder."):]: v for k, v in state.items() if k.startswith("audio_encoder.")}
    cfg = Wav2Vec2Config().to_dict()
    n_conv = _count(enc, r"feature_extractor\.conv_layers\.(\d+)\.")
    convs = [enc[f"feature_extractor.conv_layers.{i}.conv.weight"] for i in range(n_conv)]
    hidden = int(enc["feature_projection.projection.weight"].shape[0])
    pos = enc.get("encoder.pos_conv_embed.conv.weight_v",
                  enc.get("encoder.pos_conv_embed.conv.parametrizations.weight.original1"))
    cfg.update(
        hidden_size=hidden,
        num_hidden_layers=_count(enc, r"encoder\.layers\.(\d+)\."),
        num_attention_heads=max(1, hidden // 64),
        intermediate_size=int(enc["encoder.layers.0.feed_forward.intermediate_dense.weight"].shape[0]),
        conv_dim=[int(w.shape[0]) for w in convs],
        conv_kernel=[int(w.shape[2]) for w in convs],
        conv_stride=(cfg["conv_stride"] if n_conv == len(cfg["conv_stride"]) else [2] * n_conv),
        conv_bias="feature_extractor.conv_layers.0.conv.bias" in enc,
        feat_extract_norm="layer" if "feature_extractor.conv_layers.1.layer_norm.weight" in enc else "group",
        num_conv_pos_embeddings=int(pos.shape[2]),
        num_conv_pos_embedding_groups=hidden // int(pos.shape[1]),
        num_feat_extract_layers=n_conv,
    )
    return cfg


def official_to_ours(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename official keys to ours (weights unchanged)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key == "PPE.pe" or key.startswith("PPE."):
            continue  # recomputed (and, with batch-first input, only its first row is ever used)
        if key.startswith("audio_encoder."):
            key = "audio_encoder.model." + key[len("audio_encoder."):]
            key = key.replace("pos_conv_embed.conv.weight_g", "pos_conv_embed.conv.parametrizations.weight.original0")
            key = key.replace("pos_conv_embed.conv.weight_v", "pos_conv_embed.conv.parametrizations.weight.original1")
        elif key.startswith("transformer_decoder.layers."):
            key = "viseme_decoder." + key[len("transformer_decoder."):]
        elif key == "obj_vector.weight":
            key = "style_embedding.weight"
        elif key.startswith("vertice_map_r.decoder.final_out_layer."):
            key = "motion_decoder.final." + key.rpartition(".")[2]
        elif m := re.match(r"vertice_map_r\.decoder\.(\d+)\.(weight|bias)$", key):
            key = f"motion_decoder.layers.{int(m.group(1)) // 2}.{m.group(2)}"
        out[key] = value
    return out


def convert_official(ckpt: str | Path, out: str | Path, *, wav2vec2_config: dict[str, Any] | None = None,
                     styles: list[str] | None = None, num_heads: int = 4, topology: str = "") -> Imitator:
    """Read an official checkpoint, write ``out/config.json`` + ``out/model.safetensors``, return the model."""
    ckpt = Path(ckpt)
    state = read_official_state(ckpt)
    d, enc_dim = state["audio_feature_map.weight"].shape
    num_styles = int(state["obj_vector.weight"].shape[1])
    final = state.get("vertice_map_r.decoder.final_out_layer.weight")
    if final is None:
        raise ImitatorError(f"{ckpt}: no motion decoder weights (vertice_map_r); not an Imitator checkpoint")
    if final.shape[1] != d:
        raise ImitatorError(f"{ckpt}: motion decoder takes {final.shape[1]} inputs (style_concat "
                            f"models are not supported)")
    if styles is None:
        styles = list(VOCASET_TRAIN_SUBJECTS) if num_styles == len(VOCASET_TRAIN_SUBJECTS) \
            else [f"style{i}" for i in range(num_styles)]
    if len(styles) != num_styles:
        raise ImitatorError(f"{ckpt}: has {num_styles} styles but {len(styles)} names were given")
    config = ImitatorConfig(
        encoder="wav2vec2",
        encoder_options={"config": wav2vec2_config or infer_wav2vec2_config(state), "normalize": True},
        feature_dim=int(d), num_heads=num_heads,
        ff_dim=int(state["transformer_decoder.layers.0.linear1.weight"].shape[0]),
        num_layers=_count(state, r"transformer_decoder\.layers\.(\d+)\."),
        max_seq_len=int(state["PPE.pe"].shape[0]) if "PPE.pe" in state else 600,
        positional_encoding="imitator", temporal_bias=False, styles=styles,
        motion_layers=len({k.split(".")[2] for k in state
                           if re.match(r"vertice_map_r\.decoder\.\d+\.weight$", k)}),
        num_vertices=int(final.shape[0]) // 3, topology=topology,
    )
    model = Imitator(config, pretrained_encoder=False)
    ours = official_to_ours(state)
    expected = model.state_dict()
    ours["template"] = expected["template"]  # official templates live in templates.pkl, per subject
    for key in [k for k in ours if k not in expected]:
        if key.endswith("masked_spec_embed"):
            del ours[key]  # training-only SpecAugment vector; absent when masking is off
    from .checkpoint import check_finite, check_state

    check_state(model, ours, ckpt)
    check_finite(ours, ckpt)
    model.load_state_dict(ours, strict=True)
    model.eval()
    model.save_pretrained(out)
    log.info("converted %s -> %s (%d vertices, %d styles)", ckpt, out, config.num_vertices, num_styles)
    return model


# --- command line -------------------------------------------------------------------------------------
def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert-official", help="convert an official Imitator checkpoint to a model folder",
                       description=__doc__.splitlines()[0])
    p.add_argument("ckpt", type=Path, help="official checkpoint (.ckpt)")
    p.add_argument("--out", type=Path, required=True, help="model folder to write")
    p.add_argument("--wav2vec2-config", type=Path, default=None,
                   help="config.json (or its folder) of the wav2vec2 model the checkpoint was trained "
                        "from; default: inferred from the weight shapes (wav2vec2-base settings)")
    p.add_argument("--styles", default=None,
                   help="comma-separated style names in one-hot order (default: the 8 VOCASET "
                        "training subjects)")
    p.add_argument("--topology", default="", help="topology hash of the head (FLAME) to record")
    p.add_argument("--overwrite", action="store_true", help="replace a model already in --out")
    p.set_defaults(func=_run, outputs={"out": "folder"})


def _run(args: argparse.Namespace) -> int:
    import json

    w2v = None
    if args.wav2vec2_config is not None:
        path = args.wav2vec2_config / "config.json" if args.wav2vec2_config.is_dir() else args.wav2vec2_config
        try:
            w2v = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ImitatorError(f"{path}: unreadable wav2vec2 config ({e})") from None
    styles = [s.strip() for s in args.styles.split(",")] if args.styles else None
    model = convert_official(args.ckpt, args.out, wav2vec2_config=w2v, styles=styles, topology=args.topology)
    print(f"wrote {args.out} ({model.config.num_vertices} vertices, styles: {', '.join(model.config.styles)})")
    return 0
