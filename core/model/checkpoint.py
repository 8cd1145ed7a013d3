"""Model folders: ``config.json`` + ``model.safetensors``, written atomically, loaded without pickle.

Both files carry the same random ``save_id`` (config.json key ``_checkpoint``, safetensors metadata),
so a folder whose two files come from different saves (a save killed between the two writes) is
refused instead of loading mismatched weights. Every problem is one ``ImitatorError`` line naming
the file and the fix.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import torch

from ..errors import ImitatorError
from ..fileio import atomic_write
from .config import ImitatorConfig
from .imitator import Imitator

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1
_REFETCH = "re-download the model or save it again"
MIN_MODEL_BYTES = 64 << 20  # tensors any model may build beyond 4x its weights file


def save_pretrained(model: Imitator, folder: str | Path) -> Path:
    """Write ``folder/model.safetensors`` then ``folder/config.json``, each atomically."""
    from safetensors.torch import save

    folder = Path(folder)
    save_id = uuid.uuid4().hex
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob = save(tensors, metadata={"format": "pt", "imitator_save_id": save_id,
                                   "imitator_format": str(FORMAT_VERSION)})
    with atomic_write(folder / WEIGHTS_NAME) as f:
        f.write(blob)
    payload = {**model.config.to_dict(),
               "_checkpoint": {"format": FORMAT_VERSION, "save_id": save_id, "weights": WEIGHTS_NAME}}
    with atomic_write(folder / CONFIG_NAME) as f:
        f.write(json.dumps(payload, indent=2).encode())
    return folder


def read_config(folder: str | Path) -> tuple[ImitatorConfig, dict]:
    """The model config of a folder and its ``_checkpoint`` record."""
    path = Path(folder) / CONFIG_NAME
    if not Path(folder).is_dir():
        raise ImitatorError(f"{folder}: model folder not found; pass a folder holding {CONFIG_NAME} "
                            f"and {WEIGHTS_NAME}")
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ImitatorError(f"{path}: missing; a model folder needs {CONFIG_NAME} beside "
                            f"{WEIGHTS_NAME}; {_REFETCH}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ImitatorError(f"{path}: unreadable model config ({' '.join(str(e).split())}); "
                            f"{_REFETCH}") from None
    if not isinstance(data, dict):
        raise ImitatorError(f"{path}: not a model config (expected a JSON object); {_REFETCH}")
    record = data.pop("_checkpoint", {})
    return ImitatorConfig.from_dict(data, str(path)), record if isinstance(record, dict) else {}


def load_state(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file (no pickle involved)."""
    from safetensors import safe_open

    if not path.is_file():
        raise ImitatorError(f"{path}: missing; a model folder needs {WEIGHTS_NAME} beside "
                            f"{CONFIG_NAME}; {_REFETCH}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            return {k: f.get_tensor(k) for k in f.keys()}, metadata
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for bad files
        raise ImitatorError(f"{path}: corrupt or truncated weights ({' '.join(str(e).split())[:160]}); "
                            f"{_REFETCH}") from None


def check_state(model: Imitator, state: dict[str, torch.Tensor], path: Path) -> None:
    """Same keys and shapes as ``model``, or a one-line error saying what differs."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}")
        raise ImitatorError(f"{path}: weights do not match {CONFIG_NAME} ({'; '.join(parts)}); "
                            f"{_REFETCH}")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            if key in ("motion_decoder.final.weight", "motion_decoder.final.bias", "template"):
                n = state[key].shape[0] // (3 if key != "template" else 1)
                raise ImitatorError(f"{path}: weights are for a head with {n} vertices but "
                                    f"{CONFIG_NAME} says {model.config.num_vertices} (wrong topology); "
                                    f"{_REFETCH}")
            raise ImitatorError(f"{path}: {key} has shape {tuple(state[key].shape)}, {CONFIG_NAME} "
                                f"implies {tuple(tensor.shape)}; {_REFETCH}")


def check_finite(state: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse weights holding NaN or Inf (a diverged training run, a damaged file), naming them."""
    bad = [k for k, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise ImitatorError(f"{path}: weights hold NaN or Inf values ({', '.join(bad[:3])}"
                            f"{' ...' if len(bad) > 3 else ''}); the model is damaged or its training "
                            f"diverged; {_REFETCH} or train it again")


def from_pretrained(folder: str | Path, device: str | torch.device = "cpu",
                    topology: str | None = None) -> Imitator:
    """Load a model folder in eval mode; ``topology`` (a head's hash) must match when both are known."""
    folder = Path(folder)
    config, record = read_config(folder)
    if topology and config.topology and topology != config.topology:
        raise ImitatorError(f"{folder}: model is for head topology {config.topology}, the head has "
                            f"{topology}; pick the model trained for this head")
    weights = folder / WEIGHTS_NAME
    state, metadata = load_state(weights)
    if record.get("save_id") != metadata.get("imitator_save_id"):
        raise ImitatorError(f"{folder}: {CONFIG_NAME} and {WEIGHTS_NAME} come from different saves "
                            f"(an interrupted save?); {_REFETCH}")
    try:
        with torch.device("meta"):  # shapes only: a config asking for 10**9 vertices allocates nothing
            shapes = Imitator(config, pretrained_encoder=False)
    except ImitatorError as e:
        raise ImitatorError(f"{folder / CONFIG_NAME}: {e}") from None
    except (RuntimeError, ValueError, TypeError, MemoryError) as e:  # settings torch cannot build
        raise ImitatorError(f"{folder / CONFIG_NAME}: the model cannot be built from these settings "
                            f"({type(e).__name__}: {' '.join(str(e).split())[:120]}); {_REFETCH}") from None
    check_state(shapes, state, weights)
    need = sum(t.numel() * t.element_size() for t in (*shapes.parameters(), *shapes.buffers()))
    limit = max(MIN_MODEL_BYTES, 4 * weights.stat().st_size)
    if need > limit:  # non-persistent buffers (positional tables) sized by the config alone
        raise ImitatorError(f"{folder / CONFIG_NAME}: the config asks for {need / 2**20:,.0f} MB of "
                            f"tensors, far more than {WEIGHTS_NAME} holds; {_REFETCH}")
    check_finite(state, weights)
    model = Imitator(config, pretrained_encoder=False)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()
