"""Motion transfer through a head fit: an Animation of the model head becomes the same motion on
the target head, and a clip recorded on the target becomes a clip of the model head.

Only the K basis shapes and the bias cross over (each sampled at the target vertex's point of the
model surface, turned by the local rotation of the fit and scaled by the fit's scale), so the
target's animation is again ``weights @ basis + bias``: the bake stays exact and <= 65 keys.
Contact: where the model's lip centres meet, the weights get the smallest correction (under the
weights' own covariance, as closure-aware decoding does on the model head) that makes the
target's own lip centres meet as well.
"""

from __future__ import annotations

import numpy as np

from ..animation import Animation
from ..errors import ImitatorError
from .head_fit import HeadFit

CLOSED_M = 1e-3  # model lip centres this close (source units): the lips are closed ...
OPEN_M = 2e-3  # ... and from here on open; the correction fades in between
TOUCH_M = 0.2e-3  # closed target lips are never brought closer than this (source units)


def transfer_offsets(fit: HeadFit, offsets: np.ndarray) -> np.ndarray:
    """(K, Vs, 3) model-head offsets -> (K, Vt, 3) target offsets."""
    offsets = np.asarray(offsets, np.float32)
    if offsets.ndim != 3 or offsets.shape[2] != 3 or offsets.shape[1] <= int(fit.corners.max()):
        raise ImitatorError(f"offsets of shape {offsets.shape} do not fit the model head of the head fit "
                            f"for '{fit.target_name}'")
    sampled = np.einsum("vj,kvjc->kvc", fit.bary, offsets[:, fit.corners])  # (K, Vt, 3)
    return (fit.scale * np.einsum("vab,kvb->kva", fit.rotation, sampled)).astype(np.float32)


def transfer_animation(anim: Animation, fit: HeadFit, target_rest: np.ndarray,
                       lip_centres: tuple[int, int] | None, contact: bool = True) -> Animation:
    """``anim`` (on the model head) as an Animation on the target (``target_rest`` (Vt, 3)).

    ``lip_centres``: the model head's upper and lower lip centre vertices (None: no contact
    correction)."""
    target_rest = np.asarray(target_rest, np.float32)
    if target_rest.shape != (fit.num_target_vertices, 3):
        raise ImitatorError(f"the head fit for '{fit.target_name}' maps {fit.num_target_vertices} vertices, "
                            f"the target has {len(target_rest)}; run Fit Head on this mesh")
    both = transfer_offsets(fit, np.concatenate([anim.basis, anim.bias[None]]))
    basis, bias = both[:-1], both[-1]
    weights = anim.weights
    if contact and lip_centres is not None and anim.num_frames:
        weights = reimpose_contact(anim, lip_centres, basis, bias, target_rest,
                                   target_lip_points(fit, lip_centres), fit.scale)
    return Animation(target_rest, basis, weights.astype(np.float32), bias, anim.fps, anim.max_error)


def lip_gap(basis: np.ndarray, bias: np.ndarray, template: np.ndarray, upper, lower
            ) -> tuple[np.ndarray, np.ndarray]:
    """The upper-minus-lower lip point vector as A w + g0: (A (3, K), g0 (3,)). A point is a
    vertex index or (corners (3,), barycentric (3,)) on a triangle."""

    at = _at_point
    A = (at(basis, upper) - at(basis, lower)).T.astype(np.float64)
    g0 = (at(template + bias, upper) - at(template + bias, lower)).astype(np.float64)
    return A, g0


def _at_point(arr: np.ndarray, point) -> np.ndarray:
    """``arr`` (..., V, 3) at a vertex index or a (corners, barycentric) surface point -> (..., 3)."""
    if np.ndim(point) == 0:
        return arr[..., int(point), :]
    corners, bary = point
    return np.einsum("j,...jc->...c", np.asarray(bary, np.float64), arr[..., np.asarray(corners), :])


def target_lip_points(fit: HeadFit, source_centres) -> tuple:
    """The target's own lip centres: the points of its surface the model's lip centres lie on."""
    return tuple((fit.back_corners[int(c)], fit.back_bary[int(c)]) for c in source_centres)


def reimpose_contact(anim: Animation, source_centres, basis: np.ndarray, bias: np.ndarray,
                     target_rest: np.ndarray, target_points, scale: float = 1.0) -> np.ndarray:
    """(T, K) weights with the target's lip centres meeting wherever the model's meet, brought
    as close as the model's are (so a transfer onto the model head itself changes nothing): each
    lip goes half the way, by the weight change that moves the target's vertices least."""
    w = anim.weights.astype(np.float64)
    As, gs0 = lip_gap(anim.basis, anim.bias, anim.template, *source_centres)
    gap_s = np.linalg.norm(w @ As.T + gs0, axis=1)  # (T,)
    strength = np.clip((OPEN_M - gap_s) / (OPEN_M - CLOSED_M), 0.0, 1.0)
    if not strength.any():
        return anim.weights
    At, gt0 = lip_gap(basis, bias, target_rest, *target_points)
    gap_t = w @ At.T + gt0  # (T, 3)
    size = np.linalg.norm(gap_t, axis=1, keepdims=True)
    keep = np.maximum(gap_s, TOUCH_M)[:, None] * scale  # as close as the model's lips, no closer
    excess = gap_t * np.clip(1 - keep / np.maximum(size, 1e-30), 0, 1)
    # each lip goes half way: the upper point by -excess/2, the lower by +excess/2
    C = np.concatenate([_at_point(basis, target_points[0]).T, _at_point(basis, target_points[1]).T])  # (6, K)
    flat = basis.reshape(len(basis), -1).astype(np.float64)
    Q = flat @ flat.T  # (K, K): vertex-space size of a weight change
    S = np.linalg.inv(Q + 1e-6 * max(np.trace(Q), 1e-30) / len(Q) * np.eye(len(Q)))
    M = C @ S @ C.T
    M += 1e-9 * max(np.trace(M), 1e-30) * np.eye(6)
    K = S @ C.T @ np.linalg.inv(M)  # (K, 6)
    moves = np.concatenate([-0.5 * excess, 0.5 * excess], axis=1)  # (T, 6)
    return (w + (strength[:, None] * moves) @ K.T).astype(anim.weights.dtype)


def clip_to_model(frames: np.ndarray, fit: HeadFit, model_template: np.ndarray,
                  neutral: np.ndarray | None = None) -> np.ndarray:
    """(T, Vt, 3) frames of a clip on the target -> (T, Vs, 3) frames on the model head.

    Offsets from ``neutral`` (default: the first frame, the mesh the fit was made on) are sampled
    at each model vertex's point of the target, turned back and scaled to model units."""
    frames = np.asarray(frames, np.float32)
    if frames.ndim != 3 or frames.shape[1:] != (fit.num_target_vertices, 3):
        raise ImitatorError(f"clip frames of shape {frames.shape} do not match the head fit for "
                            f"'{fit.target_name}' ({fit.num_target_vertices} vertices)")
    model_template = np.asarray(model_template, np.float32)
    if model_template.shape != (len(fit.back_corners), 3):
        raise ImitatorError(f"the head fit for '{fit.target_name}' was made for a model head of "
                            f"{len(fit.back_corners)} vertices, not {len(model_template)}")
    base = frames[0] if neutral is None else np.asarray(neutral, np.float32)
    offsets = frames - base  # (T, Vt, 3)
    sampled = np.einsum("vj,tvjc->tvc", fit.back_bary, offsets[:, fit.back_corners])  # (T, Vs, 3)
    return model_template + np.einsum("vab,tvb->tva", fit.back_rotation, sampled) / fit.scale
