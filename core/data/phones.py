"""One phone set for every engine: ARPAbet (CMUdict's 39 phones, no stress) plus ``SIL``.

eSpeak NG reports its own mnemonics (``tS``, ``@2``, ``aI``...), Festival the radio phone set
(``ch``, ``ax``, ``ay``...); both are mapped here.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

SILENCE = "SIL"
VOWELS = ("AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW")
CONSONANTS = ("B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG", "P", "R", "S",
              "SH", "T", "TH", "V", "W", "Y", "Z", "ZH")
PHONES = (SILENCE, *VOWELS, *CONSONANTS)
BILABIALS = ("B", "M", "P")

# eSpeak NG English mnemonics (en-us, en-gb and its accents, en-029) -> ARPAbet. None: not a
# phone of its own (its time goes to the phone before it).
ESPEAK_TO_ARPABET: dict[str, str | None] = {
    # vowels
    "0": "AA", "A:": "AA", "A@": "AA", "aa": "AE", "a": "AE", "a#": "AH", "@": "AH", "@2": "AH",
    "@5": "AH", "V": "AH", "3": "ER", "3:": "ER", "VR": "ER", "IR": "ER", "E": "EH", "e": "EH",
    "e@": "EH", "I": "IH", "I#": "IH", "I2": "IH", "i@3": "IH", "i": "IY", "i:": "IY", "i@": "IY",
    "O:": "AO", "O": "AO", "O2": "AO", "O@": "AO", "o@": "AO", "OI": "OY", "oU": "OW", "o": "OW",
    "U": "UH", "U@": "UH", "u:": "UW", "u": "UW", "aI": "AY", "aI2": "AY", "aI3": "AY",
    "aI@": "AY", "aU": "AW", "aU@": "AW", "eI": "EY", "@L": "L",
    # consonants
    "b": "B", "d": "D", "d#": "D", "D": "DH", "dZ": "JH", "f": "F", "g": "G", "h": "HH", "C": "HH",
    "j": "Y", "k": "K", "x": "K", "l": "L", "l/": "L", "l#": "L", "m": "M", "n": "N", "n-": "N",
    "N": "NG", "p": "P", "r": "R", "r-": "R", "s": "S", "S": "SH", "t": "T", "t#": "T", "t2": "T",
    "t[": "T", "?": "T", "T": "TH", "tS": "CH", "v": "V", "w": "W", "w#": "W", "W": "W", "z": "Z",
    "z#": "Z", "Z": "ZH",
    # pauses and modifiers
    "_": SILENCE, "_:": SILENCE, "_!": SILENCE, "_|": SILENCE, "_^_": SILENCE, ";": None,
}

# Festival's radio phone set (kal/ked diphone voices, CMU ARCTIC HTS voices) -> ARPAbet.
FESTIVAL_TO_ARPABET: dict[str, str | None] = {
    **{p.lower(): p for p in VOWELS + CONSONANTS},
    "ax": "AH", "axr": "ER", "dx": "T", "el": "L", "em": "M", "en": "N", "nx": "N", "hv": "HH",
    "pau": SILENCE, "h#": SILENCE, "brth": SILENCE, "#": SILENCE,
}


def espeak_to_arpabet(mnemonic: str) -> str | None:
    """ARPAbet for an eSpeak NG mnemonic; unknown ones by their longest known prefix (logged)."""
    if mnemonic in ESPEAK_TO_ARPABET:
        return ESPEAK_TO_ARPABET[mnemonic]
    for n in range(len(mnemonic) - 1, 0, -1):
        if mnemonic[:n] in ESPEAK_TO_ARPABET:
            log.debug("eSpeak phoneme %r mapped by its prefix %r", mnemonic, mnemonic[:n])
            return ESPEAK_TO_ARPABET[mnemonic[:n]]
    log.warning("unknown eSpeak phoneme %r treated as silence", mnemonic)
    return SILENCE


def festival_to_arpabet(name: str) -> str:
    """ARPAbet for a Festival radio-set phone name (unknown ones logged, treated as silence)."""
    phone = FESTIVAL_TO_ARPABET.get(name.lower())
    if phone is None:
        log.warning("unknown Festival phone %r treated as silence", name)
        return SILENCE
    return phone
