"""Named, pure value transforms: the only "logic" a mapping's value pipeline may contain.

Config never carries code (no eval, no expressions), so everything an admin can do to a value
is listed here, each built once at config time with its parameters checked (`registry`).

Values flowing through are LDAP-style multi-values, ``tuple[str, ...]``. Empty strings are not
values (LDAP cannot store them and SCIM treats them as absent), so every step drops them; that
keeps "is it empty?" a plain ``not values`` everywhere downstream. Transforms are pure and
deterministic -- no clock, no randomness -- so an incremental cycle computes what a full one
would.

- `registry`: typed parameters, the registry, `build` / `build_pipeline`, `Pipeline`;
- `text`: case, whitespace, append/prepend, substring/left/right, pad, word;
- `diacritics`: accents off Latin letters, transliteration to ASCII;
- `patterns`: regex replace and extract;
- `values`: first/item/unique/count/join/split/default/bool, base64 and UTF-8 hex;
- `dates`: generalizedTime, FILETIME, ISO 8601, epoch and strftime conversions;
- `tables`: value maps.

May import only the plugin API (`syncd.errors`), like the rest of `syncd.mapping`.
"""

from __future__ import annotations

# Importing the modules registers their transforms.
from syncd.mapping.transforms import dates, diacritics, patterns, tables, text, values
from syncd.mapping.transforms.registry import (
    Pipeline,
    Transform,
    TransformError,
    build,
    build_pipeline,
    describe,
    known,
)

__all__ = [
    "Pipeline",
    "Transform",
    "TransformError",
    "build",
    "build_pipeline",
    "dates",
    "describe",
    "diacritics",
    "known",
    "patterns",
    "tables",
    "text",
    "values",
]
