"""Training of the Imitator prior: ``python -m core train --data DIR --out RUN [--resume] ...``.

By default as the official trainer (bala1144/Imitator ``imitator/pl_trainer.py`` and
``cfg/generalized_model/imitator_gen_ab_mbp_vel10.yaml``): one sequence per step, autoregressive
(no teacher forcing), Adam with lr 1e-4 and no weight decay (we use AdamW, identical at weight decay
0), loss = reconstruction + 10 x velocity + lip contact (x5 around m/b/p closures), validation on
the val split every epoch (subjects never trained on are decoded in every training style and the
loss averaged, as the reference does; in 8 evenly spread ones when there are more), the best model
by validation loss kept, early stopping. The reference's ReduceLROnPlateau (patience 5000 epochs)
never fires in practice and is left out; ours can decay the lr on a cosine (``lr_schedule``) and
start from a trained model (``--init``, ``warm_start``).

A run folder holds:
    RUN/config.json + RUN/model.safetensors   the best model (``Imitator.from_pretrained(RUN)``)
    RUN/metrics.jsonl                          one JSON line per epoch: train/val loss terms, lr, time
    RUN/last/                                  resumable checkpoint: checkpoint.safetensors (model,
                                               optimizer, RNG states) + state.json (epoch, step,
                                               configs, early-stopping state); replaced atomically
    RUN/closures.json                          m/b/p intervals detected in audio (cache)

Resuming after a hard kill continues from ``last/`` and gives the same weights as an uninterrupted
run with the same seed: the data order and crops derive from (seed, epoch), and the RNG states
(dropout) are restored. Under ``torchrun`` the model is wrapped in DistributedDataParallel (NCCL on
GPUs, gloo on CPUs); each process takes every world_size-th sequence of the epoch's order.

Targets are vertices from ``vertices_npy/`` or, when the corpus has ``arkit/`` weights and their
shape keys (``shape_keys.npy`` of a compact corpus, or the default head), the (T, 52) weights; the
losses are then computed from Gram matrices without vertex frames (``reduced_loss``, exact), or the
weights are expanded on the device (``reduced_loss`` false).

The defaults are the reference's recipe. The fast one (the shipped model's, see its model card):
``batch_size`` 8-16 (sequences padded, each loss term averaged over an item's own frames),
``decoder_passes`` 2 (parallel causal passes instead of the rollout; validation still decodes
autoregressively), ``max_frames`` 240, ``augment`` (``core.train.augment``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..device import pick_device
from ..errors import ImitatorError
from .reduced_loss import ReducedTargets, reduced_loss
from .step import StepBatch, TrainStep, phone_loss, vertex_loss

log = logging.getLogger(__name__)

__all__ = ["TrainConfig", "train", "pick_device", "read_config_file", "load_checkpoint_state",
           "add_commands"]

CHECKPOINT_DIR = "last"
CHECKPOINT_WEIGHTS = "checkpoint.safetensors"
CHECKPOINT_STATE = "state.json"
METRICS_LOG = "metrics.jsonl"
CLOSURE_CACHE = "closures.json"
LOSS_TERMS = ("total", "reconstruction", "velocity", "lip_contact")  # "total": the motion loss
LR_SCHEDULES = ("constant", "cosine")
VAL_STYLES = 8  # a subject never trained on is validated in at most this many styles, evenly spread
_MEMORY_CACHE_BYTES = 4 << 30  # keep the decoded training data in memory below this size


@dataclass
class TrainConfig:
    """Optimisation settings; defaults follow the official config where it has one."""

    epochs: int = 100
    lr: float = 1e-4  # official optim_params.lr
    lr_schedule: str = "constant"  # constant (the reference) | cosine: from lr down to lr * min_lr_ratio
    min_lr_ratio: float = 0.05  # where the cosine schedule ends, relative to lr
    weight_decay: float = 0.0  # official weight_decay (AdamW at 0 is Adam)
    adam_eps: float = 1e-8  # torch's default, as the reference; the losses are in m^2 (~1e-6), so
    # many gradients are below 1e-8 and this damps their steps: 1e-14 lets every weight move by ~lr
    batch_size: int = 1  # official: one sequence per step
    patience: int = 20  # epochs without a better validation loss before stopping; 0: never stop
    min_delta: float = 0.0  # improvement smaller than this does not count
    grad_clip: float = 0.0  # max gradient norm; 0: no clipping (the reference clips nothing)
    seed: int = 0
    checkpoint_every: int = 0  # also checkpoint every N optimizer steps; 0: at epoch ends only
    lip_loss: bool = True  # lip contact loss on m/b/p closures (False: the ablation)
    max_frames: int = 0  # longer training sequences are cropped at random; 0: model max_seq_len
    use_arkit: bool = True  # train on the arkit/ weights when the corpus has them (and their shape keys)
    # ours, for speed (the reference: batch_size 1, decoder_passes 0, reduced_loss False) ----------
    decoder_passes: int = 0  # 0: autoregressive rollout as the reference; N: N parallel causal passes
    grad_passes: int = 1  # of those, how many (the last ones) record gradients
    reduced_loss: bool = True  # ARKit targets: losses from Gram matrices, never vertex frames (exact)
    val_utterances: int = 0  # validate on at most this many val utterances, evenly spread; 0: all
    augment: bool = False  # audio augmentation (core.train.augment: channel, noise, room, speaker)
    style_lr_scale: float = 1.0  # the style table's lr relative to lr: each style is in few batches

    def validate(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or self.patience < 0 or self.checkpoint_every < 0:
            raise ImitatorError(f"train config: epochs {self.epochs}, batch_size {self.batch_size}, "
                                f"patience {self.patience}, checkpoint_every {self.checkpoint_every}: "
                                f"need epochs >= 0, batch_size >= 1, the others >= 0")
        if not self.lr > 0 or not self.adam_eps > 0:
            raise ImitatorError(f"train config: lr {self.lr} and adam_eps {self.adam_eps} must be positive")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ImitatorError(f"train config: lr_schedule {self.lr_schedule!r} is unknown; use one of "
                                f"{', '.join(LR_SCHEDULES)}")
        if self.decoder_passes < 0 or self.grad_passes < 1 or self.val_utterances < 0:
            raise ImitatorError(f"train config: decoder_passes {self.decoder_passes}, grad_passes "
                                f"{self.grad_passes}, val_utterances {self.val_utterances}: need "
                                f"decoder_passes >= 0, grad_passes >= 1, val_utterances >= 0")
        if not 0 < self.style_lr_scale <= 1000:
            raise ImitatorError(f"train config: style_lr_scale {self.style_lr_scale} must be in (0, 1000]")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ImitatorError(f"train config: min_lr_ratio {self.min_lr_ratio} must be in [0, 1]")

    def lr_at(self, step: int, total_steps: int) -> float:
        """Learning rate of optimizer step ``step`` (0-based) of ``total_steps``."""
        if self.lr_schedule == "constant" or total_steps <= 1:
            return self.lr
        progress = min(step / (total_steps - 1), 1.0)
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


# --------------------------------------------------------------------------- configuration

def read_config_file(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model settings, train settings) from JSON: ``{"model": {...}, "train": {...}}``, or one flat
    object whose keys are sorted into ImitatorConfig and TrainConfig fields."""
    from ..model.config import ImitatorConfig

    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ImitatorError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ImitatorError(f"{path}: unreadable config ({' '.join(str(e).split())})") from None
    if not isinstance(data, dict):
        raise ImitatorError(f"{path}: expected a JSON object")
    model_keys = {f.name for f in dataclasses.fields(ImitatorConfig)}
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    if "model" in data or "train" in data:
        extra = sorted(set(data) - {"model", "train"})
        model, train_ = data.get("model", {}), data.get("train", {})
    else:
        model = {k: v for k, v in data.items() if k in model_keys}
        train_ = {k: v for k, v in data.items() if k in train_keys and k not in model_keys}
        extra = sorted(set(data) - model_keys - train_keys)
    extra += sorted(set(train_) - train_keys)
    if extra:
        raise ImitatorError(f"{path}: unknown setting(s) {', '.join(extra)}; model settings are "
                            f"ImitatorConfig fields, training settings TrainConfig fields")
    return dict(model), dict(train_)


def model_config_for(corpus, settings: dict[str, Any], fps: float | None = None):
    """The model config for a corpus: its vertex count, topology and training subjects (styles);
    the built-in log-mel encoder unless the settings name another."""
    from ..model.config import ImitatorConfig

    settings = dict(settings)
    if "encoder" not in settings:
        settings["encoder"] = "logmel"
        log.info("encoder: logmel (built in); set \"encoder\" in --config for wav2vec2")
    if settings.get("styles") not in (None, corpus.style_subjects):
        log.warning("styles in the config are replaced by the corpus's training subjects")
    settings.update(num_vertices=corpus.num_vertices, styles=list(corpus.style_subjects),
                    topology=str(corpus.info.get("topology", settings.get("topology", ""))))
    if fps is not None:
        settings["fps"] = float(fps)
    if float(settings.get("phone_loss_weight", 0)) > 0 and not settings.get("phones"):
        from ..data.phones import PHONES

        settings["phones"] = list(PHONES)  # the classes of every corpus's dataset.json phones
    branch = (settings.get("encoder_options") or {}).get("phone_branch")
    if branch is not None:
        if not float(settings.get("phone_loss_weight", 0)) > 0:
            raise ImitatorError("model config: encoder_options.phone_branch learns from the phone loss "
                                "only; set phone_loss_weight > 0 (1.0: the branch shares no weight with "
                                "the motion loss)")
        settings["encoder_options"] = {**settings["encoder_options"],
                                       "phone_branch": {"classes": len(settings["phones"]), **branch}}
    return ImitatorConfig.from_dict(settings, "model config")


# --------------------------------------------------------------------------- devices, processes

@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    started: bool = False  # we called init_process_group (and destroy it at the end)

    @property
    def active(self) -> bool:
        return self.world > 1


def _init_distributed(device_name: str) -> _Dist:
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    started = False
    if not dist.is_initialized():
        cuda = torch.cuda.is_available() and not str(device_name).lower().startswith("cpu")
        dist.init_process_group("nccl" if cuda else "gloo")
        started = True
    return _Dist(rank, world, local, started)


def _seed_all(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def _rank_seed(seed: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, rank, 7]).generate_state(1)[0])


# --------------------------------------------------------------------------- data

@dataclass
class _Item:
    key: str
    audio: np.ndarray  # (N,) float32 at the model's sample rate
    target: np.ndarray  # (T, V, 3) vertices or (T, 52) ARKit weights
    template: np.ndarray  # (V, 3)
    style: int  # index in the model's styles, -1 for a subject never trained on
    closures: np.ndarray | None  # (T,) bool
    phones: np.ndarray | None = None  # (T,) int64 phone class per frame, -1 unknown (phone loss only)


def frame_phones(phones, classes: list[str], fps: float, num_frames: int) -> np.ndarray | None:
    """(T,) class index of the phone sounding at each frame time t / fps (dataset.json's
    ``[phone, start_s, end_s]`` list); -1 for a phone not in ``classes`` or no phone; None without
    phone timings."""
    if not isinstance(phones, list) or not phones:
        return None
    index = {name: i for i, name in enumerate(classes)}
    labels = np.full(num_frames, -1, np.int64)
    times = np.arange(num_frames) / fps
    for entry in phones:
        name, start, end = entry[0], float(entry[1]), float(entry[2])
        labels[(times >= start) & (times < end)] = index.get(str(name), -1)
    return labels


class _Items:
    """Utterances of one split as training items at the model fps (kept in memory when small)."""

    def __init__(self, corpus, utterances, config, closures: dict | None, arkit: bool, cache: bool):
        self.corpus, self.utterances, self.config = corpus, list(utterances), config
        self.closures, self.arkit = closures, arkit
        self.style = {s: i for i, s in enumerate(config.styles)}
        self.memory: dict[int, _Item] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, index: int) -> _Item:
        if self.memory is not None and index in self.memory:
            return self.memory[index]
        from ..data.closure_labels import closure_mask

        utt = self.utterances[index]
        fps = self.config.fps
        target = self.corpus.read_arkit(utt, fps) if self.arkit else self.corpus.read_vertices(utt, fps)
        closures = None
        if self.closures is not None:
            closures = closure_mask(self.closures.get(utt.key, []), fps, len(target))
        phones = (frame_phones(utt.phonemes, self.config.phones, fps, len(target))
                  if self.config.phone_loss_weight > 0 else None)
        item = _Item(utt.key, self.corpus.read_audio(utt, self.config.sample_rate),
                     np.ascontiguousarray(target, dtype=np.float32), self.corpus.templates[utt.subject],
                     self.style.get(utt.subject, -1), closures, phones)
        if self.memory is not None:
            self.memory[index] = item
        return item


def _crop(item: _Item, max_frames: int, rng: np.random.Generator, sr: int, fps: float) -> _Item:
    """A random window of ``max_frames`` frames (and its audio) of a longer item."""
    T = len(item.target)
    if T <= max_frames:
        return item
    s = int(rng.integers(0, T - max_frames + 1))
    a, b = int(round(s * sr / fps)), int(round((s + max_frames) * sr / fps))
    return dataclasses.replace(item, audio=item.audio[a:b], target=item.target[s:s + max_frames],
                               closures=None if item.closures is None else item.closures[s:s + max_frames],
                               phones=None if item.phones is None else item.phones[s:s + max_frames])


def _to_batch(items: list[_Item], device: torch.device, basis: torch.Tensor | None) -> StepBatch:
    """Pad to the longest item, move to the device; with ``basis`` expand ARKit weights to vertices
    there (without, targets stay the compact (B, T, 52) weights of the reduced loss)."""
    lengths = [len(it.target) for it in items]
    T, N = max(lengths), max(len(it.audio) for it in items)
    audio = np.zeros((len(items), N), np.float32)
    target = np.zeros((len(items), T) + items[0].target.shape[1:], np.float32)
    for i, it in enumerate(items):
        audio[i, :len(it.audio)] = it.audio
        target[i, :len(it.target)] = it.target
        target[i, len(it.target):] = it.target[-1]
    closures = None
    if all(it.closures is not None for it in items):
        closures = torch.zeros(len(items), T, dtype=torch.bool)
        for i, it in enumerate(items):
            closures[i, :len(it.closures)] = torch.from_numpy(it.closures)
        closures = closures.to(device)
    phones = None
    if any(it.phones is not None for it in items):
        phones = torch.full((len(items), T), -1, dtype=torch.long)
        for i, it in enumerate(items):
            if it.phones is not None:
                phones[i, :len(it.phones)] = torch.from_numpy(it.phones)
        phones = phones.to(device)
    template = torch.from_numpy(np.stack([it.template for it in items])).to(device)
    target_t = torch.from_numpy(target).to(device, non_blocking=True)
    if basis is not None:  # (B, T, 52) weights -> (B, T, V, 3) vertices, on the device
        target_t = template[:, None] + torch.einsum("btk,kvc->btvc", target_t, basis)
    return StepBatch(torch.from_numpy(audio).to(device, non_blocking=True), target_t, template,
                  torch.tensor([max(it.style, 0) for it in items], device=device), lengths, closures,
                  phones=phones)


def _arkit_basis(corpus, utterances, cache_dir: Path | None) -> np.ndarray | None:
    """(52, V, 3) ARKit shape keys for the corpus's arkit/ weights when every utterance has them: the
    corpus's own ``shape_keys.npy``, else the default head's when the corpus is on it (checked:
    template + weights @ keys = the vertex file)."""
    from ..faces.default_head import load_default_head

    if not utterances or any(u.arkit is None for u in utterances):
        return None
    if corpus.shape_keys is not None:  # the corpus's own shape keys (the compact layout has them)
        return corpus.shape_keys if _arkit_matches(corpus, utterances[0], corpus.shape_keys) else None
    try:
        head = load_default_head(cache_dir) if cache_dir is not None else None
    except ImitatorError as e:
        log.info("arkit/ weights not used (the default head is unavailable: %s); training on vertices", e)
        return None
    topology = str(corpus.info.get("topology", ""))
    if head is None or head.num_vertices != corpus.num_vertices or topology not in ("", head.topology):
        return None
    from ..data.visemes import shape_key_basis

    basis = shape_key_basis(head).reshape(-1, head.num_vertices, 3)
    return basis if _arkit_matches(corpus, utterances[0], basis) else None


def _arkit_matches(corpus, utt, basis: np.ndarray, tolerance: float = 1e-4) -> bool:
    """Whether template + weights @ basis reproduces the utterance's vertex file (within 0.1 mm)."""
    if utt.vertices is None:
        return True  # no vertex file to compare with: the weights are the data
    try:
        verts = corpus.read_vertices(utt)
    except ImitatorError:
        return True
    weights = corpus.read_arkit(utt)
    n = min(len(verts), len(weights))
    rebuilt = corpus.templates[utt.subject] + np.einsum("tk,kvc->tvc", weights[:n], basis)
    err = float(np.abs(rebuilt - verts[:n]).max())
    if err > tolerance:
        log.warning("%s: arkit weights x shape keys differ from the vertices by %.2g m; training on "
                    "vertices", utt.arkit, err)
        return False
    return True


# --------------------------------------------------------------------------- checkpoints

def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = optimizer.state_dict()
    tensors, meta = {}, {"param_groups": sd["param_groups"], "state": {}}
    for pid, state in sd["state"].items():
        plain = {}
        for name, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{pid}.{name}"] = value
            else:
                plain[name] = value
        meta["state"][str(pid)] = plain
    return tensors, meta


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {int(pid): dict(plain) for pid, plain in meta["state"].items()}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def _rng_states(dist_: _Dist, device: torch.device) -> dict[str, torch.Tensor]:
    """RNG states of every process (gathered to all ranks), by 'rank{r}.torch' / 'rank{r}.cuda'."""
    own = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        own["cuda"] = torch.cuda.get_rng_state(device)
    if not dist_.active:
        return {f"rank0.{k}": v for k, v in own.items()}
    import torch.distributed as dist

    out = {}
    for name, state in own.items():
        local = state.to(device) if device.type == "cuda" else state
        gathered = [torch.empty_like(local) for _ in range(dist_.world)]
        dist.all_gather(gathered, local)
        out.update({f"rank{r}.{name}": g.cpu() for r, g in enumerate(gathered)})
    return out


def _write_checkpoint(run: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                      rng: dict[str, torch.Tensor], state: dict) -> None:
    """``run/last/`` replaced as a whole: files written in a temp folder, then swapped in."""
    from safetensors.torch import save

    checkpoint_id = uuid.uuid4().hex
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt_tensors, opt_meta = _flatten_optimizer(optimizer)
    tensors.update(opt_tensors)
    tensors.update({f"rng.{k}": v for k, v in rng.items()})
    blob = save({k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()},
                metadata={"checkpoint_id": checkpoint_id})
    payload = {**state, "optimizer": opt_meta, "checkpoint_id": checkpoint_id}
    tmp = run / f".{CHECKPOINT_DIR}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, data in ((CHECKPOINT_WEIGHTS, blob), (CHECKPOINT_STATE, json.dumps(payload, indent=1).encode())):
        with open(tmp / name, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    last, old = run / CHECKPOINT_DIR, run / f".{CHECKPOINT_DIR}.old"
    shutil.rmtree(old, ignore_errors=True)
    if last.exists():
        os.replace(last, old)
    os.replace(tmp, last)  # a kill before this line leaves .last.old, which loading falls back to
    shutil.rmtree(old, ignore_errors=True)


def _checkpoint_dir(run: Path) -> Path | None:
    for name in (CHECKPOINT_DIR, f".{CHECKPOINT_DIR}.old"):
        if (run / name / CHECKPOINT_STATE).is_file():
            return run / name
    return None


def load_checkpoint_state(run: str | os.PathLike) -> dict | None:
    """The ``state.json`` of a run's last checkpoint (epoch, step, configs ...), None without one."""
    folder = _checkpoint_dir(Path(run))
    if folder is None:
        return None
    try:
        return json.loads((folder / CHECKPOINT_STATE).read_text())
    except (OSError, ValueError) as e:
        raise ImitatorError(f"{folder / CHECKPOINT_STATE}: unreadable checkpoint state ({e}); "
                            f"delete {folder} to start over") from None


def _read_checkpoint(run: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    from safetensors import safe_open

    folder = _checkpoint_dir(run)
    state = load_checkpoint_state(run)
    path = folder / CHECKPOINT_WEIGHTS
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - safetensors has its own error types
        raise ImitatorError(f"{path}: corrupt checkpoint ({' '.join(str(e).split())[:120]}); delete "
                            f"{folder} to start over") from None
    if meta.get("checkpoint_id") != state.get("checkpoint_id"):
        raise ImitatorError(f"{folder}: {CHECKPOINT_WEIGHTS} and {CHECKPOINT_STATE} come from different "
                            f"saves; delete {folder} to start over")
    return state, tensors


def _trim_metrics_log(path: Path, epochs_done: int) -> None:
    """Drop lines of epochs after the checkpoint (written before a kill, redone on resume)."""
    if not path.is_file():
        return
    from ..fileio import atomic_write

    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("epoch", 0) <= epochs_done:
                keep.append(line)
        except ValueError:
            continue  # a line cut by the kill
    with atomic_write(path) as f:
        f.write("".join(k + "\n" for k in keep).encode())


# --------------------------------------------------------------------------- the loop

def _validate(model, items: _Items, indices: list[int], config, device, basis, dist_: _Dist,
              lip_loss: bool, reduced: ReducedTargets | None = None) -> dict[str, float] | None:
    """Mean loss terms over the val utterances, decoded autoregressively as in generation (subjects
    never trained on: averaged over every style, or over VAL_STYLES evenly spread ones when there
    are more). The visemes are style-agnostic, so each utterance is decoded once for all styles;
    with ``reduced`` the losses come from the Gram matrices (the same numbers, no vertex frames)."""
    unseen_styles = np.unique(np.linspace(0, config.num_styles - 1, min(VAL_STYLES, config.num_styles))
                              .round().astype(int)).tolist()

    was_training = model.training
    model.eval()
    names = loss_terms(model)
    sums = torch.zeros(len(names) + 1, dtype=torch.float64)
    with torch.no_grad():
        for i in indices:
            item = items[i]
            styles = [item.style] if item.style >= 0 else unseen_styles
            S = len(styles)
            batch = _to_batch([item], device, None if reduced is not None else basis)
            T = batch.lengths[0]
            features, logits = model.map_features(model.audio_encoder(batch.audio, T))
            visemes = model.viseme_features(features).expand(S, -1, -1)
            style = model.style_vector(torch.tensor(styles, device=device), S)
            closures = batch.closures.expand(S, -1) if (batch.closures is not None and lip_loss) else None
            styled = StepBatch(batch.audio, batch.target.expand(S, *batch.target.shape[1:]),
                               batch.template.expand(S, -1, -1), style, [T] * S, closures)
            if reduced is not None:
                final = model.motion_decoder.final
                terms = reduced_loss(model.motion_decoder.hidden(visemes + style[:, None]), final.weight,
                                     final.bias, styled.target, styled.frame_mask, reduced, config, closures)
            else:
                flat = model.motion_decoder(visemes + style[:, None])  # (S, T, 3V)
                pred = flat.view(S, T, -1, 3) + styled.template[:, None]
                terms = vertex_loss(pred, styled, config)
            if logits is not None:  # the phone loss, once per utterance
                terms = {**terms, "phones": phone_loss(config.phone_loss_weight, logits, batch.phones)}
            sums[:-1] += torch.tensor([float(terms[k]) for k in names], dtype=torch.float64)
            sums[-1] += 1
    model.train(was_training)
    if dist_.active:
        import torch.distributed as dist

        summed = sums.to(device) if device.type == "cuda" else sums
        dist.all_reduce(summed)
        sums = summed.cpu()
    if sums[-1] == 0:
        return None
    return {k: float(v) for k, v in zip(names, sums[:-1] / sums[-1])}


def loss_terms(model) -> tuple[str, ...]:
    """The logged loss terms: the motion loss's, and "phones" when the model scores phones."""
    return LOSS_TERMS + (("phones",) if model.scores_phones else ())


def _shard(order: np.ndarray, dist_: _Dist, batch_size: int) -> list[list[int]]:
    """This process's batches: the order padded (wrapping) to equal work, every world-th item."""
    per_step = dist_.world * batch_size
    steps = max(1, math.ceil(len(order) / per_step))
    padded = np.resize(order, steps * per_step)
    mine = padded[dist_.rank::dist_.world]
    return [mine[k * batch_size:(k + 1) * batch_size].tolist() for k in range(steps)]


def train(data: str | os.PathLike, out: str | os.PathLike, *, model_settings: dict[str, Any] | None = None,
          train_config: TrainConfig | None = None, resume: bool = False, epochs: int | None = None,
          device: str = "auto", progress: bool = True, cache_dir: str | os.PathLike | None = None,
          arkit_basis: np.ndarray | None = None, init: str | os.PathLike | None = None) -> dict[str, Any]:
    """Train (or resume) a run; returns a summary (best epoch, best val loss, epochs done ...).

    ``model_settings``: ImitatorConfig fields (vertex count and styles come from the corpus);
    ``epochs`` overrides the epoch count, also when resuming; ``arkit_basis`` (52, V, 3): shape keys
    for the corpus's arkit/ weights (default: the default head's, when the corpus is on it);
    ``init``: a model folder to start a new run from (``warm_start``; a resumed run ignores it).
    """
    from tqdm import tqdm

    from ..data.vocaset import open_corpus
    from ..model.imitator import Imitator

    run = Path(out)
    dist_ = _init_distributed(device)
    try:
        dev = pick_device(device, dist_.local_rank)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False

        # --- state: fresh or from the last checkpoint -----------------------------------------
        state = load_checkpoint_state(run) if resume else None
        if not resume and _checkpoint_dir(run) is not None:
            raise ImitatorError(f"{run}: holds a training run; pass --resume to continue it or choose "
                                f"a new --out folder")
        if resume and state is None:
            log.info("%s: no checkpoint to resume; starting a new run", run)
        if state is not None:
            cfg = TrainConfig(**state["train_config"])
            if train_config is not None and dataclasses.replace(train_config, epochs=cfg.epochs) != cfg:
                log.warning("resuming with the run's own training settings; settings given now are ignored")
        else:
            cfg = train_config or TrainConfig()
        if epochs is not None:
            cfg = dataclasses.replace(cfg, epochs=int(epochs))
        cfg.validate()

        corpus = open_corpus(data, seed=cfg.seed)
        if state is not None:
            from ..model.config import ImitatorConfig

            config = ImitatorConfig.from_dict(state["model_config"], f"{run / CHECKPOINT_DIR}")
            if config.styles != corpus.style_subjects or config.num_vertices != corpus.num_vertices:
                raise ImitatorError(f"{run}: the run was trained on other subjects or another mesh "
                                    f"than {data}; resume with the same --data")
        else:
            config = model_config_for(corpus, model_settings or {})
        train_utts, val_utts = corpus.splits["train"], corpus.splits["val"]
        if not val_utts:
            log.warning("%s: the val split is empty; the best model is chosen by training loss", corpus.root)

        # --- closures, targets ------------------------------------------------------------------
        lip_loss = cfg.lip_loss and config.lip_contact_weight > 0
        closures = None
        if lip_loss:
            closures = _closures(corpus, train_utts + val_utts, run / CLOSURE_CACHE, dist_, progress)
        basis_np = arkit_basis
        if basis_np is None and cfg.use_arkit:
            basis_np = _arkit_basis(corpus, train_utts + val_utts,
                                    Path(cache_dir) if cache_dir is not None else None)
        use_arkit = basis_np is not None and all(u.arkit is not None for u in train_utts + val_utts)
        basis = torch.from_numpy(np.asarray(basis_np, np.float32)).to(dev) if use_arkit else None
        reduced = ReducedTargets(basis_np, device=dev) if use_arkit and cfg.reduced_loss else None
        log.info("targets: %s", "vertices_npy/" if not use_arkit else "arkit/ weights, losses through Gram "
                 "matrices" if reduced is not None else "arkit/ weights expanded on the device")
        cache = _data_bytes(train_utts + val_utts, use_arkit) < _MEMORY_CACHE_BYTES
        train_items = _Items(corpus, train_utts, config, closures, use_arkit, cache)
        val_items = _Items(corpus, val_utts, config, closures, use_arkit, cache)
        _check_files(train_items, val_items, cache, progress and dist_.rank == 0)

        # --- model, optimizer --------------------------------------------------------------------
        _seed_all(cfg.seed)
        model = Imitator(config)
        config = model.config  # with the encoder's exported options
        with torch.no_grad():
            model.template.copy_(torch.from_numpy(np.mean(
                [corpus.templates[s] for s in config.styles], axis=0)))
        if init is not None and state is None:
            log.info("warm start from %s: %d weight tensors", init, warm_start(model, init))
        model.to(dev)
        optimizer = torch.optim.AdamW(_param_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                      eps=cfg.adam_eps)
        epoch, step_in_epoch, global_step = 0, 0, 0
        names = loss_terms(model)
        sums = [0.0] * (len(names) + 1)
        best, best_epoch, bad_epochs, stopped_early = None, 0, 0, False
        if state is not None:
            state, tensors = _read_checkpoint(run)
            model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
            optimizer.load_state_dict(_unflatten_optimizer(tensors, state["optimizer"]))
            epoch, step_in_epoch, global_step = state["epoch"], state["step_in_epoch"], state["global_step"]
            sums = list(state["epoch_sums"])
            best, best_epoch, bad_epochs = state["best"], state["best_epoch"], state["bad_epochs"]
            stopped_early = state.get("stopped_early", False)
            if state.get("world_size", 1) == dist_.world and f"rng.rank{dist_.rank}.torch" in tensors:
                torch.set_rng_state(tensors[f"rng.rank{dist_.rank}.torch"])
                if dev.type == "cuda" and f"rng.rank{dist_.rank}.cuda" in tensors:
                    torch.cuda.set_rng_state(tensors[f"rng.rank{dist_.rank}.cuda"], dev)
            else:
                log.warning("resuming with %d processes instead of %d: random states start afresh",
                            dist_.world, state.get("world_size", 1))
                torch.manual_seed(_rank_seed(cfg.seed + epoch, dist_.rank))
                step_in_epoch, sums = 0, [0.0] * (len(names) + 1)
            if dist_.rank == 0:
                _trim_metrics_log(run / METRICS_LOG, epoch)
            log.info("resuming %s at epoch %d, step %d", run, epoch + 1, step_in_epoch)
        else:
            torch.manual_seed(_rank_seed(cfg.seed, dist_.rank))  # dropout streams differ per process
            if dist_.rank == 0:
                run.mkdir(parents=True, exist_ok=True)
                (run / METRICS_LOG).unlink(missing_ok=True)

        augmenter = None
        if cfg.augment:
            from .augment import Augmenter

            if config.encoder != "logmel":
                raise ImitatorError(f"train config: augment works on the log-mel encoder's spectrogram; "
                                    f"this model's encoder is {config.encoder}, set augment to false")
            augmenter = Augmenter(sample_rate=config.sample_rate)
        net = TrainStep(model, cfg.decoder_passes, cfg.grad_passes, reduced, augmenter)
        if dist_.active:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None,
                                          find_unused_parameters=config.encoder != "logmel")

        def checkpoint(finished: bool = False) -> None:
            rng = _rng_states(dist_, dev)
            if dist_.rank == 0:
                _write_checkpoint(run, model, optimizer, rng, {
                    "epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step,
                    "epoch_sums": sums, "best": best, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                    "finished": finished, "stopped_early": stopped_early, "world_size": dist_.world,
                    "targets": "arkit" if use_arkit else "vertices", "data": str(Path(data).resolve()),
                    "model_config": config.to_dict(), "train_config": dataclasses.asdict(cfg)})
            _barrier(dist_)

        if state is not None and state.get("finished") and (stopped_early or epoch >= cfg.epochs):
            log.info("%s: training already finished (%d epochs%s)", run, epoch,
                     ", stopped early" if stopped_early else "")
            return _summary(run, epoch, best, best_epoch, stopped_early, global_step)
        stopped_early = False
        max_frames = cfg.max_frames or config.max_seq_len
        val_all = list(range(len(val_items)))
        if cfg.val_utterances and len(val_all) > cfg.val_utterances:
            val_all = np.unique(np.linspace(0, len(val_all) - 1, cfg.val_utterances).round().astype(int)).tolist()
        val_indices = val_all[dist_.rank::dist_.world]
        net.train()

        # --- epochs ------------------------------------------------------------------------------
        while epoch < cfg.epochs:
            t0 = time.perf_counter()
            order = np.random.default_rng([cfg.seed, epoch]).permutation(len(train_items))
            batches = _shard(order, dist_, cfg.batch_size)
            bar = tqdm(total=len(batches), initial=step_in_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                       unit="step", disable=not progress or dist_.rank != 0, leave=False)
            for step in range(step_in_epoch, len(batches)):
                items = [_crop(train_items[i], max_frames, np.random.default_rng([cfg.seed, epoch, int(i)]),
                               config.sample_rate, config.fps) for i in batches[step]]
                batch = _to_batch(items, dev, None if reduced is not None else basis)
                batch.seed = int(np.random.SeedSequence([cfg.seed, epoch, step, dist_.rank, 9]).generate_state(1)[0])
                if not lip_loss:
                    batch.closures = None
                terms = net(batch)
                optimizer.zero_grad(set_to_none=True)
                (terms["total"] + terms["phones"] if "phones" in terms else terms["total"]).backward()
                for group in optimizer.param_groups:
                    group["lr"] = cfg.lr_at(global_step, cfg.epochs * len(batches)) * group.get("lr_scale", 1.0)
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                global_step += 1
                step_in_epoch = step + 1
                for k, name in enumerate(names):
                    sums[k] += float(terms[name].detach())
                sums[-1] += 1
                bar.update()
                bar.set_postfix(loss=f"{sums[0] / sums[-1]:.3g}")
                if cfg.checkpoint_every and global_step % cfg.checkpoint_every == 0 \
                        and step_in_epoch < len(batches):
                    checkpoint()
            bar.close()

            train_terms = _reduce_means(sums, names, dist_, dev)
            val_terms = _validate(model, val_items, val_indices, config, dev, basis, dist_, lip_loss, reduced)
            monitor = (val_terms or train_terms)["total"]
            epoch += 1
            improved = best is None or monitor < best - cfg.min_delta
            if improved:
                best, best_epoch, bad_epochs = monitor, epoch, 0
                if dist_.rank == 0:
                    model.save_pretrained(run)
            else:
                bad_epochs += 1
            stopped_early = bool(cfg.patience and bad_epochs >= cfg.patience and epoch < cfg.epochs)
            if dist_.rank == 0:
                line = {"epoch": epoch, "step": global_step, "train": train_terms, "val": val_terms,
                        "lr": optimizer.param_groups[0]["lr"], "best": improved,
                        "seconds": round(time.perf_counter() - t0, 3)}
                with open(run / METRICS_LOG, "a") as f:
                    f.write(json.dumps(line) + "\n")
                log.info("epoch %d/%d  train %.5g  val %s%s  (%.1f s)", epoch, cfg.epochs,
                         train_terms["total"], "n/a" if val_terms is None else f"{val_terms['total']:.5g}",
                         "  best" if improved else "", line["seconds"])
            step_in_epoch, sums = 0, [0.0] * (len(names) + 1)
            finished = epoch >= cfg.epochs or stopped_early
            checkpoint(finished)
            if stopped_early:
                log.info("no better validation loss for %d epochs: stopping early", bad_epochs)
                break
        if state is not None and epoch >= cfg.epochs and epoch == state["epoch"]:
            checkpoint(True)  # resumed an already complete run: mark it finished
        return _summary(run, epoch, best, best_epoch, stopped_early, global_step)
    finally:
        if dist_.started:
            import torch.distributed as dist

            dist.destroy_process_group()


def _param_groups(model, cfg: TrainConfig) -> list[dict]:
    """Two groups, always (so checkpoints resume whatever the scale): the style table, the rest."""
    styles = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("style_embedding")]
    rest = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("style_embedding")]
    return [{"params": rest, "lr_scale": 1.0},
            {"params": styles, "lr": cfg.lr * cfg.style_lr_scale, "lr_scale": cfg.style_lr_scale}]


def warm_start(model, folder: str | os.PathLike) -> int:
    """Start ``model`` from the model in ``folder``: every weight of the same name and shape (audio
    encoder, viseme decoder, motion decoder); the style table too when the styles are the same, else
    each style starts at that model's mean style. Context blocks the folder's encoder lacks (a longer
    ``context_dilations``) start as the identity, so the model starts as that one. The template stays
    the corpus's. Returns the number of tensors taken."""
    from ..model.checkpoint import from_pretrained

    base = from_pretrained(folder, "cpu")
    if base.config.num_vertices != model.config.num_vertices:
        raise ImitatorError(f"--init {folder}: that model animates {base.config.num_vertices} vertices, the "
                            f"corpus has {model.config.num_vertices}; start from a model of the same head")
    mine = model.state_dict()
    take = {k: v for k, v in base.state_dict().items()
            if k in mine and mine[k].shape == v.shape and k != "template" and not k.startswith("style_embedding")}
    if not take:
        raise ImitatorError(f"--init {folder}: no weight has the shape of this run's model; use the same "
                            f"model settings (encoder, sizes) as that model")
    model.load_state_dict(take, strict=False)
    _new_context_blocks_as_identity(model, take)
    take.update(_wider_feature_map(model, base, take))
    table = base.style_embedding.weight.detach()  # (d, styles)
    with torch.no_grad():
        if base.config.styles == model.config.styles:
            model.style_embedding.weight.copy_(table)
        elif table.shape[0] == model.style_embedding.weight.shape[0]:
            model.style_embedding.weight.copy_(table.mean(1, keepdim=True).expand_as(model.style_embedding.weight))
    return len(take)


def _wider_feature_map(model, base, taken: dict) -> dict:
    """A feature map with more inputs than ``base``'s (an encoder phone branch's posteriors appended)
    starts with ``base``'s columns and zeros for the new ones, so the model starts as ``base``."""
    key = "audio_feature_map.weight"
    mine, theirs = model.audio_feature_map.weight, base.audio_feature_map.weight
    if key in taken or mine.shape[0] != theirs.shape[0] or mine.shape[1] <= theirs.shape[1]:
        return {}
    with torch.no_grad():
        mine.zero_()
        mine[:, :theirs.shape[1]].copy_(theirs)
    return {key: mine}


def _new_context_blocks_as_identity(model, taken: dict) -> None:
    """Zero the convolution of every encoder context block not warm-started: x + GELU(0) = x, and
    its gradient (GELU'(0) = 1/2) still lets the block learn. A new phone branch keeps its random
    start: it learns from its own loss, and the feature map does not see it yet."""
    from ..model.encoders import ContextBlock

    with torch.no_grad():
        for name, module in model.named_modules():
            if (isinstance(module, ContextBlock) and f"{name}.conv.weight" not in taken
                    and not name.startswith("audio_encoder.phone_branch.")):
                module.conv.weight.zero_()
                module.conv.bias.zero_()


def _summary(run: Path, epochs: int, best, best_epoch: int, stopped_early: bool, steps: int) -> dict:
    return {"run": str(run), "epochs": epochs, "steps": steps, "best_loss": best, "best_epoch": best_epoch,
            "stopped_early": stopped_early}


def _barrier(dist_: _Dist) -> None:
    if dist_.active:
        import torch.distributed as dist

        dist.barrier()


def _reduce_means(sums: list[float], names: tuple[str, ...], dist_: _Dist,
                  device: torch.device) -> dict[str, float]:
    t = torch.tensor(sums, dtype=torch.float64)
    if dist_.active:
        import torch.distributed as dist

        t = t.to(device) if device.type == "cuda" else t
        dist.all_reduce(t)
        t = t.cpu()
    n = max(float(t[-1]), 1.0)
    return {k: float(v) / n for k, v in zip(names, t[:-1])}


def _closures(corpus, utterances, cache_path: Path, dist_: _Dist, progress: bool) -> dict:
    """m/b/p intervals for the lip contact loss: phone timings, else detected (rank 0 detects and
    caches, the others read the cache)."""
    from ..data.closure_labels import corpus_closures

    if dist_.rank == 0:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        result = corpus_closures(corpus, utterances, cache_path, progress)
        _barrier(dist_)
        return result
    _barrier(dist_)
    return corpus_closures(corpus, utterances, cache_path, False)


def _check_files(train_items: _Items, val_items: _Items, cached: bool, progress: bool) -> None:
    """Read every utterance once before the first step (into the memory cache when it is on, else
    only their headers), so a truncated or unreadable file stops training before it starts, with a
    one-line error naming the file, instead of half way through an epoch."""
    from tqdm import tqdm

    from ..audio import audio_info

    for items in (train_items, val_items):
        for i in tqdm(range(len(items)), desc="reading the corpus", unit="utt", leave=False,
                      disable=not progress or not cached):
            if cached:
                items[i]
                continue
            utt = items.utterances[i]
            items.corpus.frame_count(utt)
            audio_info(utt.wav)


def _data_bytes(utterances, arkit: bool) -> int:
    """Rough in-memory size of the decoded data at 30 fps (audio as float32)."""
    total = 0
    for u in utterances:
        total += 2 * u.wav.stat().st_size
        target = u.arkit if arkit or u.vertices is None else u.vertices
        total += target.stat().st_size // 2
    return total


# --------------------------------------------------------------------------- command line

def add_commands(sub: argparse._SubParsersAction) -> None:
    """``python -m core train --data DIR --out RUN [--config C.json] [--resume] ...``."""
    from ..data.commands import DEFAULT_HEAD_CACHE as DEFAULT_CACHE

    p = sub.add_parser("train", help="train an Imitator model on a dataset folder",
                       description=__doc__.splitlines()[0] + " Run under torchrun for data-parallel "
                       "training.")
    p.add_argument("--data", type=Path, required=True, help="dataset folder (processed-VOCASET layout)")
    p.add_argument("--out", type=Path, required=True, help="run folder (best model, metrics, checkpoint)")
    p.add_argument("--config", type=Path, help="JSON: {\"model\": {ImitatorConfig fields}, \"train\": "
                                               "{TrainConfig fields}} or one flat object")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--init", type=Path, help="start from this model folder (same settings; new subjects "
                                             "start at its mean style)")
    p.add_argument("--epochs", type=int, help="number of epochs (default 100; also when resuming)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    p.add_argument("--no-lip-loss", action="store_true", help="leave out the lip contact loss (ablation)")
    p.add_argument("--batch-size", type=int, help="sequences per step and process (default 1)")
    p.add_argument("--lr", type=float, help="learning rate (default 1e-4)")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, help="constant (default, the reference) or cosine "
                                                               "(down to 5%% of --lr at the last step)")
    p.add_argument("--patience", type=int, help="epochs without improvement before stopping (default 20)")
    p.add_argument("--checkpoint-every", type=int, help="also checkpoint every N steps (default: epoch ends)")
    p.add_argument("--no-arkit", action="store_true", help="train on vertices_npy/ even when arkit/ exists")
    p.add_argument("--decoder-passes", type=int, help="0: autoregressive viseme decoder as the reference "
                                                      "(default); N: N parallel causal passes (fast)")
    p.add_argument("--augment", action="store_true", help="audio augmentation: telephone band, noise, "
                                                          "rooms, EQ, gain/clipping, mu-law codec, "
                                                          "vocal-tract length")
    p.add_argument("--style-lr-scale", type=float, help="the style table's learning rate relative to --lr "
                                                         "(default 1; each style is in few batches)")
    p.add_argument("--threads", type=int, help="CPU threads for torch per process")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                   help=f"where the default head is cached (default {DEFAULT_CACHE})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    model_settings, train_settings = read_config_file(args.config) if args.config else ({}, {})
    overrides = {"seed": args.seed, "batch_size": args.batch_size, "lr": args.lr, "patience": args.patience,
                 "lr_schedule": args.lr_schedule,
                 "checkpoint_every": args.checkpoint_every, "decoder_passes": args.decoder_passes,
                 "style_lr_scale": args.style_lr_scale}
    train_settings.update({k: v for k, v in overrides.items() if v is not None})
    if args.no_lip_loss:
        train_settings["lip_loss"] = False
    if args.no_arkit:
        train_settings["use_arkit"] = False
    if args.augment:
        train_settings["augment"] = True
    try:
        cfg = TrainConfig(**train_settings)
    except TypeError as e:
        raise ImitatorError(f"train config: {e}") from None
    if args.threads:
        torch.set_num_threads(args.threads)
    elif int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    given = bool(train_settings) or bool(model_settings)
    summary = train(args.data, args.out, model_settings=model_settings,
                    train_config=cfg if (given or not args.resume) else None, resume=args.resume,
                    epochs=args.epochs, device=args.device, progress=not args.quiet,
                    cache_dir=args.cache_dir, init=args.init)
    if int(os.environ.get("RANK", "0")) == 0:
        best = summary["best_loss"]
        print(f"{args.out}: {summary['epochs']} epochs{' (stopped early)' if summary['stopped_early'] else ''}"
              f", best loss {'n/a' if best is None else f'{best:.5g}'} at epoch {summary['best_epoch']}; "
              f"model in {args.out}/model.safetensors")
    return 0
