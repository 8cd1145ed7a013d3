"""Heads the animation is baked on: the default head, FLAME heads, topology identity."""

from .head import Head, topology_hash

__all__ = ["Head", "topology_hash"]
