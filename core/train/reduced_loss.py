"""The training losses of ``core.model.losses`` computed without ever building vertex frames.

The motion decoder's last layer is linear: offsets = H W^T + b (H: (B, T, d) hidden activations,
W: (3V, d), b: (3V,)). The corpus's ARKit targets are linear too: offsets = A S (A: (B, T, K)
weights, S: (K, 3V) shape keys; template + A S is the target frame exactly). So the error of frame
t is E_t = X_t Z with X_t = [H_t, 1, A_t] and Z = [W^T; b; -S], and every squared vertex-space
norm is a quadratic form in the (d+1+K)^2 Gram matrix G = Z Z^T:

    reconstruction  sum_t X_t G X_t^T / (T 3V)
    velocity        sum_t dX_t G dX_t^T / ((T - 1) 3V)      dX_t = X_t - X_{t-1}
    lip contact     sum_t w_t X_t G_M X_t^T / (T 3V)        G_M = Z diag(vertex weights) Z^T

the same terms as ``imitator_loss``, for 3V (d+1+K)^2 operations once per step instead of
B T 3V d. The quadratic forms are evaluated in float64 (they subtract large, nearly equal terms).
"""

from __future__ import annotations

import numpy as np
import torch

from ..model.losses import contact_weights

__all__ = ["ReducedTargets", "reduced_loss"]


class ReducedTargets:
    """The constant part of the Gram matrices: the target shape keys S (K, 3V) and S S^T."""

    def __init__(self, shape_keys: np.ndarray | torch.Tensor, vertex_weights: np.ndarray | None = None,
                 device: torch.device | str = "cpu"):
        S = torch.as_tensor(np.asarray(shape_keys), dtype=torch.float64, device=device)
        self.keys = S.reshape(S.shape[0], -1)  # (K, 3V)
        self.vertex_dim = self.keys.shape[1]
        # per-coordinate weights of the lip contact term (None: every vertex, the official choice)
        self.coordinate_weights = None if vertex_weights is None else torch.as_tensor(
            np.repeat(np.asarray(vertex_weights, np.float64), 3), device=device)
        self.keys_gram = self.keys @ self.keys.T  # (K, K)
        self.keys_gram_weighted = None if self.coordinate_weights is None else \
            (self.keys * self.coordinate_weights) @ self.keys.T

    def gram(self, weight: torch.Tensor, bias: torch.Tensor, weighted: bool = False) -> torch.Tensor:
        """(d+1+K, d+1+K) G = Z Z^T (or Z diag(w) Z^T) for the final layer's (3V, d) weight, (3V,) bias."""
        Wt = torch.cat([weight.T, bias[None]], 0).to(torch.float64)  # (d+1, 3V)
        keys, keys_gram = self.keys, self.keys_gram
        if weighted and self.coordinate_weights is not None:
            left, keys_gram = Wt * self.coordinate_weights, self.keys_gram_weighted
        else:
            left = Wt
        top = left @ Wt.T  # (d+1, d+1)
        cross = -(left @ keys.T)  # (d+1, K)
        return torch.cat([torch.cat([top, cross], 1), torch.cat([cross.T, keys_gram], 1)], 0)


def _quadratic(X: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """(B, T) X_t G X_t^T for (B, T, n) X."""
    return ((X @ G) * X).sum(-1)


def reduced_loss(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, targets: torch.Tensor,
                 frame_mask: torch.Tensor, reduced: ReducedTargets, config,
                 closures: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Loss terms of (B, T, d) ``hidden`` against (B, T, K) ARKit ``targets``, each term a mean over
    the item's own frames (``frame_mask`` (B, T), True on real frames), then over the items: the
    same numbers as ``imitator_loss`` on the vertex frames of each item."""
    B, T, _ = hidden.shape
    X = torch.cat([hidden.to(torch.float64), hidden.new_ones(B, T, 1, dtype=torch.float64),
                   targets.to(torch.float64)], -1)  # (B, T, d+1+K)
    G = reduced.gram(weight, bias)
    mask = frame_mask.to(torch.float64)
    frames = mask.sum(1)  # (B,)
    D = reduced.vertex_dim
    per_frame = _quadratic(X, G)  # (B, T) squared error summed over vertices and coordinates
    rec = (per_frame * mask).sum(1) / (frames * D)
    if T > 1:
        dX = X[:, 1:] - X[:, :-1]
        pairs = mask[:, 1:] * mask[:, :-1]
        vel = (_quadratic(dX, G) * pairs).sum(1) / ((frames - 1).clamp(min=1) * D)
    else:
        vel = rec.new_zeros(B)
    if closures is not None and config.lip_contact_weight > 0:
        fw = contact_weights(closures.cpu(), config.lip_contact_sigma, config.lip_contact_radius)
        fw = fw.to(X.device, torch.float64).reshape(B, T)
        weighted = per_frame if reduced.coordinate_weights is None else _quadratic(X, reduced.gram(weight, bias, True))
        lip = config.lip_contact_weight * (fw * weighted * mask).sum(1) / (frames * D)
    else:
        lip = rec.new_zeros(B)
    total = config.reconstruction_weight * rec + config.velocity_weight * vel + lip
    return {"total": total.mean(), "reconstruction": rec.mean(), "velocity": vel.mean(),
            "lip_contact": lip.mean()}
