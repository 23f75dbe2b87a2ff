"""Write-back of the LDAP connector: an LDAP directory as a target or a two-way side.

Why a module of its own: reads are streaming and tuned (`ldap.base`, `wire/`); writes are per
object and need other guarantees (per-object errors, idempotent replays). The writer keeps its
own connections, one per apply thread (an ldap3 connection carries one conversation at a time),
and never touches the read path's socket.

Names are LDAP attribute names, case-insensitive. Values: str, tuple (multi), bool -> TRUE/FALSE,
int -> decimal; None, ``""`` and ``()`` remove the attribute (LDAP has no empty values). Binary
attributes take the base64 the read side produces. ``active`` is the engine's status flag, never
written: False deactivates, True undoes a deactivation where that is possible (move back, clear
the bit, remove the disable value; a removed password stays removed). A user created ``active``
where disabling is a bit is enabled right after the add: AD creates a password-less account
disabled.

- `update` is ONE modify of REPLACEs (after a modrdn when the naming attribute changes).
  Clearing is a REPLACE with no values, which RFC 4511 defines as "delete if present, ignore
  if absent": clearing an absent attribute cannot fail, with no pre-read and no swallowed
  error (a modify is atomic: ignoring noSuchAttribute would drop the other changes too).
- `set_members` computes one modify from the group's current values, so replays are no-ops; a
  concurrent change (attributeOrValueExists/noSuchAttribute) falls back to value-by-value
  changes that ignore both. groupOfNames needs a member: a placeholder (default: the bind DN)
  fills an empty group and leaves once real members exist.
- `deactivate`, its undo and `delete` are `disable.py`'s; connections, result codes -> errors
  and anchor -> DN lookups are `session.py`'s.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence

import ldap3
from ldap3.utils.dn import escape_rdn

from syncd.errors import Rejected
from syncd.model import Attrs, Entry, Kind, Value
from syncd_connectors.ldap.config import ATTRIBUTE_RE, DisableSpec
from syncd_connectors.ldap.dn import member_key
from syncd_connectors.ldap.values import normalize_dn, split_dn
from syncd_connectors.ldap.write.create import Creating
from syncd_connectors.ldap.write.disable import Disabling
from syncd_connectors.ldap.write.required import missing
from syncd_connectors.ldap.write.session import (
    NO_SUCH_ATTRIBUTE,
    OBJECT_CLASS_VIOLATION,
    VALUE_EXISTS,
    Stale,
)

#: Classes whose member attribute is a MUST: an empty group needs a placeholder member.
_MUST_HAVE_MEMBER = frozenset({"groupofnames", "groupofuniquenames"})


def _status(attrs: Attrs) -> tuple[dict[str, Value], bool | None]:
    """Split off ``active``: the engine's status flag (implicit for users), no LDAP attribute.
    False deactivates, True undoes a deactivation where it can; it is never written."""
    rest = {k: v for k, v in attrs.items() if k.lower() != "active"}
    active = next((v for k, v in attrs.items() if k.lower() == "active"), None)
    return rest, active if isinstance(active, bool) else None


class LdapWriter(Disabling, Creating):
    """Creates and changes entries (see the module docstring)."""

    # ---- values and anchors ----------------------------------------------------------------

    def _values(self, attrs: Mapping[str, Value]) -> dict[str, list[str | bytes]]:
        out: dict[str, list[str | bytes]] = {}
        for name, value in attrs.items():
            if not ATTRIBUTE_RE.match(name):
                raise self._reject(f"{name!r} is not an LDAP attribute name")
            lname = name.lower()
            items = value if isinstance(value, tuple) else () if value is None else (value,)
            texts = [("TRUE" if v else "FALSE") if isinstance(v, bool) else str(v) for v in items]
            vals: list[str | bytes] = [t for t in texts if t != ""]
            if lname in self._binary or lname.endswith(";binary"):
                try:
                    vals = [base64.b64decode(str(v), validate=True) for v in vals]
                except binascii.Error:
                    raise self._reject(f"{name} needs base64 values") from None
            out[lname] = vals
        return out

    # ---- the connector's write methods -----------------------------------------------------

    def create(self, kind: Kind, attrs: Attrs) -> Entry:
        attrs, active = _status(attrs)
        ks = self.settings(kind)
        values = {k: v for k, v in self._values(attrs).items() if v}
        if kind == "group" and self._member in values:
            raise self._reject(f"set group members with set_members, not {self._member}")
        vals = values.get(ks.rdn.lower())
        if not vals or not isinstance(vals[0], str):
            raise self._reject(f"cannot create a {kind} without {ks.rdn} (the RDN)")
        dn = f"{ks.rdn}={escape_rdn(vals[0])},{ks.create_base}"
        classes = [str(c) for c in values.pop("objectclass", [])] or list(ks.object_classes)
        if kind == "group" and ks.placeholder and _MUST_HAVE_MEMBER & {c.lower() for c in classes}:
            values[self._member] = [ks.placeholder]
        entry = self._add(kind, dn, classes, values)
        if active is False:
            self.deactivate(kind, entry.external_id)
        elif active and self._created_disabled(ks.disable, values):
            self.enable(kind, entry.external_id)
        return entry

    def refuses(self, kind: Kind, attrs: Attrs) -> str | None:
        """Why the directory would certainly refuse to create an entry from `attrs`, known
        without asking it (no RDN value; an attribute the object classes require: see
        `required`), or None. Used before a SCIM service provider accepts a create."""
        attrs, _active = _status(attrs)
        ks = self.settings(kind)
        try:
            values = {k: v for k, v in self._values(attrs).items() if v}
        except Rejected as exc:  # a value the writer would reject (e.g. bad base64)
            return str(exc)
        if not values.get(ks.rdn.lower()):
            return f"a new {kind} entry needs {ks.rdn} (its RDN), and the mapping gives none"
        classes = [str(c) for c in values.get("objectclass", [])] or list(ks.object_classes)
        absent = missing(classes, {*values, ks.rdn.lower()})
        if absent:
            return (f"objectClass {', '.join(classes)} requires {', '.join(absent)}, which the "
                    f"mapping leaves empty: the directory would refuse the entry")
        return None

    @staticmethod
    def _created_disabled(d: DisableSpec | None, values: Mapping[str, object]) -> bool:
        """AD creates an account without a password disabled (userAccountControl 546): an
        ``active`` user is enabled after the add (the bit cleared), unless the mapping wrote
        the attribute itself."""
        return (d is not None and d.method == "attribute" and d.bit is not None
                and d.attribute is not None and d.attribute.lower() not in values)

    def update(self, kind: Kind, external_id: str, changes: Mapping[str, Value]) -> None:
        changes, active = _status(changes)
        values = self._values(changes)
        if values and not self._locate(
            kind, external_id, lambda dn: self._update_at(kind, external_id, dn, dict(values))
        ):
            raise self._reject(f"{kind} {external_id} is gone")
        if active is False:
            self.deactivate(kind, external_id)
        elif active:
            self.enable(kind, external_id)

    def _update_at(
        self, kind: Kind, anchor: str, dn: str, values: dict[str, list[str | bytes]]
    ) -> None:
        attr, current, parent, multi = split_dn(dn)
        new = values.get(attr.lower())
        if new is not None and not multi:
            if not new:
                raise self._reject(f"update {dn}: cannot remove {attr}, the RDN")
            if new[0] != current and isinstance(new[0], str):
                rdn = f"{attr}={escape_rdn(new[0])}"
                code = self._run("rename", dn, lambda c: c.modify_dn(dn, rdn, delete_old_dn=True))
                self._expect("rename", dn, code)
                dn = self._dns[(kind, anchor)] = f"{rdn},{parent}"
            if len(new) == 1:
                del values[attr.lower()]
        if values:
            changes = {n: [(ldap3.MODIFY_REPLACE, v)] for n, v in values.items()}
            self._expect("update", dn, self._modify("update", dn, changes))

    def set_members(self, group_id: str, add: Sequence[str], remove: Sequence[str],
                    member_kind: Kind = "user") -> None:
        """Member anchors -> DNs in the member attribute; `member_kind` ``group``: nested
        groups (``nested = "preserve"``), their DNs like users'."""
        found = self.dns(member_kind, [*add, *remove])
        add_dns = [found[a] for a in add if a in found]
        remove_dns = [found[a] for a in remove if a in found and a not in add]
        ks = self.settings("group")
        if not self._locate(
            "group", group_id, lambda dn: self._members_at(dn, add_dns, remove_dns, ks.placeholder)
        ):
            raise self._reject(f"group {group_id} is gone")
        missing = [a for a in add if a not in found]
        if missing:  # the rest is applied; a later run retries these
            raise self._reject(f"members not found as {member_kind}s: "
                               f"{', '.join(missing[:10])}")

    def _members_at(self, dn: str, add: list[str], remove: list[str], holder: str | None) -> None:
        got = self._search(dn, "(objectClass=*)", ldap3.BASE, [self._member, "objectClass"])
        if not got:
            raise Stale(dn)
        values = {
            n.lower(): [v.decode("utf-8", "replace") for v in vs] for n, vs in got[0][1].items()
        }
        unique = self._member == "uniquemember"  # values may carry a #'0101'B UID
        stored = {member_key(v, unique): v for v in values.get(self._member, [])}
        if not _MUST_HAVE_MEMBER & {c.lower() for c in values.get("objectclass", [])}:
            holder = None  # only classes that demand a member get a placeholder
        to_add = {normalize_dn(d): d for d in add if normalize_dn(d) not in stored}
        to_del = {
            normalize_dn(d): stored[normalize_dn(d)]
            for d in remove
            if normalize_dn(d) in stored and normalize_dn(d) not in to_add
        }
        final = (set(stored) | set(to_add)) - set(to_del)
        if holder:
            nh = normalize_dn(holder)
            if final - {nh} and nh in stored and nh not in {normalize_dn(d) for d in add}:
                to_del[nh] = stored[nh]
            elif not final:
                to_add[nh] = holder
        pairs = ((ldap3.MODIFY_ADD, to_add), (ldap3.MODIFY_DELETE, to_del))
        ops = [(op, list(v.values())) for op, v in pairs if v]
        if not ops:
            return
        code = self._modify("set members of", dn, {self._member: ops})
        if self._expect("set members of", dn, code, ok=(VALUE_EXISTS, NO_SUCH_ATTRIBUTE)):
            self._members_one_by_one(dn, list(to_add.values()), list(to_del.values()), holder)

    def _members_one_by_one(
        self, dn: str, add: list[str], remove: list[str], holder: str | None
    ) -> None:
        """Fallback when the computed modify met a changed group: each value on its own,
        idempotent; the last member is swapped for the placeholder."""
        what = "set members of"
        add_op, del_op = ldap3.MODIFY_ADD, ldap3.MODIFY_DELETE
        for value in add:
            code = self._modify(what, dn, {self._member: [(add_op, [value])]})
            self._expect(what, dn, code, ok=(VALUE_EXISTS,))
        for value in remove:
            code = self._modify(what, dn, {self._member: [(del_op, [value])]})
            if code == OBJECT_CLASS_VIOLATION and holder:  # the last one: swap in the holder
                swap = [(add_op, [holder]), (del_op, [value])]
                code = self._modify(what, dn, {self._member: swap})
            self._expect(what, dn, code, ok=(NO_SUCH_ATTRIBUTE,))
