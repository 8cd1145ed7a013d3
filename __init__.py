"""Imitator for Blender: speech audio -> personalized facial animation as shape keys.

The repository root is the extension root; the add-on lives in ``imitator_blender``.
"""

from .imitator_blender import register, unregister

__all__ = ["register", "unregister"]
