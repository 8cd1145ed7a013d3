"""PyTorch view of a corpus folder: one utterance per item, loaded when asked for.

An item is a dict:
    audio      (N,) float32 mono at ``sample_rate``
    vertices   (T, V, 3) float32 metres at ``fps`` (offsets from the template with ``offsets``)
    template   (V, 3) float32, the subject's neutral face
    subject    int, index of the subject among ``style_subjects`` (the training subjects, whose
               one-hot style the model learns); -1 for a subject never trained on
    subject_name, sentence, key   str
    arkit      (T, 52) float32 ARKit weights at ``fps``, or None without an arkit/ folder
``collate`` pads a list of items to the longest one and adds lengths and masks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..audio import AUDIO_RATE
from ..errors import ImitatorError
from .vocaset import SPLITS, Corpus, open_corpus

__all__ = ["TalkingHeadDataset", "collate"]


class TalkingHeadDataset(Dataset):
    """Utterances of one split of a corpus, at the model's fps and audio rate."""

    def __init__(self, corpus: Corpus | str | os.PathLike, split: str = "train", *,
                 fps: float = 30.0, sample_rate: int = AUDIO_RATE, offsets: bool = False,
                 style_subjects: Sequence[str] | None = None):
        if split not in SPLITS:
            raise ImitatorError(f"unknown split '{split}'; choose one of {', '.join(SPLITS)}")
        self.corpus = corpus if isinstance(corpus, Corpus) else open_corpus(corpus)
        self.split = split
        self.items = list(self.corpus.splits[split])
        self.fps = float(fps)
        self.sample_rate = int(sample_rate)
        self.offsets = offsets
        self.style_subjects = list(style_subjects) if style_subjects is not None \
            else list(self.corpus.style_subjects)
        self._style_index = {s: i for i, s in enumerate(self.style_subjects)}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        utt = self.items[index]
        template = self.corpus.templates[utt.subject]
        vertices = self.corpus.read_vertices(utt, self.fps)
        if self.offsets:
            vertices = vertices - template
        arkit = self.corpus.read_arkit(utt, self.fps)
        if arkit is not None:  # same grid as the vertices; a frame of rounding is allowed
            if abs(len(arkit) - len(vertices)) > 1:
                raise ImitatorError(f"{utt.arkit}: {len(arkit)} frames of ARKit weights but "
                                    f"{len(vertices)} of vertices at {self.fps:g} fps; regenerate it")
            arkit = _fit_length(arkit, len(vertices))
        return {
            "audio": torch.from_numpy(self.corpus.read_audio(utt, self.sample_rate)),
            "vertices": torch.from_numpy(np.ascontiguousarray(vertices)),
            "template": torch.from_numpy(template.copy()),
            "subject": self._style_index.get(utt.subject, -1),
            "subject_name": utt.subject,
            "sentence": utt.sentence,
            "key": utt.key,
            "arkit": None if arkit is None else torch.from_numpy(np.ascontiguousarray(arkit)),
        }


def _fit_length(a: np.ndarray, n: int) -> np.ndarray:
    if len(a) >= n:
        return a[:n]
    return np.concatenate([a, np.repeat(a[-1:], n - len(a), axis=0)])


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Pad variable-length items: audio (B, N_max), vertices (B, T_max, V, 3), masks and lengths.

    ``frame_mask`` (B, T_max) and ``audio_mask`` (B, N_max) are True on real data; ``arkit`` is
    (B, T_max, 52) when every item has weights, else None.
    """
    if not batch:
        raise ValueError("collate needs at least one item")
    audio_len = torch.tensor([len(b["audio"]) for b in batch])
    frame_len = torch.tensor([len(b["vertices"]) for b in batch])
    arkit = None
    if all(b["arkit"] is not None for b in batch):
        arkit = _pad([b["arkit"] for b in batch], int(frame_len.max()))
    return {
        "audio": _pad([b["audio"] for b in batch], int(audio_len.max())),
        "audio_lengths": audio_len,
        "audio_mask": torch.arange(int(audio_len.max()))[None] < audio_len[:, None],
        "vertices": _pad([b["vertices"] for b in batch], int(frame_len.max())),
        "frame_lengths": frame_len,
        "frame_mask": torch.arange(int(frame_len.max()))[None] < frame_len[:, None],
        "template": torch.stack([b["template"] for b in batch]),
        "subject": torch.tensor([b["subject"] for b in batch], dtype=torch.long),
        "subject_name": [b["subject_name"] for b in batch],
        "sentence": [b["sentence"] for b in batch],
        "key": [b["key"] for b in batch],
        "arkit": arkit,
    }


def _pad(tensors: list[torch.Tensor], length: int) -> torch.Tensor:
    """Stack along a new batch axis, zero-padding the first axis to ``length``."""
    out = tensors[0].new_zeros((len(tensors), length) + tuple(tensors[0].shape[1:]))
    for i, t in enumerate(tensors):
        out[i, :len(t)] = t
    return out
