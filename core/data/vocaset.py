"""Reader of the processed-VOCASET folder layout, which our synthetic corpus also writes.

    root/wav/<subject>_<sentence>.wav
    root/vertices_npy/<subject>_<sentence>.npy   (T, 3V) float32, metres, 60 fps in VOCASET
    root/templates.pkl                           {subject: (V, 3)}, read by the restricted unpickler
    root/dataset.json                            optional (ours): fps, units, topology, splits,
                                                 per-utterance transcript and phoneme timings
    root/arkit/<subject>_<sentence>.npy|.csv     optional: ARKit weights (T, 52) at the same fps

The compact layout (our synthetic corpus by default) has no vertices_npy/ but arkit/ and
``shape_keys.npy`` (52, V, 3): each frame is template + weights @ shape keys, exactly, at about
1/50 of the disk space; ``read_vertices`` expands it.

Opening reads only the file lists, templates.pkl and dataset.json; vertex and audio files are read
one utterance at a time (``read_vertices``, ``read_audio``), resampled to the caller's fps.
Without dataset.json the vertex fps is VOCASET's 60 and splits follow VOCASET's subject lists
(FaceFormer/Imitator: 8 train, 2 val, 2 test subjects) or, for other subject names, a seeded split
by subject. Test subjects are never training subjects (dataset.json may put held-out sentences
of training subjects in val).
"""

from __future__ import annotations

import functools
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import AUDIO_RATE, load_audio
from ..errors import ImitatorError
from ..faces.default_head import ARKIT_SHAPE_NAMES
from ..safe_pickle import safe_load
from .clips import resample_frames
from .livelink import read_arkit_csv

log = logging.getLogger(__name__)

__all__ = ["SPLITS", "VOCASET_FPS", "VOCASET_SENTENCES", "VOCASET_SUBJECTS", "Corpus", "Utterance",
           "open_corpus"]

SPLITS = ("train", "val", "test")
SHAPE_KEYS = "shape_keys.npy"  # compact layout: (52, V, 3) ARKit shape keys of the head
VOCASET_FPS = 60.0
VOCASET_SUBJECTS = {  # the split of FaceFormer and Imitator
    "train": ("FaceTalk_170728_03272_TA", "FaceTalk_170904_00128_TA", "FaceTalk_170725_00137_TA",
              "FaceTalk_170915_00223_TA", "FaceTalk_170811_03274_TA", "FaceTalk_170913_03279_TA",
              "FaceTalk_170904_03276_TA", "FaceTalk_170912_03278_TA"),
    "val": ("FaceTalk_170811_03275_TA", "FaceTalk_170908_03277_TA"),
    "test": ("FaceTalk_170809_00138_TA", "FaceTalk_170731_00024_TA"),
}
VOCASET_SENTENCES = {"train": range(1, 41), "val": range(21, 41), "test": range(21, 41)}
_HOLDOUT = {"val": 0.1, "test": 0.2}  # share of subjects in the seeded fallback split


@dataclass(frozen=True)
class Utterance:
    key: str  # "<subject>_<sentence>", the file stem
    subject: str
    sentence: str
    wav: Path
    vertices: Path | None  # None in a compact corpus: the frames are template + arkit @ shape keys
    arkit: Path | None = None
    meta: dict = field(default_factory=dict, compare=False, hash=False)  # from dataset.json

    @property
    def transcript(self) -> str | None:
        return self.meta.get("transcript", self.meta.get("text"))

    @property
    def phonemes(self) -> list | None:
        """Phoneme timings as written by the corpus generator (e.g. [phone, start_s, end_s])."""
        return self.meta.get("phonemes", self.meta.get("phones"))


@dataclass
class Corpus:
    root: Path
    fps: float  # of the vertex files
    templates: dict[str, np.ndarray]  # subject -> (V, 3) float32, metres
    utterances: list[Utterance]
    splits: dict[str, list[Utterance]]
    info: dict[str, Any]  # dataset.json, {} when absent
    scale: float = 1.0  # file units -> metres
    style_subjects: list[str] = field(default_factory=list)  # one-hot style order (train subjects)

    @property
    def subjects(self) -> list[str]:
        return sorted({u.subject for u in self.utterances})

    def split_subjects(self, split: str) -> list[str]:
        return sorted({u.subject for u in self.splits[split]})

    @property
    def num_vertices(self) -> int:
        return int(next(iter(self.templates.values())).shape[0])

    @property
    def compact(self) -> bool:
        """ARKit weights + shape keys instead of vertex files (``shape_keys.npy``, no vertices_npy/)."""
        return self.shape_keys is not None and not (self.root / "vertices_npy").is_dir()

    @functools.cached_property
    def shape_keys(self) -> np.ndarray | None:
        """(52, V, 3) float32 metres: the head's ARKit shape keys that the arkit/ weights drive, when
        the corpus ships them (``shape_keys.npy``), else None."""
        path = self.root / SHAPE_KEYS
        if not path.is_file():
            return None
        try:
            keys = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ImitatorError(f"{path}: not a readable .npy ({' '.join(str(exc).split())}); "
                                f"regenerate the dataset") from None
        want = (len(ARKIT_SHAPE_NAMES), self.num_vertices, 3)
        if keys.shape != want or not np.isfinite(keys).all():
            raise ImitatorError(f"{path}: shape keys have shape {keys.shape}{'' if keys.shape != want else ' and hold NaN or Inf'}"
                                f", expected {want} finite values (the head of templates.pkl); regenerate the dataset")
        return keys.astype(np.float32) * np.float32(self.scale)

    def read_vertices(self, utt: Utterance, fps: float | None = None) -> np.ndarray:
        """(T, V, 3) float32 metres, resampled from the corpus fps to ``fps`` when given."""
        if utt.vertices is None:  # compact corpus: expand the ARKit weights
            weights = self.read_arkit(utt, fps)
            return self.templates[utt.subject] + np.einsum("tk,kvc->tvc", weights, self.shape_keys)
        try:
            data = np.load(utt.vertices, allow_pickle=False)
        except FileNotFoundError:
            raise ImitatorError(f"{utt.vertices}: vertex file missing; restore the dataset") from None
        except (OSError, ValueError) as exc:
            raise ImitatorError(f"{utt.vertices}: not a readable .npy ({' '.join(str(exc).split())})"
                                f"; regenerate or re-download the dataset") from None
        nv = self.num_vertices
        if data.ndim == 2 and data.shape[1] == 3 * nv:
            data = data.reshape(len(data), nv, 3)
        if data.ndim != 3 or data.shape[1:] != (nv, 3) or len(data) == 0:
            raise ImitatorError(f"{utt.vertices}: vertices have shape {data.shape}, expected (T, "
                                f"{3 * nv}) like templates.pkl ({nv} vertices); fix the dataset")
        bad = ~np.isfinite(data).reshape(len(data), -1).all(axis=1)
        if bad.any():
            raise ImitatorError(f"{utt.vertices}: frame {int(np.argmax(bad))} holds NaN or Inf; "
                                f"regenerate this utterance")
        data = data.astype(np.float32) * np.float32(self.scale)
        return data if fps is None else resample_frames(data, self.fps, fps)

    def read_audio(self, utt: Utterance, sr: int = AUDIO_RATE) -> np.ndarray:
        return load_audio(utt.wav, sr)

    def read_arkit(self, utt: Utterance, fps: float | None = None) -> np.ndarray | None:
        """(T, 52) ARKit weights in ARKIT_SHAPE_NAMES order, or None without an arkit/ file."""
        if utt.arkit is None:
            return None
        if utt.arkit.suffix == ".csv":
            take = read_arkit_csv(utt.arkit, self.fps)
            weights, rate = take.weights, take.fps
        else:
            try:
                weights, rate = np.load(utt.arkit, allow_pickle=False).astype(np.float32), self.fps
            except (OSError, ValueError) as exc:
                raise ImitatorError(f"{utt.arkit}: not a readable .npy ({exc}); regenerate it") \
                    from None
            if weights.ndim != 2 or weights.shape[1] != len(ARKIT_SHAPE_NAMES):
                raise ImitatorError(f"{utt.arkit}: ARKit weights have shape {weights.shape}, "
                                    f"expected (T, {len(ARKIT_SHAPE_NAMES)}); regenerate it")
        return weights if fps is None else resample_frames(weights, rate, fps)

    def frame_count(self, utt: Utterance) -> int:
        """Frames at the corpus fps, from the .npy header alone (vertex or, compact, ARKit file)."""
        path = utt.vertices if utt.vertices is not None else utt.arkit
        if path.suffix == ".csv":
            return len(self.read_arkit(utt))
        try:
            return int(np.load(path, mmap_mode="r", allow_pickle=False).shape[0])
        except (OSError, ValueError) as exc:
            raise ImitatorError(f"{path}: not a readable .npy ({' '.join(str(exc).split())}); regenerate "
                                f"or re-download the dataset") from None


# ------------------------------------------------------------------------------------------------


def open_corpus(root: str | os.PathLike, *, seed: int = 0) -> Corpus:
    """Index a dataset folder (lists, templates, dataset.json); reads no vertex or audio data."""
    root = Path(root)
    if not root.is_dir():
        raise ImitatorError(f"{root}: dataset folder not found; check the path")
    info = _read_info(root / "dataset.json")
    compact = not (root / "vertices_npy").exists() and (root / SHAPE_KEYS).exists()
    for needed in ("wav", "arkit" if compact else "vertices_npy", "templates.pkl"):
        if not (root / needed).exists():
            raise ImitatorError(f"{root}: dataset folder lacks '{needed}'; expected wav/, templates.pkl and "
                                f"either vertices_npy/ (processed VOCASET layout) or arkit/ + {SHAPE_KEYS} "
                                f"(compact layout)")
    templates = _read_templates(root / "templates.pkl")
    scale = _scale(root, info)
    templates = {k: v * np.float32(scale) for k, v in templates.items()}
    fps = float(info.get("fps", VOCASET_FPS))
    if not (np.isfinite(fps) and fps > 0):
        raise ImitatorError(f"{root / 'dataset.json'}: fps is {info.get('fps')}; fix it")
    utterances = _index(root, templates, info)
    splits = _splits(root, utterances, info, seed)
    return Corpus(root, fps, templates, utterances, splits, info, scale,
                  _style_subjects(utterances, splits, info))


def _style_subjects(utterances: list[Utterance], splits: dict, info: dict) -> list[str]:
    """Training subjects in the order of the model's one-hot style input.

    VOCASET keeps the reference's order (all 8, so official checkpoints map one to one); a
    dataset.json listing train subjects keeps its order; otherwise sorted.
    """
    train = {u.subject for u in splits["train"]}
    if "splits" not in info and train <= set(VOCASET_SUBJECTS["train"]):
        return list(VOCASET_SUBJECTS["train"])
    spec = info.get("splits", {}).get("train")
    listed = spec.get("subjects", []) if isinstance(spec, dict) else spec if isinstance(spec, list) \
        else []
    ordered = [s for s in dict.fromkeys(map(str, listed)) if s in train]
    return ordered + sorted(train - set(ordered))


def _read_info(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ImitatorError(f"{path}: not readable JSON ({' '.join(str(exc).split())}); "
                            f"regenerate the dataset or delete the file") from None
    if not isinstance(info, dict):
        raise ImitatorError(f"{path}: expected a JSON object; regenerate the dataset")
    return info


def _read_templates(path: Path) -> dict[str, np.ndarray]:
    data = safe_load(path)
    if not isinstance(data, dict) or not data:
        raise ImitatorError(f"{path}: expected a dictionary subject -> (V, 3) template, got "
                            f"{type(data).__name__}; regenerate the dataset")
    templates, sizes = {}, set()
    for subject, value in data.items():
        try:
            v = np.asarray(value)
        except (ValueError, TypeError):  # ragged lists and the like
            v = np.asarray(None)
        if v.ndim == 1 and v.size % 3 == 0:
            v = v.reshape(-1, 3)
        if v.ndim != 2 or v.shape[1] != 3 or not np.issubdtype(v.dtype, np.number):
            raise ImitatorError(f"{path}: template of '{subject}' has shape {v.shape}, expected "
                                f"(V, 3); regenerate the dataset")
        if not np.isfinite(v).all():
            raise ImitatorError(f"{path}: template of '{subject}' holds NaN or Inf; regenerate it")
        templates[str(subject)] = v.astype(np.float32)
        sizes.add(v.shape[0])
    if len(sizes) > 1:
        raise ImitatorError(f"{path}: templates have different vertex counts {sorted(sizes)}; "
                            f"all subjects must share one topology")
    return templates


def _scale(root: Path, info: dict) -> float:
    units = str(info.get("units", "m")).lower()
    scales = {"m": 1.0, "metre": 1.0, "metres": 1.0, "meter": 1.0, "meters": 1.0,
              "mm": 1e-3, "millimetre": 1e-3, "millimetres": 1e-3, "millimeters": 1e-3}
    if units not in scales:
        raise ImitatorError(f"{root / 'dataset.json'}: units '{units}' unknown; use \"m\" or \"mm\"")
    return scales[units]


def _split_key(key: str, subjects: list[str]) -> tuple[str, str] | None:
    """'<subject>_<sentence>' -> (subject, sentence); subjects may contain underscores."""
    for s in subjects:  # longest first
        if key.startswith(s + "_") and len(key) > len(s) + 1:
            return s, key[len(s) + 1:]
    return None


def _meta(info: dict) -> dict[str, dict]:
    """dataset.json's per-utterance entries by key (a mapping, or a list of dicts with an id)."""
    entries = info.get("utterances", {})
    if isinstance(entries, dict):
        return {str(k): v for k, v in entries.items() if isinstance(v, dict)}
    out = {}
    for e in entries if isinstance(entries, list) else []:
        if isinstance(e, dict):
            key = e.get("id", e.get("key", e.get("name")))
            if key is None and "subject" in e and "sentence" in e:
                key = f"{e['subject']}_{e['sentence']}"
            if key is not None:
                out[str(key)] = e
    return out


def _index(root: Path, templates: dict, info: dict) -> list[Utterance]:
    subjects = sorted(templates, key=len, reverse=True)
    wavs = {p.stem: p for p in (root / "wav").glob("*.wav")}
    arkit_dir = root / "arkit"
    arkit = {p.stem: p for p in sorted(arkit_dir.glob("*.csv")) + sorted(arkit_dir.glob("*.npy"))} \
        if arkit_dir.is_dir() else {}
    compact = not (root / "vertices_npy").is_dir()
    # compact layout: the ARKit weights are the motion; stand-in "vertex" entries point at them
    npys = {k: None for k in arkit} if compact else {p.stem: p for p in (root / "vertices_npy").glob("*.npy")}
    motion_dir = "arkit" if compact else "vertices_npy"
    meta = _meta(info)
    missing = sorted(k for k in meta if k not in wavs or k not in npys)
    if missing:  # our generator lists what it wrote: a gap means a damaged corpus
        k = missing[0]
        gone = root / "wav" / f"{k}.wav" if k not in wavs else root / motion_dir / f"{k}.npy"
        raise ImitatorError(f"{gone}: listed in dataset.json but missing ({len(missing)} "
                            f"utterances affected); regenerate the dataset")
    unpaired = sorted(set(wavs) ^ set(npys))
    if unpaired:
        log.warning("%s: %d files without their wav/npy partner skipped (e.g. %s)", root,
                    len(unpaired), unpaired[0])
    utterances, unknown = [], []
    for key in sorted(set(wavs) & set(npys)):
        parts = _split_key(key, subjects)
        if parts is None:
            unknown.append(key)
            continue
        utterances.append(Utterance(key, parts[0], parts[1], wavs[key], npys[key], arkit.get(key),
                                    meta.get(key, {})))
    if unknown:
        log.warning("%s: %d utterances of subjects without a template skipped (e.g. %s)", root,
                    len(unknown), unknown[0])
    if not utterances:
        raise ImitatorError(f"{root}: no utterance has both wav/<subject>_<sentence>.wav and "
                            f"{motion_dir}/<subject>_<sentence>.npy for a subject in templates.pkl")
    return utterances


def _splits(root: Path, utterances: list[Utterance], info: dict, seed: int
            ) -> dict[str, list[Utterance]]:
    subjects = sorted({u.subject for u in utterances})
    if "splits" in info:
        splits = {s: _select(root, utterances, info["splits"].get(s, []), s) for s in SPLITS}
    elif set(subjects) & set(VOCASET_SUBJECTS["train"]):
        splits = {s: [u for u in utterances if u.subject in VOCASET_SUBJECTS[s]
                      and _sentence_number(u.sentence) in VOCASET_SENTENCES[s]] for s in SPLITS}
    else:
        order = [subjects[i] for i in np.random.default_rng(seed).permutation(len(subjects))]
        n = len(order)
        n_test = max(1, round(_HOLDOUT["test"] * n)) if n >= 2 else 0
        n_val = max(1, round(_HOLDOUT["val"] * n)) if n >= 3 else 0
        chosen = {"test": order[:n_test], "val": order[n_test:n_test + n_val],
                  "train": order[n_test + n_val:]}
        splits = {s: [u for u in utterances if u.subject in chosen[s]] for s in SPLITS}
    overlap = sorted({u.subject for u in splits["train"]} & {u.subject for u in splits["test"]})
    if overlap:
        raise ImitatorError(f"{root / 'dataset.json'}: subject {overlap[0]} is in both train and "
                            f"test; test subjects must never be trained on")
    if not splits["train"]:
        raise ImitatorError(f"{root}: the train split is empty; add subjects or fix the splits")
    return splits


def _select(root: Path, utterances: list[Utterance], spec: Any, split: str) -> list[Utterance]:
    """Utterances named by a split entry: subject names and/or utterance keys, or
    {"subjects": [...], "sentences": [...]}."""
    if isinstance(spec, dict):
        subjects = set(map(str, spec.get("subjects", [])))
        sentences = set(map(str, spec["sentences"])) if "sentences" in spec else None
        keys = set(map(str, spec.get("utterances", [])))
        return [u for u in utterances if u.key in keys or (
            u.subject in subjects and (sentences is None or u.sentence in sentences))]
    if isinstance(spec, list):
        names = set(map(str, spec))
        return [u for u in utterances if u.subject in names or u.key in names]
    raise ImitatorError(f"{root / 'dataset.json'}: split '{split}' must be a list of subjects or "
                        f"utterances, or {{\"subjects\": [...]}}; regenerate the dataset")


def _sentence_number(sentence: str) -> int:
    digits = "".join(c for c in sentence[-2:] if c.isdigit())
    return int(digits) if digits else -1
