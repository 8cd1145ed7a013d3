"""Training losses: reconstruction, velocity and the lip contact loss, weighted by the config.

As in the official code (bala1144/Imitator ``imitator/pl_trainer.py``, ``utils/losses.py``,
``utils/mbp_loss.py``, config ``imitator_gen_ab_mbp_vel10.yaml``):

* reconstruction: ``MSELoss`` over all frames, vertices and coordinates;
* velocity: MSE of frame-to-frame differences, times ``velocity_weight`` (10);
* lip contact: ``mean(closed_frame_weight * w_t * (pred - target)^2)`` over the same elements, where
  ``w_t`` is 1 on a bilabial closure frame (m, b, p) and falls off as a Gaussian with sigma 1 frame
  over +-2 frames (the released per-sequence weights ``mbp_weights_win03_weight05`` hold exactly
  the values 1, exp(-1/2) = 0.607, exp(-2) = 0.135 and 0); ``closed_frame_weight`` is 5.
  The official term covers all vertices; ``vertex_weights`` can restrict it (e.g. to the lips).

The net loss is ``reconstruction_weight * rec + velocity_weight * vel + lip_contact`` (the official
``net_loss = rec_loss + mbp_loss + 10 * velocity_loss``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .config import ImitatorConfig


def contact_weights(closures: np.ndarray | torch.Tensor, sigma: float = 1.0, radius: int = 2) -> torch.Tensor:
    """(T,) per-frame weights from a (T,) closure mask (or (B, T)): 1 on closure frames, a Gaussian
    exp(-k^2 / 2 sigma^2) at k <= ``radius`` frames away; overlapping bumps take the maximum."""
    mask = torch.as_tensor(np.asarray(closures) if not isinstance(closures, torch.Tensor) else closures)
    mask = mask.to(torch.float32)
    squeeze = mask.ndim == 1
    mask = mask.reshape(-1, mask.shape[-1])  # (B, T)
    T = mask.shape[1]
    weights = mask.clone()
    for k in range(1, radius + 1):
        g = float(np.exp(-k * k / (2.0 * sigma * sigma)))
        if k < T:
            weights[:, k:] = torch.maximum(weights[:, k:], g * mask[:, :-k])  # k frames after
            weights[:, :-k] = torch.maximum(weights[:, :-k], g * mask[:, k:])  # k frames before
    return weights[0] if squeeze else weights


@dataclass
class LossTerms:
    total: torch.Tensor
    reconstruction: torch.Tensor
    velocity: torch.Tensor
    lip_contact: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        return {k: float(getattr(self, k).detach()) for k in ("total", "reconstruction", "velocity",
                                                               "lip_contact")}


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every frame, vertex and coordinate."""
    return torch.mean((pred - target) ** 2)


def velocity_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE of the frame-to-frame differences (dim 1 is time); 0 for a single frame."""
    if pred.shape[1] < 2:
        return pred.new_zeros(())
    return torch.mean(((pred[:, 1:] - pred[:, :-1]) - (target[:, 1:] - target[:, :-1])) ** 2)


def lip_contact_loss(pred: torch.Tensor, target: torch.Tensor, frame_weights: torch.Tensor,
                     vertex_weights: torch.Tensor | None = None) -> torch.Tensor:
    """mean(frame_weights[t] * vertex_weights[v] * (pred - target)^2) over (B, T, V, 3) tensors.

    ``frame_weights``: (T,) or (B, T) from ``contact_weights`` (unscaled); ``vertex_weights``: (V,)
    or None for all vertices (the official choice).
    """
    se = (pred - target) ** 2  # (B, T, V, 3)
    w = frame_weights.to(se).reshape(-1, se.shape[1], 1, 1)  # (B or 1, T, 1, 1)
    if vertex_weights is not None:
        w = w * vertex_weights.to(se).reshape(1, 1, -1, 1)
    return torch.mean(w * se)


def imitator_loss(pred: torch.Tensor, target: torch.Tensor, config: ImitatorConfig,
                  closures: torch.Tensor | np.ndarray | None = None,
                  vertex_weights: torch.Tensor | None = None) -> LossTerms:
    """All terms for (B, T, V, 3) predictions and targets; ``closures``: (T,) or (B, T) closure mask."""
    rec = reconstruction_loss(pred, target)
    vel = velocity_loss(pred, target)
    if closures is not None and config.lip_contact_weight > 0:
        fw = contact_weights(closures, config.lip_contact_sigma, config.lip_contact_radius)
        lip = config.lip_contact_weight * lip_contact_loss(pred, target, fw.to(pred.device), vertex_weights)
    else:
        lip = pred.new_zeros(())
    total = config.reconstruction_weight * rec + config.velocity_weight * vel + lip
    return LossTerms(total, rec, vel, lip)
