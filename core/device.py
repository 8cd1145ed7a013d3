"""Where torch runs: one place that turns the user's device choice into a ``torch.device``."""

from __future__ import annotations

import torch

from .errors import ImitatorError

__all__ = ["pick_device"]


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """'auto' (CUDA when present, CPU otherwise), 'cpu', 'cuda' or 'cuda:N'."""
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ImitatorError(f"device {name}: CUDA is not available here (CPU build of torch or no "
                                f"GPU); use --device cpu")
        return torch.device(f"cuda:{local_rank}") if name == "cuda" else torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise ImitatorError(f"device {name!r} is unknown; use auto, cpu, cuda or cuda:N")
