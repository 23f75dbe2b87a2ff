"""Deactivating, re-enabling and deleting LDAP entries (the writer's lifecycle end).

Why apart: how an account is switched off depends on the directory and the config
(``disable``: remove or set an attribute, set a bit, move to an OU, or delete), and each
needs its undo for two-way flows that set ``active`` back to True.

Default for users: remove ``userPassword`` -- stock inetOrgPerson has no lock attribute
(pwdAccountLockedTime needs the ppolicy overlay); the account can no longer bind and its
password is gone (re-enabling cannot bring it back). Anchor objectGUID (AD): set bit 2 of
``userAccountControl``. Groups only know ``delete`` and ``move``.
"""

from __future__ import annotations

import ldap3
from ldap3.utils.dn import escape_rdn

from syncd.model import Kind
from syncd_connectors.ldap.config import DisableSpec
from syncd_connectors.ldap.values import normalize_dn, split_dn
from syncd_connectors.ldap.write.session import NO_SUCH_ATTRIBUTE, WriteSession, log


class Disabling(WriteSession):
    """`deactivate`, `enable` and `delete` (see the module docstring)."""

    def deactivate(self, kind: Kind, external_id: str) -> None:
        d = self.settings(kind).disable
        if d is None or (kind == "group" and d.method == "attribute"):
            how = '{method = "delete"} or {method = "move", ou = ...}'
            raise self._reject(f"{kind}s cannot be deactivated: set {kind}s.write.disable = {how}")
        if d.method == "delete":
            self.delete(kind, external_id)
        elif not self._locate(kind, external_id, lambda dn: self._disable_at(dn, d)):
            log.info("%s", self._msg(f"deactivate {kind} {external_id}: already gone"))

    def enable(self, kind: Kind, external_id: str) -> None:
        """Undo `deactivate` where it can be undone (a no-op for a removed password)."""
        d = self.settings(kind).disable
        if d and d.method != "delete":
            create_base = self.settings(kind).create_base
            self._locate(kind, external_id, lambda dn: self._enable_at(dn, d, create_base))

    def _disable_at(self, dn: str, d: DisableSpec) -> str | None:
        if d.method == "move":
            assert d.ou is not None
            attr, value, parent, _multi = split_dn(dn)
            if normalize_dn(parent) == normalize_dn(d.ou):
                return None  # moved already
            rdn = f"{attr}={escape_rdn(value)}"
            ou = d.ou
            code = self._run("move", dn, lambda c: c.modify_dn(dn, rdn, new_superior=ou))
            self._expect("move", dn, code)
            return f"{rdn},{ou}"
        assert d.attribute is not None
        vals = [d.value] if d.value is not None else []
        if d.bit is not None:
            got = self._search(dn, "(objectClass=*)", ldap3.BASE, [d.attribute])
            cur = [v for _n, vs in (got[0][1].items() if got else ()) for v in vs]
            try:
                vals = [str(int(cur[0] if cur else b"0") | d.bit)]
            except ValueError:
                raise self._reject(f"deactivate {dn}: {d.attribute} is no number") from None
        code = self._modify("deactivate", dn, {d.attribute: [(ldap3.MODIFY_REPLACE, vals)]})
        self._expect("deactivate", dn, code)
        return None

    def _enable_at(self, dn: str, d: DisableSpec, create_base: str) -> str | None:
        """Undo `_disable_at` where it can be undone (not a removed password)."""
        attr, value, parent, _multi = split_dn(dn)
        if d.method == "move" and d.ou and normalize_dn(parent) == normalize_dn(d.ou):
            rdn = f"{attr}={escape_rdn(value)}"
            code = self._run(
                "move back", dn, lambda c: c.modify_dn(dn, rdn, new_superior=create_base)
            )
            self._expect("move back", dn, code)
            return f"{rdn},{create_base}"
        if d.method == "attribute" and d.attribute and d.bit is not None:
            got = self._search(dn, "(objectClass=*)", ldap3.BASE, [d.attribute])
            cur = [v for _n, vs in (got[0][1].items() if got else ()) for v in vs]
            if cur and cur[0].isdigit() and int(cur[0]) & d.bit:
                new = [str(int(cur[0]) & ~d.bit)]
                code = self._modify("enable", dn, {d.attribute: [(ldap3.MODIFY_REPLACE, new)]})
                self._expect("enable", dn, code)
        elif d.method == "attribute" and d.attribute and d.value is not None:
            code = self._modify("enable", dn, {d.attribute: [(ldap3.MODIFY_DELETE, [d.value])]})
            self._expect("enable", dn, code, ok=(NO_SUCH_ATTRIBUTE,))
        return None

    def delete(self, kind: Kind, external_id: str) -> None:
        def drop(dn: str) -> None:
            self._expect("delete", dn, self._run("delete", dn, lambda c: c.delete(dn)))

        self._locate(kind, external_id, drop)  # gone already: success
        self._dns.pop((kind, external_id), None)
