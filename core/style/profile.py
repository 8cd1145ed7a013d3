"""Style profiles: a speaking style adapted from a clip, in one safetensors file (``NAME.imstyle``).

A profile holds the adapted style vector (d,) and, when stage 2 of the adaptation ran, the adapted
final layer of the motion decoder (``final.weight`` (3V, d), ``final.bias`` (3V,)). It only makes
sense with the model it was adapted from, so its metadata names that model by ``model_hash``
(sha256 over the model's tensors, names and shapes: the same weights give the same hash whatever
file they were loaded from) and its topology; ``load_style_profile`` refuses any other model with a
one-line message naming both. The metadata also records fps, clip length, fit losses per stage,
creation time and the style's name.

Reading the metadata (``read_profile_info``) needs neither torch nor safetensors: a safetensors file
starts with an 8-byte little-endian header length and a JSON header, so the Blender style list can
show profiles before the heavy dependencies are installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImitatorError
from ..fileio import atomic_write

__all__ = ["SUFFIX", "StyleProfile", "model_hash", "model_topology", "read_profile_info",
           "load_style_profile"]

SUFFIX = ".imstyle"
FORMAT = "imitator-style"
VERSION = 1
_MAX_HEADER = 1 << 20  # our headers are a few kB; anything larger is not a profile
_AGAIN = "adapt the style again with this model"


def model_hash(model) -> str:
    """sha256 (hex) of a model's weights: every state_dict tensor with its name, dtype and shape."""
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def model_topology(model) -> str:
    """The model's topology hash, or ``<V> vertices`` when it was not recorded."""
    return model.config.topology or f"{model.config.num_vertices} vertices"


@dataclass
class StyleProfile:
    """An adapted style; ``final_weight``/``final_bias`` are None when only stage 1 ran."""

    style: np.ndarray  # (d,) float32
    final_weight: np.ndarray | None = None  # (3V, d) float32, the motion decoder's final Linear
    final_bias: np.ndarray | None = None  # (3V,) float32
    meta: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None  # the file it was read from

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or (self.source.stem if self.source else "style"))

    @property
    def has_final_layer(self) -> bool:
        return self.final_weight is not None

    def where(self) -> str:
        return str(self.source) if self.source is not None else f"style '{self.name}'"

    # --- use with a model ------------------------------------------------------------------------
    def check_shapes(self, model) -> None:
        """Same style size and vertex count as ``model`` (cheap; ``check`` also compares hashes)."""
        d, V = model.config.feature_dim, model.config.num_vertices
        meta_v = int(self.meta.get("num_vertices", V))
        if self.style.shape != (d,) or meta_v != V or (
                self.final_weight is not None and self.final_weight.shape != (3 * V, d)):
            raise ImitatorError(
                f"{self.where()}: style is for topology {self.meta.get('topology', '?')} "
                f"({meta_v} vertices, style size {self.style.shape[-1]}) but the model animates "
                f"{model_topology(model)} ({V} vertices, style size {d}); {_AGAIN}")

    def check(self, model, model_id: str | None = None) -> None:
        """Refuse a model other than the one this style was adapted with (one line naming both)."""
        ours = str(self.meta.get("topology", ""))
        theirs = model_topology(model)
        if ours and ours != theirs:
            raise ImitatorError(
                f"{self.where()}: style '{self.name}' is for head topology {ours} "
                f"({self.meta.get('num_vertices', '?')} vertices) but the model animates {theirs} "
                f"({model.config.num_vertices} vertices); {_AGAIN}")
        self.check_shapes(model)
        base = str(self.meta.get("base_model", ""))
        current = model_id or model_hash(model)
        if base != current:
            raise ImitatorError(
                f"{self.where()}: style '{self.name}' was adapted with model {base[:12] or '?'} "
                f"({self.meta.get('base_model_name', 'unnamed')}), not with this model "
                f"({current[:12]}); {_AGAIN}")

    def style_tensor(self, like):
        """(d,) style vector as a tensor on ``like``'s device and dtype."""
        import torch

        return torch.from_numpy(self.style).to(device=like.device, dtype=like.dtype)

    def basis(self, model) -> tuple[np.ndarray, np.ndarray]:
        """(d, 3V) basis and (3V,) bias the animation uses: the adapted ones, else the model's."""
        if self.final_weight is not None:
            return self.final_weight.T.copy(), self.final_bias.copy()
        basis, bias = model.basis()
        return basis.detach().float().cpu().numpy(), bias.detach().float().cpu().numpy()

    # --- file ------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the profile atomically; returns the path."""
        from safetensors.numpy import save

        path = Path(path)
        tensors = {"style": np.ascontiguousarray(self.style, dtype=np.float32)}
        if self.final_weight is not None:
            tensors["final.weight"] = np.ascontiguousarray(self.final_weight, dtype=np.float32)
            tensors["final.bias"] = np.ascontiguousarray(self.final_bias, dtype=np.float32)
        blob = save(tensors, metadata={"format": FORMAT, "version": str(VERSION),
                                       "profile": json.dumps(self.meta, sort_keys=True)})
        with atomic_write(path) as f:
            f.write(blob)
        return path


def _bad(path: Path, why: str) -> ImitatorError:
    return ImitatorError(f"{path}: {why}; choose a .imstyle file made by Adapt Style, or adapt again")


def read_profile_info(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of a profile file (name, base model, topology, fps, losses ...), header only.

    Raises a one-line ImitatorError for a missing, truncated or foreign file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                raise _bad(path, "not a style profile (file too short)")
            (size,) = struct.unpack("<Q", raw)
            if not 2 <= size <= _MAX_HEADER:
                raise _bad(path, "not a style profile (no safetensors header)")
            header = f.read(size)
            f.seek(0, os.SEEK_END)
            total = f.tell()
    except FileNotFoundError:
        raise ImitatorError(f"{path}: style profile not found; check the path") from None
    except IsADirectoryError:
        raise _bad(path, "is a folder, not a style profile") from None
    except OSError as e:
        raise ImitatorError(f"{path}: unreadable style profile ({e.strerror or e})") from None
    try:
        data = json.loads(header.decode("utf-8"))
        meta = data.get("__metadata__") or {}
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        raise _bad(path, "not a style profile (unreadable header)") from None
    if meta.get("format") != FORMAT:
        raise _bad(path, "not an Imitator style profile (no 'imitator-style' metadata)")
    if int(meta.get("version", "0") or 0) > VERSION:
        raise ImitatorError(f"{path}: style profile format {meta.get('version')} is newer than this "
                            f"add-on reads ({VERSION}); update the add-on")
    end = max((int(v["data_offsets"][1]) for k, v in data.items()
               if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v), default=0)
    if 8 + size + end > total:
        raise _bad(path, f"truncated ({total} bytes, the header promises {8 + size + end})")
    if "style" not in data:
        raise _bad(path, "holds no style vector")
    try:
        info = json.loads(meta.get("profile", "{}"))
    except json.JSONDecodeError:
        raise _bad(path, "unreadable profile metadata") from None
    if not isinstance(info, dict):
        raise _bad(path, "unreadable profile metadata")
    return info


def load_style_profile(path: str | os.PathLike, model=None, model_id: str | None = None) -> StyleProfile:
    """Read a profile; with ``model``, refuse it unless it was adapted with that very model.

    ``model_id``: the model's ``model_hash`` when the caller has it already (saves hashing).
    """
    from safetensors.numpy import load_file

    path = Path(path)
    meta = read_profile_info(path)
    try:
        tensors = load_file(str(path))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for bad files
        raise _bad(path, f"corrupt ({' '.join(str(e).split())[:120]})") from None
    style = tensors.get("style")
    weight, bias = tensors.get("final.weight"), tensors.get("final.bias")
    if style is None or style.ndim != 1:
        raise _bad(path, "the style vector is missing or not 1-D")
    if (weight is None) != (bias is None) or (weight is not None and (
            weight.ndim != 2 or weight.shape[1] != style.shape[0] or bias.shape != (weight.shape[0],))):
        raise _bad(path, "the adapted final layer has inconsistent shapes")
    for name, array in (("style", style), ("final.weight", weight), ("final.bias", bias)):
        if array is not None and not np.all(np.isfinite(array)):
            raise _bad(path, f"{name} holds NaN or Inf")
    profile = StyleProfile(style.astype(np.float32), None if weight is None else weight.astype(np.float32),
                           None if bias is None else bias.astype(np.float32), meta, path)
    if model is not None:
        profile.check(model, model_id)
    return profile
