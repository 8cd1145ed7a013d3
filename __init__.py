"""Imitator for Blender: speech audio -> personalized facial animation as shape keys.

The repository root is the extension root; the add-on lives in ``imitator_blender``.
"""

if __package__:  # Blender imports the extension as a package; pytest, in a checkout whose folder
    # name is not an identifier (a worktree "wt-x", a clone "imitator-blender"), as a lone module
    from .imitator_blender import register, unregister

    __all__ = ["register", "unregister"]
