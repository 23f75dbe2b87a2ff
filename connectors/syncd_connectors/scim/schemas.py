"""What a SCIM server declares about its users and groups, and where a canonical path lives.

/ResourceTypes names each resource type's core schema and the extensions it offers; /Schemas
declares their attributes: type, plurality, sub-attributes, mutability. `Declared` is that,
per kind. A canonical path names one declared attribute (extensions as RFC 7644 §3.10
writes them):

 - ``userName``, ``active``: a simple attribute (a multi-valued one holds a tuple);
 - ``name.givenName``, ``urn:…:enterprise:2.0:User:manager.value``: a sub-attribute of a
   single-valued complex attribute;
 - ``emails.work``: the ``value`` of the item of that ``type`` of a multi-valued complex
   attribute with a ``value`` sub-attribute; a server whose schema has no ``type`` there
   stores one item, so only the default type (`DEFAULT_TYPE`) is supported;
 - ``addresses.work.locality``: a sub-attribute of the item of that type, for a multi-valued
   complex attribute without ``value`` (Entra maps ``addresses[type eq "work"].locality``);
 - ``urn:<extension URN>:<attribute>[.sub]``: an attribute of an extension the resource type
   offers. ``enterprise.x`` is the short spelling of the enterprise extension's ``x``: both
   name one attribute, and reads give the short one (`Path.spelling`), as does the config
   loader (`canonical_spelling`), so links and plans know one name.

Names resolve case-insensitively, as SCIM compares them (a two-way flow writes back under
the lower-cased raw names of a SCIM source); `problem` reports a spelling other than the
declared one, because reads answer the declared one.

Declarations are made from /Schemas, or without a server from RFC 7643's, by
`declarations`: with the standard one, attributes of any other extension are taken on trust
until a server is asked (`syncd check`, ``validate --online``, a run).
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

from syncd.model import Kind

URN_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
URN_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
URN_ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
ENTERPRISE_PREFIX = "enterprise."
#: Resource type names per kind.
ENDPOINT: dict[Kind, str] = {"user": "User", "group": "Group"}
#: Typed multi-valued attributes whose default type takes untyped values and is primary.
DEFAULT_TYPE = {"emails": "work", "phoneNumbers": "work", "addresses": "work"}
#: Sub-attributes of a typed item that are no part of its data.
ITEM_META = frozenset({"type", "primary"})
#: Managed by syncd through memberships, never as mapped attributes.
_MEMBERSHIPS = frozenset({"members", "groups"})
PathKind = Literal["simple", "sub", "typed", "item"]


class UnknownPathError(ValueError):
    """A canonical path the server (or the standard) does not declare; the message says why."""


@dataclass(frozen=True)
class Attr:
    """One declared attribute (or sub-attribute)."""

    name: str
    type: str = "string"
    multi: bool = False
    subs: tuple[Attr, ...] = ()
    #: canonicalValues of the ``type`` sub-attribute (typed attributes); empty = any type
    types: tuple[str, ...] = ()
    writable: bool = True

    def sub(self, name: str) -> Attr | None:
        return find(self.subs, name)

    @property
    def has_type(self) -> bool:
        return self.sub("type") is not None


def find(attrs: Iterable[Attr], name: str) -> Attr | None:
    low = name.lower()
    return next((a for a in attrs if a.name.lower() == low), None)


@dataclass(frozen=True)
class Declared:
    """One resource type: its core schema's attributes and those of each extension."""

    core: str
    #: schema URN -> its attributes; the core schema first
    schemas: Mapping[str, tuple[Attr, ...]]
    #: the RFC's declaration (no server was asked): other extensions are taken on trust
    standard: bool = False
    #: path -> (where it lives or None, why it cannot be mapped or None): resolved once,
    #: not per entry and attribute
    _seen: dict[str, tuple[Path | None, str | None]] = field(
        default_factory=dict, init=False, compare=False, repr=False)

    def lookup(self, path: str) -> Path:
        """Where `path` lives (`resolve`, remembered); `UnknownPathError` if nowhere."""
        known = self._seen.get(path) or self._resolved(path)
        if known[0] is None:
            raise UnknownPathError(known[1])
        return known[0]

    def problem(self, path: str) -> str | None:
        """Why `path` cannot be mapped here (`problem`, remembered); None if it can."""
        return (self._seen.get(path) or self._resolved(path))[1]

    def _resolved(self, path: str) -> tuple[Path | None, str | None]:
        try:
            known: tuple[Path | None, str | None] = (resolve(self, path), problem(self, path))
        except UnknownPathError as exc:
            known = (None, str(exc))
        if len(self._seen) < 4096:
            self._seen[path] = known
        return known

    @functools.cached_property
    def readers(self) -> dict[str, dict[str, Reader]]:
        """What reads map, by container (its key in a resource, "" for the resource itself)
        and lower-cased attribute name: a simple attribute's path; for a single-valued
        complex one, its sub-attributes' paths by lower-cased name; for a multi-valued one
        with values, a typed path whose ``sub`` is its default type ("" if none); for one
        without, that and its parts' item paths. Memberships are read apart. Keyed so that
        a read costs one look-up per attribute the resource *has*."""
        out: dict[str, dict[str, Reader]] = {}
        for urn, attrs in self.schemas.items():
            ext = "" if urn == self.core else urn
            box = out.setdefault(ext, {})
            for a in attrs:
                if a.type != "complex":
                    box[a.name.lower()] = Path("", "simple", a.name, urn=ext, type=a.type,
                                               multi=a.multi)
                elif not a.multi:
                    box[a.name.lower()] = {
                        s.name.lower(): Path("", "sub", a.name, s.name, ext, s.type, s.multi)
                        for s in a.subs if s.type != "complex"}
                elif ext or a.name not in _MEMBERSHIPS:
                    default = "" if ext else DEFAULT_TYPE.get(a.name, "")
                    value = a.sub("value")
                    typed = Path("", "typed", a.name, default, ext, value.type if value else "",
                                 has_type=a.has_type, default=bool(default))
                    box[a.name.lower()] = (typed, {} if value is not None else {
                        s.name.lower(): Path("", "item", a.name, default, ext, s.type,
                                             has_type=a.has_type, default=bool(default),
                                             part=s.name)
                        for s in a.subs if s.type != "complex" and s.name not in ITEM_META})
        return out

    def urn(self, text: str) -> str | None:
        """The declared spelling of a schema URN, compared case-insensitively."""
        low = text.lower()
        return next((u for u in self.schemas if u.lower() == low), None)


@dataclass(frozen=True)
class Path:
    """Where a canonical path lives in a SCIM resource, and what its values are."""

    canonical: str  # as the caller spelt it
    kind: PathKind
    attr: str  # the declared attribute name
    sub: str = ""  # sub-attribute ("sub") or item type ("typed")
    urn: str = ""  # extension URN; "" = the core schema
    type: str = "string"  # SCIM type of the value
    multi: bool = False  # a multi-valued simple attribute: tuples
    has_type: bool = True  # typed/item: items carry ``type`` on this server
    default: bool = False  # typed/item: the default type (primary; takes untyped items)
    part: str = ""  # item: the sub-attribute of the typed item

    @property
    def scim(self) -> str:
        """The attribute as PATCH paths and filters name it (``urn:…:attr`` in extensions)."""
        return f"{self.urn}:{self.attr}" if self.urn else self.attr

    @functools.cached_property
    def stem(self) -> str:
        """The attribute's canonical name: ``emails``, ``enterprise.manager``, ``urn:…:x``."""
        if not self.urn:
            return self.attr
        if self.urn == URN_ENTERPRISE:
            return ENTERPRISE_PREFIX + self.attr
        return f"{self.urn}:{self.attr}"

    @functools.cached_property
    def spelling(self) -> str:
        """The canonical path as reads produce it: declared names, ``enterprise.`` short."""
        if self.part:
            return f"{self.stem}.{self.sub}.{self.part}"
        return f"{self.stem}.{self.sub}" if self.sub else self.stem


#: How reads map one attribute (`Declared.readers`): a simple attribute's path; a single-valued
#: complex one's sub-attribute paths; a multi-valued one's typed path and, when its items have
#: no value, their parts' item paths (by lower-cased name).
Reader = Path | dict[str, Path] | tuple[Path, dict[str, Path]]


# --- resolving a canonical path ---------------------------------------------------------


def split(decl: Declared, path: str) -> tuple[str, str]:
    """(schema URN or "", attribute path) of a canonical path. The URN is the longest
    declared one the path starts with, else everything before the last colon."""
    if path[: len(ENTERPRISE_PREFIX)].lower() == ENTERPRISE_PREFIX:
        return URN_ENTERPRISE, path[len(ENTERPRISE_PREFIX):]
    if path[:4].lower() != "urn:":
        return "", path
    low = path.lower()
    for urn in sorted(decl.schemas, key=len, reverse=True):
        if low.startswith(urn.lower() + ":"):
            return urn, path[len(urn) + 1:]
    urn, _, rest = path.rpartition(":")
    return urn, rest


def resolve(decl: Declared, path: str) -> Path:
    """Where `path` lives, or `UnknownPathError` saying why it cannot be written there."""
    urn_text, rest = split(decl, path)
    urn = decl.urn(urn_text) if urn_text else decl.core
    if urn is None:
        if decl.standard and urn_text.lower() not in (URN_USER.lower(), URN_GROUP.lower()):
            name, _, sub = rest.partition(".")  # on trust: no server was asked
            return Path(path, "sub" if sub else "simple", name, sub, urn_text)
        raise UnknownPathError(f"{path!r}: {_by(decl)} offers no extension {urn_text!r}"
                               + _hint(decl, path))
    if urn == decl.core and urn_text:
        raise UnknownPathError(f"{path!r}: core attributes are named without their URN"
                               + _hint(decl, path))
    name, _, sub = rest.partition(".")
    attr = find(decl.schemas[urn], name)
    out_urn = "" if urn == decl.core else urn
    if attr is None:
        if not out_urn and name.lower() == "externalid" and not sub:  # RFC 7643 §3.1
            return Path(path, "simple", "externalId")
        raise UnknownPathError(f"{path!r} is not declared by {_by(decl)}" + _hint(decl, path))
    if not attr.writable or (attr.name in _MEMBERSHIPS and not out_urn):
        raise UnknownPathError(f"{path!r} is read-only" + (
            " (memberships are synced as members)" if attr.name in _MEMBERSHIPS else ""))
    if attr.type != "complex":
        if sub:
            raise UnknownPathError(f"{path!r}: {attr.name} has no sub-attributes")
        return Path(path, "simple", attr.name, urn=out_urn, type=attr.type, multi=attr.multi)
    if not sub:
        raise UnknownPathError(f"{path!r} is a complex attribute: name one of its parts"
                               + _hint(decl, path))
    if not attr.multi:
        part = attr.sub(sub)
        if part is None or part.type == "complex" or "." in sub:
            raise UnknownPathError(f"{path!r}: {attr.name} declares no sub-attribute {sub!r}"
                                   + _hint(decl, path))
        return Path(path, "sub", attr.name, part.name, out_urn, part.type, part.multi)
    return _typed(decl, path, attr, sub, out_urn)


def _typed(decl: Declared, path: str, attr: Attr, type_: str, urn: str) -> Path:
    type_, _, part_name = type_.partition(".")
    value = attr.sub("value")
    part = None if value is not None or not part_name else attr.sub(part_name)
    if value is not None and part_name:
        raise UnknownPathError(f"{path!r}: map the item's value as {attr.name}.{type_}")
    if value is None and (part is None or part.type == "complex" or "." in part_name
                          or part.name in ITEM_META):
        raise UnknownPathError(f"{path!r}: name a part of the {attr.name} item of that type "
                               f"({attr.name}.{type_}.<sub-attribute>)" + _hint(decl, path))
    default = DEFAULT_TYPE.get(attr.name) if not urn else None
    if attr.types:
        known = next((t for t in attr.types if t.lower() == type_.lower()), None)
        if known is None:
            raise UnknownPathError(f"{path!r}: {type_!r} is no type of {attr.name} "
                                   f"({', '.join(attr.types)})" + _hint(decl, path))
        type_ = known
    if not attr.has_type and type_ != default:
        raise UnknownPathError(f"{path!r}: {_by(decl)} keeps no type on {attr.name}"
                               + (f" (only {attr.name}.{default})" if default else ""))
    if part is not None:
        return Path(path, "item", attr.name, type_, urn, part.type, has_type=attr.has_type,
                    default=type_ == default, part=part.name)
    assert value is not None
    return Path(path, "typed", attr.name, type_, urn, value.type, has_type=attr.has_type,
                default=type_ == default)


def problem(decl: Declared, path: str) -> str | None:
    """Why `path` cannot be mapped to this resource type (None: it can). A spelling other
    than the declared one is a problem too: reads answer the declared one."""
    try:
        p = resolve(decl, path)
    except UnknownPathError as exc:
        return str(exc)
    wanted = p.spelling
    if p.urn == URN_ENTERPRISE and not path.lower().startswith(ENTERPRISE_PREFIX):
        wanted = f"{p.urn}:{wanted[len(ENTERPRISE_PREFIX):]}"
    return None if path == wanted else f"{path!r}: {_by(decl)} spells it {wanted!r}"


def canonical_spelling(path: str) -> str:
    """The one canonical name of a path: the enterprise extension's full URN spelling
    becomes its short ``enterprise.`` form; anything else is returned as it is."""
    prefix = URN_ENTERPRISE.lower() + ":"
    if path.lower().startswith(prefix):
        return ENTERPRISE_PREFIX + path[len(prefix):]
    return path


# --- enumerating and suggesting ---------------------------------------------------------


def spellings(decl: Declared) -> Iterator[str]:
    """Every writable path the declaration names (typed ones: their declared types)."""
    for urn, attrs in decl.schemas.items():
        out_urn = "" if urn == decl.core else urn
        for a in attrs:
            for tail in _tails(a, bool(out_urn)):
                yield Path("", "simple", tail, urn=out_urn).spelling
    yield "externalId"


def _tails(a: Attr, extension: bool) -> Iterator[str]:
    if not a.writable or (a.name in _MEMBERSHIPS and not extension):
        return
    if a.type != "complex":
        yield a.name
    elif not a.multi:
        yield from (f"{a.name}.{s.name}" for s in a.subs if s.type != "complex")
    else:
        default = None if extension else DEFAULT_TYPE.get(a.name)
        types = a.types if a.has_type else (default,) if default else ()
        if a.sub("value") is not None:
            yield from (f"{a.name}.{t}" for t in types)
        else:
            yield from (f"{a.name}.{t}.{s.name}" for t in types for s in a.subs
                        if s.type != "complex" and s.name not in ITEM_META)


def _by(decl: Declared) -> str:
    return "RFC 7643 (no server asked)" if decl.standard else "the server's /Schemas"


def _hint(decl: Declared, path: str) -> str:
    names = sorted(set(spellings(decl)))
    low = {n.lower(): n for n in names}
    if path.lower() in low:
        return f" (did you mean {low[path.lower()]!r}?)"
    close = difflib.get_close_matches(path, names, n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""
