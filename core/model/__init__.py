"""The Imitator model: config, audio encoders, viseme decoder with KV cache, losses, checkpoints."""

from .config import ImitatorConfig
from .imitator import Imitator

__all__ = ["Imitator", "ImitatorConfig"]
