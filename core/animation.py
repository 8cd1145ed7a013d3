"""Animation on a head: template + bias + weights @ basis, the compact form every bake uses.

The motion decoder's last layer is linear, so its output is exactly this form with K <= 64.
Raw vertex clips get the same form through a truncated SVD with a stated maximum error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ImitatorError

DEFAULT_MAX_ERROR_M = 1e-5  # 0.01 mm


@dataclass
class Animation:
    """vertices[t] = template + bias + sum_k weights[t, k] * basis[k]  (all in metres)."""

    template: np.ndarray  # (V, 3) rest positions the offsets are relative to
    basis: np.ndarray  # (K, V, 3) offset directions
    weights: np.ndarray  # (T, K) per-frame coefficients
    bias: np.ndarray  # (V, 3) constant offset
    fps: float
    max_error: float = 0.0  # largest per-vertex distance to the source it was made from, metres

    def __post_init__(self) -> None:
        V = self.template.shape[0]
        K = self.basis.shape[0]
        if self.template.shape != (V, 3) or self.basis.shape[1:] != (V, 3) or self.bias.shape != (V, 3):
            raise ImitatorError(
                f"animation arrays disagree: template {self.template.shape}, basis {self.basis.shape}, "
                f"bias {self.bias.shape}; all must share (V, 3)"
            )
        if self.weights.ndim != 2 or self.weights.shape[1] != K:
            raise ImitatorError(f"animation weights have shape {self.weights.shape}, expected (T, {K})")
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise ImitatorError(f"animation fps is {self.fps}; it must be a positive number")
        for name in ("template", "basis", "weights", "bias"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise ImitatorError(f"animation {name} holds NaN or Inf values; regenerate the animation")

    @property
    def num_frames(self) -> int:
        return int(self.weights.shape[0])

    @property
    def num_vertices(self) -> int:
        return int(self.template.shape[0])

    @property
    def duration(self) -> float:
        """Seconds from the first to one frame past the last frame."""
        return self.num_frames / self.fps

    def offsets(self, frames: slice | np.ndarray | None = None) -> np.ndarray:
        """(T, V, 3) offsets from the template for the chosen frames."""
        w = self.weights if frames is None else self.weights[frames]
        flat = w @ self.basis.reshape(self.basis.shape[0], -1)
        return flat.reshape(-1, self.num_vertices, 3) + self.bias

    def vertices(self, frames: slice | np.ndarray | None = None) -> np.ndarray:
        """(T, V, 3) absolute vertex positions."""
        return self.offsets(frames) + self.template

    def weights_at(self, seconds: np.ndarray) -> np.ndarray:
        """(N, K) weights linearly interpolated at the given times, held at the ends."""
        t = np.clip(np.asarray(seconds, dtype=np.float64) * self.fps, 0, self.num_frames - 1)
        i0 = np.floor(t).astype(np.int64)
        i1 = np.minimum(i0 + 1, self.num_frames - 1)
        a = (t - i0)[:, None]
        return (1 - a) * self.weights[i0] + a * self.weights[i1]

    def normalized(self) -> "Animation":
        """Same animation with each weight curve scaled into [-1, 1] (basis scaled inversely)."""
        scale = np.abs(self.weights).max(axis=0) if self.num_frames else np.ones(self.basis.shape[0])
        scale = np.where(scale > 0, scale, 1.0)
        return Animation(self.template, self.basis * scale[:, None, None], self.weights / scale,
                         self.bias, self.fps, self.max_error)

    @classmethod
    def from_vertices(cls, vertices: np.ndarray, template: np.ndarray, fps: float,
                      max_error: float = DEFAULT_MAX_ERROR_M, max_rank: int | None = None) -> "Animation":
        """Compress a (T, V, 3) clip by truncated SVD: the smallest rank whose largest per-vertex
        error is within ``max_error`` metres (bias = mean offset)."""
        vertices = np.asarray(vertices, dtype=np.float64)
        template = np.asarray(template, dtype=np.float64)
        if vertices.ndim != 3 or vertices.shape[1:] != template.shape or template.shape[1:] != (3,):
            raise ImitatorError(
                f"vertex clip has shape {vertices.shape} but the template is {template.shape}; "
                "the clip must be (frames, vertices, 3) in the head's topology"
            )
        if not np.all(np.isfinite(vertices)):
            raise ImitatorError("vertex clip holds NaN or Inf values; clean or re-export the clip")
        T, V, _ = vertices.shape
        offsets = (vertices - template).reshape(T, -1)
        bias = offsets.mean(axis=0)
        centred = offsets - bias
        u, s, vt = np.linalg.svd(centred, full_matrices=False)
        limit = min(len(s), max_rank if max_rank is not None else len(s))

        def error_at(k: int) -> float:
            residual = centred - (u[:, :k] * s[:k]) @ vt[:k]
            return float(np.sqrt((residual.reshape(T, V, 3) ** 2).sum(-1)).max()) if T else 0.0

        lo, hi = 0, limit  # smallest k in [0, limit] with error <= max_error (error falls with k)
        if error_at(hi) > max_error:
            lo = hi
        while lo < hi:
            mid = (lo + hi) // 2
            if error_at(mid) <= max_error:
                hi = mid
            else:
                lo = mid + 1
        k = lo
        return cls(
            template=template.astype(np.float32),
            basis=vt[:k].reshape(k, V, 3).astype(np.float32),
            weights=(u[:, :k] * s[:k]).astype(np.float32),
            bias=bias.reshape(V, 3).astype(np.float32),
            fps=float(fps),
            max_error=error_at(k),
        )

    # npz round trip -------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write an .npz atomically."""
        from .fileio import atomic_write

        with atomic_write(Path(path)) as f:
            np.savez(f, template=self.template, basis=self.basis, weights=self.weights,
                     bias=self.bias, fps=np.float64(self.fps), max_error=np.float64(self.max_error))

    @classmethod
    def load(cls, path: Path) -> "Animation":
        from .fileio import read_npz

        path = Path(path)
        z = read_npz(path, fix="export the animation again")
        try:
            if "basis" in z:
                return cls(z["template"], z["basis"], z["weights"], z["bias"], float(z["fps"]),
                           float(z["max_error"]) if "max_error" in z else 0.0)
            return cls.from_vertices(z["vertices"], z["template"], float(z["fps"]))
        except ImitatorError as e:
            raise ImitatorError(f"{path}: {e}") from None
        except (ValueError, KeyError, TypeError) as e:
            raise ImitatorError(f"{path}: not a readable animation .npz ({type(e).__name__}: "
                                f"{' '.join(str(e).split())}); export the animation again") from None
