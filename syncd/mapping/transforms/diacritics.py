"""Accents off Latin letters (`diacritics`), and all the way to ASCII (`ascii`).

Identifiers built from names (``zoë.ångström@example.com``) must often be plain ASCII for the
target (sAMAccountName, many SaaS user names), while display names must keep every letter.

- `diacritics` is Entra's NormalizeDiacritics for what Unicode can decompose: a Latin letter
  loses its combining marks (é -> e, Å -> A), every other script is left alone -- stripping
  marks there would change the letter (Cyrillic й is not и, Japanese が is not か).
- `ascii` also transliterates the Latin letters that do not decompose (ß -> ss, æ -> ae,
  ø -> o, ł -> l, þ -> th, ...; the table below), folds compatibility forms (ﬁ -> fi, full-width
  letters) and typographic quotes and dashes, then drops whatever is still not ASCII.
  Entra writes ø as "oe"; write ``{ replace = { pattern = "ø", with = "oe" } }`` first for that.
"""

from __future__ import annotations

import unicodedata

from syncd.mapping.transforms.registry import Fn, Params, each, register

#: Letters (and a few punctuation marks) with no decomposition, as ICU's Latin-ASCII writes
#: them. Upper case where it differs, so case survives (Ærø -> AEro).
TRANSLITERATION: dict[str, str] = {
    "ß": "ss", "ẞ": "SS", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE",
    "ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ð": "d", "Ð": "D",
    "þ": "th", "Þ": "TH", "\u0131": "i", "ħ": "h", "Ħ": "H", "ŋ": "n", "Ŋ": "N", "ĸ": "q",
    "ƒ": "f", "ŧ": "t", "Ŧ": "T", "ɨ": "i", "ʉ": "u",
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201c": '"', "\u201d": '"', "\u201e": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2212": "-",
}
_TABLE = str.maketrans(TRANSLITERATION)


def _is_latin(c: str) -> bool:
    return unicodedata.name(c, "").startswith("LATIN ")


def strip_diacritics(value: str) -> str:
    """Drop combining marks that follow a Latin letter; recompose everything else."""
    if value.isascii():  # most values: nothing to strip
        return value
    out: list[str] = []
    latin = False
    for c in unicodedata.normalize("NFD", value):
        if unicodedata.combining(c) or unicodedata.category(c) == "Mn":
            if latin:
                continue
        else:
            latin = _is_latin(c)
        out.append(c)
    return unicodedata.normalize("NFC", "".join(out))


def to_ascii(value: str) -> str:
    """`value` in ASCII: compatibility-folded, marks stripped, transliterated, rest dropped."""
    if value.isascii():
        return value
    folded = unicodedata.normalize("NFKD", value.translate(_TABLE)).translate(_TABLE)
    return "".join(c for c in folded if c.isascii())


@register("diacritics", "remove accents from Latin letters (Entra NormalizeDiacritics: "
          "zoë.ångström -> zoe.angstrom); other scripts are kept")
def _diacritics(p: Params) -> Fn:
    return each(strip_diacritics)


@register("ascii", "diacritics, then transliterate (ß -> ss, æ -> ae, ø -> o, ł -> l) and "
          "drop anything else that is not ASCII")
def _ascii(p: Params) -> Fn:
    return each(to_ascii)
