"""Imitator core: audio -> personalized 3D facial animation. Never imports bpy."""

__version__ = "0.1.0"
