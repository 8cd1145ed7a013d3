"""One training step's forward pass, in the phases the training benchmark times.

    features   audio (B, N) -> log-mel (augmented in training) -> encoder -> (B, T, 64)
    visemes    viseme decoder: the reference's autoregressive rollout (``decoder_passes`` 0), or
               ``decoder_passes`` parallel causal passes, each fed the previous pass's outputs
    loss       motion decoder + losses: in vertex space (the reference), or exactly the same numbers
               from the hidden activations and ARKit targets through Gram matrices (``reduced``);
               with phone logits (a phone head on the audio features or the encoder's phone
               branch), ``phones``: their weighted cross-entropy, kept out of ``total`` (the motion
               loss) and added to it for the gradient

A ``TrainStep`` is a module, so DistributedDataParallel can wrap it and synchronise every weight
the step used.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..model.losses import imitator_loss
from .reduced_loss import ReducedTargets, reduced_loss

__all__ = ["StepBatch", "TrainStep", "phone_loss", "vertex_loss"]


@dataclass
class StepBatch:
    audio: torch.Tensor  # (B, N) 16 kHz
    target: torch.Tensor  # (B, T, K) ARKit weights (reduced) or (B, T, V, 3) vertices
    template: torch.Tensor  # (B, V, 3)
    style: torch.Tensor  # (B,) style indices
    lengths: list[int]  # real frames per item
    closures: torch.Tensor | None  # (B, T) bool
    seed: int | None = None  # of this step's audio augmentation
    phones: torch.Tensor | None = None  # (B, T) phone class per frame, -1 unknown (phone loss only)

    @property
    def frame_mask(self) -> torch.Tensor:  # (B, T) True on real frames
        T = self.target.shape[1]
        return torch.arange(T, device=self.target.device)[None] < torch.tensor(self.lengths,
                                                                               device=self.target.device)[:, None]


def vertex_loss(pred: torch.Tensor, batch: StepBatch, config) -> dict[str, torch.Tensor]:
    """The reference's loss terms on (B, T, V, 3) vertices, each item on its own frames, averaged."""
    sums = None
    for i, T in enumerate(batch.lengths):
        c = None if batch.closures is None else batch.closures[i, :T]
        terms = imitator_loss(pred[i:i + 1, :T], batch.target[i:i + 1, :T], config, c)
        parts = [terms.total, terms.reconstruction, terms.velocity, terms.lip_contact]
        sums = parts if sums is None else [a + b for a, b in zip(sums, parts)]
    n = len(batch.lengths)
    return {k: v / n for k, v in zip(("total", "reconstruction", "velocity", "lip_contact"), sums)}


def phone_loss(weight: float, logits: torch.Tensor, phones: torch.Tensor | None) -> torch.Tensor:
    """``weight`` x the mean cross-entropy of (B, T, classes) phone logits over the labelled frames
    (0, with the logits still in the graph, when no frame is labelled)."""
    logits = logits.flatten(0, 1)
    labels = phones.flatten() if phones is not None else None
    if labels is None or not bool((labels >= 0).any()):
        return logits.sum() * 0.0
    return weight * F.cross_entropy(logits, labels, ignore_index=-1)


class TrainStep(nn.Module):
    """The model's training forward pass: ``forward(batch) -> loss terms``."""

    def __init__(self, model: nn.Module, decoder_passes: int = 0, grad_passes: int = 1,
                 reduced: ReducedTargets | None = None, augment=None):
        super().__init__()
        self.model = model
        self.decoder_passes, self.grad_passes = int(decoder_passes), int(grad_passes)
        self.reduced = reduced
        self.augment = augment  # core.train.augment.Augmenter or None

    def encode(self, batch: StepBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T, d) audio features and (B, T, classes) phone logits or None (``map_features``)."""
        model, T = self.model, batch.target.shape[1]
        encoder = model.audio_encoder
        if self.augment is None or not self.training or batch.seed is None or not hasattr(encoder, "from_log_mel"):
            return model.map_features(encoder(batch.audio, T))
        mel = self.augment(batch.audio, encoder, batch.seed)
        return model.map_features(encoder.from_log_mel(mel, T))

    def features(self, batch: StepBatch) -> torch.Tensor:  # (B, T, d)
        return self.encode(batch)[0]

    def visemes(self, features: torch.Tensor) -> torch.Tensor:  # (B, T, d)
        decoder = self.model.viseme_decoder
        if self.decoder_passes <= 0:
            return decoder(features)
        return decoder.parallel(features, self.decoder_passes, self.grad_passes)

    def loss(self, visemes: torch.Tensor, batch: StepBatch) -> dict[str, torch.Tensor]:
        model = self.model
        config = model.config
        closures = batch.closures
        if self.reduced is not None:
            hidden = model.motion_weights(visemes, model.style_vector(batch.style, len(batch.lengths)))
            final = model.motion_decoder.final
            return reduced_loss(hidden, final.weight, final.bias, batch.target, batch.frame_mask, self.reduced,
                                config, closures)
        offsets = model.offsets(visemes, model.style_vector(batch.style, len(batch.lengths)))
        return vertex_loss(offsets + batch.template[:, None], batch, config)

    def forward(self, batch: StepBatch) -> dict[str, torch.Tensor]:
        features, logits = self.encode(batch)
        terms = self.loss(self.visemes(features), batch)
        if logits is not None:
            terms["phones"] = phone_loss(self.model.config.phone_loss_weight, logits, batch.phones)
        return terms
