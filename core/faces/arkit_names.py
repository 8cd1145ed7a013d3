"""ARKit blend-shape names matched to a rig's own shape-key names.

Rigs name the 52 ARKit shapes in many ways: ``jawOpen``, ``JawOpen``, ``jaw_open``,
``blendShape1.jawOpen`` (Maya/FBX exports), ``mouthSmile_L`` (ARKit with side suffixes),
``Mouth_Smile_L`` (Character Creator's ARKit profile). Names are compared case- and separator-
insensitively after a namespace prefix (up to the last ``.`` or ``:``) is dropped, with a side
suffix ``L``/``R`` read as ``Left``/``Right``; a preset adds the names one convention renames.
"""

from __future__ import annotations

import re

from .default_head import ARKIT_SHAPE_NAMES

# Preset -> {ARKit name: the convention's own name} for names plain matching cannot find.
PRESETS: dict[str, dict[str, str]] = {
    "ARKIT": {},
    "CC4": {  # Character Creator 4 / iClone ARKit-style expression names
        "browInnerUp": "Brow_Raise_Inner", "browOuterUpLeft": "Brow_Raise_Outer_L",
        "browOuterUpRight": "Brow_Raise_Outer_R", "browDownLeft": "Brow_Drop_L", "browDownRight": "Brow_Drop_R",
        "jawOpen": "Jaw_Open", "mouthClose": "Mouth_Close", "cheekPuff": "Cheek_Puff",
        "eyeWideLeft": "Eye_Wide_L", "eyeWideRight": "Eye_Wide_R",
        "mouthSmileLeft": "Mouth_Smile_L", "mouthSmileRight": "Mouth_Smile_R",
        "mouthFrownLeft": "Mouth_Frown_L", "mouthFrownRight": "Mouth_Frown_R",
        "noseSneerLeft": "Nose_Sneer_L", "noseSneerRight": "Nose_Sneer_R",
        "cheekSquintLeft": "Cheek_Raise_L", "cheekSquintRight": "Cheek_Raise_R",
        "tongueOut": "Tongue_Out",
    },
}


def canonical(name: str) -> str:
    """``blendShape1.Mouth_Smile_L`` -> ``mouthsmileleft``."""
    name = re.split(r"[.:|]", name)[-1]
    side = re.search(r"(?:[_\-. ]|(?<=[a-z]))([LR])$", name)
    if side:
        name = name[: side.start(1)] + ("Left" if side.group(1) == "L" else "Right")
    return re.sub(r"[^0-9a-z]", "", name.lower())


def match_arkit_names(key_names: list[str], preset: str = "ARKIT") -> tuple[dict[str, str], list[str]]:
    """(ARKit name -> rig key name for those found, the ARKit names not found). An exact name wins
    over a canonical match; with ``preset`` its own names are tried first."""
    extra = PRESETS.get(preset, {})
    exact = set(key_names)
    by_canon: dict[str, str] = {}
    for k in key_names:
        by_canon.setdefault(canonical(k), k)
    found, missing = {}, []
    for n in ARKIT_SHAPE_NAMES:
        for want in (extra.get(n), n):
            if want is None:
                continue
            hit = want if want in exact else by_canon.get(canonical(want))
            if hit is not None:
                found[n] = hit
                break
        else:
            missing.append(n)
    return found, missing
