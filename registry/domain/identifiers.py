"""Identifiers (study IDs, site codes): one written form, and the key two look-alikes share.

Issue #14 point 8: `AHP-B001` came in again with a zero-width space, Cyrillic letters,
full-width digits, another case, a right-to-left override or a newline, and each was a new
patient. An identifier is stored in Unicode NFKC form without surrounding spaces
(`written_form`); characters nobody sees or that only look like Latin letters are refused
(`odd_characters`); and uniqueness is checked on `identifier_key`, which maps every look-alike
of an identifier to the same text. Imports no Django.
"""

from __future__ import annotations

import unicodedata

# Control, format (zero-width, bidirectional overrides, soft hyphen ...), line and paragraph
# separators, private use, surrogates and unassigned code points.
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Co", "Cs", "Cn"})

# Letters of other scripts that look like Latin ones, and dashes that look like a hyphen
# (Unicode's confusables for the characters a study ID is made of; NFKC leaves these alone).
LOOK_ALIKES: dict[str, str] = {
    # Cyrillic capitals and small letters
    **dict(zip("АВЕЅІЈКМНОРСТХУ", "ABESIJKMHOPCTXY", strict=True)),
    **dict(zip("аеіјорсхуѕԁһԛԝ", "aeijopcxysdhqw", strict=True)),
    # Greek capitals and small letters
    **dict(zip("ΑΒΕΖΗΙΚΜΝΟΡΤΥΧ", "ABEZHIKMNOPTYX", strict=True)),
    **dict(zip("οιν", "oiv", strict=True)),
    # Dashes and minus signs
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d", "-"),
}


def written_form(text: str) -> str:
    """The form an identifier is stored in: NFKC (full-width digits and letters become ASCII),
    no spaces around it."""
    return unicodedata.normalize("NFKC", text).strip()


def odd_characters(text: str) -> list[str]:
    """The characters an identifier may not hold, as `U+XXXX NAME`: invisible or control
    characters, and letters that only look like Latin ones."""
    odd = []
    for char in written_form(text):
        if unicodedata.category(char) in INVISIBLE_CATEGORIES or char in LOOK_ALIKES:
            name = unicodedata.name(char, "")
            label = f"U+{ord(char):04X} {name}".strip()
            if label not in odd:
                odd.append(label)
    return odd


def identifier_key(text: str) -> str:
    """What two identifiers that look the same share: NFKC, without invisible characters, with
    look-alike letters and dashes as their Latin twins, in one case."""
    visible = "".join(
        LOOK_ALIKES.get(char, char)
        for char in written_form(text)
        if unicodedata.category(char) not in INVISIBLE_CATEGORIES
    )
    return unicodedata.normalize("NFKC", visible.casefold()).strip()
