"""ARKit weights for a vertex animation on a head with the 52 ARKit shape keys.

Per frame, the weights w in [0, 1]^52 minimising |template + w @ keys - vertices|^2 (bounded least
squares). The problem is reduced to the keys' 52 x 52 Gram matrix first (G = K K^T = R^T R), so each
frame is a 52-variable solve whatever the vertex count; the largest vertex error of the fit is
reported, because 52 semantic keys do not span every motion a model can produce.
"""

from __future__ import annotations

import numpy as np

from .errors import ImitatorError
from .faces.default_head import ARKIT_SHAPE_NAMES

__all__ = ["fit_arkit_weights"]


def fit_arkit_weights(frames, head, lower: float = 0.0, upper: float = 1.0,
                      chunk: int = 512) -> tuple[np.ndarray, float]:
    """(T, 52) weights in ``ARKIT_SHAPE_NAMES`` order and the largest vertex error (metres).

    ``frames``: an ``Animation`` on the head (or any object with ``vertices(frames)`` and
    ``num_frames``), or a (T, V, 3) array of vertices.
    """
    from scipy.optimize import lsq_linear

    keys = [n for n in ARKIT_SHAPE_NAMES if n in head.shape_keys]
    if not keys:
        raise ImitatorError(f"head '{head.name}' has no ARKit shape keys; ARKit weights need the "
                            f"default head (or a head with the 52 ARKit keys)")
    index = [ARKIT_SHAPE_NAMES.index(n) for n in keys]
    K = np.stack([np.asarray(head.shape_keys[n], np.float64).reshape(-1) for n in keys])  # (k, 3V)
    rest = np.asarray(head.vertices, np.float64).reshape(-1)
    if isinstance(frames, np.ndarray):
        array = np.asarray(frames)
        total = len(array)

        def get(s: slice) -> np.ndarray:
            return array[s]
    else:
        total = int(frames.num_frames)

        def get(s: slice) -> np.ndarray:
            return frames.vertices(s)

    first = get(slice(0, 1))
    if first.shape[1:] != (head.num_vertices, 3):
        raise ImitatorError(f"animation has {first.shape[1]} vertices, head '{head.name}' "
                            f"{head.num_vertices}; ARKit weights need the animation on this head")
    G = K @ K.T
    R = np.linalg.cholesky(G + 1e-12 * np.trace(G) / len(G) * np.eye(len(G))).T  # G = R^T R
    weights = np.zeros((total, len(ARKIT_SHAPE_NAMES)), np.float32)
    max_error = 0.0
    for start in range(0, total, chunk):
        s = slice(start, min(total, start + chunk))
        D = get(s).reshape(-1, rest.size).astype(np.float64) - rest  # (t, 3V)
        Y = np.linalg.solve(R.T, K @ D.T).T  # (t, k): |R w - y|^2 = |w K - D|^2 + const
        W = np.stack([lsq_linear(R, y, bounds=(lower, upper), method="bvls").x for y in Y])
        weights[s, index] = W
        residual = (W @ K - D).reshape(len(D), -1, 3)
        max_error = max(max_error, float(np.sqrt((residual ** 2).sum(-1)).max(initial=0.0)))
    return weights, max_error
