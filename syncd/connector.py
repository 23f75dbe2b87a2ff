"""The connector contract: the only way the engine talks to a directory.

A connector type is a class registered under the ``syncd.connectors`` entry-point group. It
declares a pydantic `config_model`; the engine validates the ``[connectors.NAME]`` table with
it and constructs ``cls(name, config)``. The engine never imports ``connectors.*`` itself,
so third-party connectors are first-class.

Attribute conventions:
 - Sources return `Entry.raw` (lower-cased attribute names -> tuple of strings) so the
   flow's mapping can use any attribute the source has.
 - Targets accept and return canonical attributes (flattened SCIM paths, `syncd.model.Attrs`).
   `None` as a value in `update` means "clear this attribute".
 - Group members are external ids of users on the same connector.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from syncd.model import Attrs, Batch, Entry, Kind, Value


class ConnectorConfig(BaseModel):
    """Base of every connector's config model: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str


@dataclass(frozen=True)
class Capabilities:
    """What a connector can do; the engine plans around what is missing."""

    read: bool = True
    write: bool = False
    patch: bool = True
    bulk: bool = False
    bulk_max_operations: int = 0
    bulk_max_payload: int = 0
    #: Per kind, attribute paths the target silently drops or refuses (e.g. the enterprise
    #: extension); the connector drops them itself, the engine warns once per run.
    unsupported_attributes: Mapping[str, frozenset[str]] = field(default_factory=dict)
    #: True when DELETE only deactivates (some SCIM servers).
    delete_is_soft: bool = False
    #: True when the target's attribute names ignore case (LDAP): the engine lower-cases
    #: mapping keys so ``givenName`` and ``givenname`` are one attribute in diffs and links.
    attribute_names_case_insensitive: bool = False
    #: For a target that declares its attributes (a SCIM server's /Schemas) when no list can
    #: hold them all (any extension URN): ``declares(kind, path)`` is False for a path it
    #: cannot store. The connector drops those paths itself, like `unsupported_attributes`.
    declares: Callable[[str, str], bool] | None = None
    #: True when a group may have groups as members and the connector writes them
    #: (`set_member_groups`): what ``nested = "preserve"`` needs of a target.
    group_members: bool = False

    def unsupported(self, kind: Kind, paths: Iterable[str] = ()) -> frozenset[str]:
        """`unsupported_attributes` of `kind`, and those of `paths` the target does not
        declare; callers pass the paths they map."""
        fixed = self.unsupported_attributes.get(kind, frozenset())
        if self.declares is None:
            return fixed
        return fixed | {p for p in paths if not self.declares(kind, p)}


@runtime_checkable
class Connector(Protocol):
    """Every method may raise `syncd.errors.Fatal`, `Retriable` or `Rejected`."""

    name: str
    config_model: ClassVar[type[ConnectorConfig]]

    def open(self) -> None:
        """Connect, authenticate and discover capabilities. Raises Fatal when unreachable."""

    def close(self) -> None: ...

    @property
    def capabilities(self) -> Capabilities: ...

    def read(
        self, kind: Kind, cursor: str | None = None, attributes: Sequence[str] | None = None
    ) -> Iterator[Batch]:
        """Yield pages of entries. `attributes` limits what is fetched (None = all).

        Cursor protocol: with ``cursor=None`` the read is a full listing (``Batch.full``
        True on every page). With a cursor, a connector that supports incremental reads
        yields only changed entries plus deleted anchors, with ``full=False``. A cursor the
        server rejects (expired token, unknown cookie) makes the connector fall back to a
        full listing by itself, with ``full=True`` and a log line. The *last* batch carries
        the new cursor (None when the connector has no incremental support); the engine
        stores it only after the flow applied cleanly.
        """
        ...

    def find(self, kind: Kind, attribute: str, value: str) -> list[Entry]:
        """Entries whose canonical `attribute` equals `value` (escaped by the connector)."""
        ...

    def create(self, kind: Kind, attrs: Attrs) -> Entry:
        """Create and return the entry as the server confirmed it (external_id filled)."""
        ...

    def update(self, kind: Kind, external_id: str, changes: Mapping[str, Value]) -> None:
        """Change only these attributes; a `None` value clears the attribute."""
        ...

    # Optional, and every connector that can be a source should have it:
    # `confirm_gone(kind, external_ids: Sequence[str]) -> set[str]`: of these anchors, the
    # ones a direct lookup (by anchor, within the connector's own base/filter scope) proves
    # absent right now. "Absence is not proof": a full listing that did not return a linked
    # entry is no reason to deprovision it until this confirms it. Anything the connector
    # cannot prove gone (an error, a timeout, an unexpected answer) is left out of the
    # result, so it is held, never deprovisioned. Batch the lookups. A connector without
    # this method confirms nothing: the engine then never deprovisions from its listings.
    #
    # Optional, for sources with groups: `groups_naming(user_ids: Sequence[str],
    # attributes: Sequence[str] | None) -> list[Entry]`: the groups (within the connector's
    # own group scope, whole, every member) that name any of these users. Incremental equals
    # full: a user entering scope again (back in scope, or recreated after a delete) is named
    # by groups that did not change, so no feed reports them. The engine asks for the users
    # an incremental cycle brings (back) into scope; a source without this method has its
    # groups read in full in such a cycle instead.
    #
    # Optional, for sources whose reference attributes (``reference = "user"`` in a mapping,
    # e.g. an LDAP ``manager``) name objects otherwise than by their anchor:
    # `resolve_references(kind, names: Sequence[str]) -> dict[str, str | None]`: each name
    # (a DN) -> the anchor of the object of `kind` it names within the connector's own scope,
    # None when it names none (or several: never a guess). Batch the lookups. Without this
    # method a name is taken to be the anchor itself (SCIM and Graph ids). On a *target*,
    # the engine uses it too: reference values it reads back (a two-way flow's listing,
    # match candidates) become the target's anchors, which the links hold.
    #
    # Optional, the other way: `reference_names(kind, anchors: Sequence[str]) -> dict[str,
    # str | None]`: each anchor -> the name a reference attribute holds for it (a DN), None
    # when no object of `kind` has it. The engine calls it to write a reference to this
    # connector as a target (the plan holds target ids) and, in two-way flows, to write a
    # reference back to this connector as a source. Batch the lookups. Without it a
    # reference is written as the anchor itself.
    #
    # Optional: `create_many(kind, items: Sequence[Attrs]) -> list[Entry | ConnectorError]`
    # (one result per item, in order) for targets with a bulk endpoint (SCIM /Bulk). The
    # engine uses it when `capabilities.bulk` is true and the method exists.
    #
    # Optional: `refuses(kind, attrs) -> str | None`, called on a connector that is NOT
    # opened: why this target would certainly refuse to create an object from `attrs`,
    # known without asking it (LDAP: no RDN value, an attribute the object classes require),
    # or None. A SCIM service provider answers such a create with a 400 before storing it.

    def set_members(
        self, external_id: str, add: Sequence[str], remove: Sequence[str]
    ) -> None: ...

    # Optional, with `capabilities.group_members`: `set_member_groups(external_id, add,
    # remove)`, like `set_members` but the values are target ids of *groups* that become or
    # stop being members of this group (nested groups, ``nested = "preserve"``). An error
    # raised after part of it was applied may carry ``members_done = (added, removed)``.

    def deactivate(self, kind: Kind, external_id: str) -> None: ...

    def delete(self, kind: Kind, external_id: str) -> None: ...

