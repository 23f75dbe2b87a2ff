"""Canonical paths <-> SCIM JSON for whatever a server declares (`syncd_connectors.scim`'s
`schemas`, `declarations`, `values`, `paths`), without a server.

The property: for any declared schema (core User plus a generated extension: every SCIM
type, multi-valued, complex with sub-attributes, typed multi-valued) and any values in
canonical form, canonical -> SCIM JSON -> canonical is the identity, by a creation body and
by a PUT body alike; directory spellings (``TRUE``, ``0042``) read back in canonical form.
"""

from __future__ import annotations

import base64
import json
import string
from datetime import UTC
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scim2_models import EnterpriseUser, Group, User

from syncd_connectors.scim import declarations, paths
from syncd_connectors.scim.schemas import (
    URN_ENTERPRISE,
    Attr,
    Declared,
    UnknownPathError,
    canonical_spelling,
)
from syncd_connectors.scim.values import PathValueError

USER = declarations.standard("user")
TYPES = ("string", "boolean", "integer", "decimal", "dateTime", "reference", "binary")
names = st.text(string.ascii_letters, min_size=2, max_size=10).filter(
    lambda n: n.lower() not in ("type", "value", "primary", "display"))


def _value(kind: str) -> st.SearchStrategy[Any]:
    """A canonical value of one SCIM type, as reads give it."""
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(-(10**12), 10**12).map(str)
    if kind == "decimal":
        return st.floats(allow_nan=False, allow_infinity=False, width=64).map(str)
    if kind == "dateTime":
        return st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat())
    if kind == "binary":
        return st.binary(min_size=1, max_size=12).map(lambda b: base64.b64encode(b).decode())
    return st.text(min_size=1, max_size=12).filter(lambda t: t.strip() == t and t != "")


def _text(value: Any) -> str:
    """An item of a multi-valued attribute: always text (booleans as true/false)."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


@st.composite
def declared_and_values(draw: st.DrawFn) -> tuple[Declared, dict[str, Any]]:
    urn = "urn:ietf:params:scim:schemas:extension:" + draw(
        st.text(string.ascii_lowercase, min_size=2, max_size=8)) + ":2.0:User"
    attrs: list[Attr] = []
    values: dict[str, Any] = {}
    for name in draw(st.lists(names, min_size=1, max_size=6,
                              unique_by=lambda n: n.lower())):
        shape = draw(st.sampled_from(["simple", "multi", "complex", "typed", "items"]))
        kind = draw(st.sampled_from(TYPES))
        if shape in ("simple", "multi"):
            attrs.append(Attr(name, kind, multi=shape == "multi"))
            if draw(st.booleans()):
                values[f"{urn}:{name}"] = (
                    tuple(draw(st.lists(_value(kind).map(_text), min_size=1, max_size=3)))
                    if shape == "multi" else draw(_value(kind)))
        elif shape == "complex":
            subs = draw(st.lists(st.tuples(names, st.sampled_from(TYPES)), min_size=1,
                                 max_size=3, unique_by=lambda s: s[0].lower()))
            attrs.append(Attr(name, "complex", subs=tuple(Attr(n, t) for n, t in subs)))
            for n, t in subs:
                if draw(st.booleans()):
                    values[f"{urn}:{name}.{n}"] = draw(_value(t))
        elif shape == "items":  # typed items without a value: parts per type
            types = tuple(draw(st.lists(st.text(string.ascii_lowercase, min_size=2,
                                                max_size=6), min_size=1, max_size=3,
                                        unique=True)))
            subs = draw(st.lists(st.tuples(names, st.sampled_from(TYPES)), min_size=1,
                                 max_size=3, unique_by=lambda s: s[0].lower()))
            attrs.append(Attr(name, "complex", multi=True, types=types, subs=(
                *(Attr(n, t) for n, t in subs), Attr("type"), Attr("primary", "boolean"))))
            for t in types:
                for n, kind in subs:
                    if draw(st.booleans()):
                        values[f"{urn}:{name}.{t}.{n}"] = draw(_value(kind))
        else:
            types = tuple(draw(st.lists(st.text(string.ascii_lowercase, min_size=2,
                                                max_size=6), min_size=1, max_size=3,
                                        unique=True)))
            attrs.append(Attr(name, "complex", multi=True, types=types, subs=(
                Attr("value", kind), Attr("type"), Attr("primary", "boolean"))))
            for t in types:
                if draw(st.booleans()):
                    values[f"{urn}:{name}.{t}"] = draw(_value(kind))
    core = {"userName": draw(_value("string")), "active": draw(st.booleans()),
            "addresses.work.locality": draw(_value("string")),
            "addresses.home.postalCode": draw(_value("string")),
            "emails.work": "a@example.com", "name.givenName": draw(_value("string")),
            "enterprise.manager.value": draw(_value("string"))}
    for key in draw(st.lists(st.sampled_from(sorted(core)), unique=True)):
        values[key] = core[key]
    decl = Declared(USER.core, {**USER.schemas, urn: tuple(attrs)})
    return decl, values


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(declared_and_values())
def test_canonical_to_scim_json_to_canonical_round_trips(
        case: tuple[Declared, dict[str, Any]]) -> None:
    decl, values = case
    assert all(decl.problem(p) is None for p in values)
    body = paths.to_resource(decl, values)
    json.dumps(body)  # plain JSON: what goes on the wire
    assert paths.from_resource(decl, json.loads(json.dumps(body))) == values
    ext = [u for u in body["schemas"] if u != USER.core]
    assert all(u in body for u in ext)
    put = paths.apply_changes(decl, {"schemas": [USER.core]}, values)
    assert paths.from_resource(decl, put) == values
    cleared = paths.apply_changes(decl, put, dict.fromkeys(values))
    assert paths.from_resource(decl, cleared) == {}
    assert cleared["schemas"] == [USER.core]
    for op in paths.patch_operations(decl, values):
        name = op["path"].split("[")[0]
        assert name.startswith(("urn:", *(p.split(".")[0] for p in values))), op


ACME = "urn:ietf:params:scim:schemas:extension:acme:2.0:User"
ACME_DECL = Declared(USER.core, {**USER.schemas, ACME: (
    Attr("badgeNumber", "integer"), Attr("contractor", "boolean"),
    Attr("rate", "decimal"), Attr("since", "dateTime"), Attr("photo", "binary"),
    Attr("tags", multi=True), Attr("badgeId", writable=False))})


@pytest.mark.parametrize(("path", "given", "sent", "read"), [
    ("contractor", "TRUE", True, True), ("contractor", "no", False, False),
    ("contractor", "1", True, True), ("badgeNumber", "0042", 42, "42"),
    ("badgeNumber", " -7 ", -7, "-7"), ("badgeNumber", 9, 9, "9"),
    ("rate", "3", 3.0, "3.0"), ("tags", "one", ["one"], ("one",)),
    ("badgeNumber", ("5",), 5, "5"),
])
def test_directory_spellings_are_converted_to_the_declared_type(
        path: str, given: Any, sent: Any, read: Any) -> None:
    body = paths.to_resource(ACME_DECL, {f"{ACME}:{path}": given})
    assert body[ACME][path] == sent and ACME in body["schemas"]
    assert paths.from_resource(ACME_DECL, body) == {f"{ACME}:{path}": read}
    [op] = paths.patch_operations(ACME_DECL, {f"{ACME}:{path}": given})
    assert op == {"op": "replace", "path": f"{ACME}:{path}", "value": sent}


@pytest.mark.parametrize(("path", "given", "wanted"), [
    ("contractor", "maybe", "a boolean"), ("badgeNumber", "12x", "an integer"),
    ("badgeNumber", True, "an integer"), ("rate", "nan", "a decimal"),
    ("since", "20240501000000Z", "ISO 8601"), ("since", "2024-05-01", "ISO 8601"),
    ("photo", "not base64!", "base64"), ("badgeNumber", ("1", "2"), "single-valued"),
])
def test_a_value_not_of_the_declared_type_names_path_and_value(
        path: str, given: Any, wanted: str) -> None:
    with pytest.raises(PathValueError) as err:
        paths.to_resource(ACME_DECL, {f"{ACME}:{path}": given})
    assert f"{ACME}:{path}" in str(err.value) and wanted in str(err.value)
    assert repr(given) in str(err.value)


def test_patch_paths_use_the_urn_form_and_typed_items() -> None:
    ops = paths.patch_operations(USER, {"enterprise.manager.value": "m", "emails.home": None,
                                        f"{URN_ENTERPRISE}:department": None})
    assert ops == [
        {"op": "replace", "path": f"{URN_ENTERPRISE}:manager.value", "value": "m"},
        {"op": "remove", "path": 'emails[type eq "home"]'},
        {"op": "remove", "path": f"{URN_ENTERPRISE}:department"}]
    assert paths.filter_for(ACME_DECL, f"{ACME}:contractor", "yes") == (
        f"{ACME}:contractor eq true", None)
    assert paths.filter_for(USER, "emails.work", "a@example.com") == (
        'emails.value eq "a@example.com"', "emails.work")


@pytest.mark.parametrize(("path", "why"), [
    ("name.givenname", "spells it 'name.givenName'"),
    ("enterprise.departmnet", "did you mean 'enterprise.department'?"),
    ("emails.fax", "'fax' is no type of emails"),
    (f"{ACME}:badgeId", "read-only"),
    (f"{ACME}:badgenumber", f"spells it '{ACME}:badgeNumber'"),
    (f"{ACME}:badgeNumbr", f"did you mean '{ACME}:badgeNumber'?"),
    ("urn:ietf:params:scim:schemas:extension:other:2.0:User:x", "offers no extension"),
    ("urn:ietf:params:scim:schemas:core:2.0:User:userName", "without their URN"),
    ("name", "complex"), ("groups.direct", "memberships"),
    ("userName.x", "no sub-attributes"),
    ("emails.work.display", "map the item's value as emails.work"),
    ("addresses.work", "name a part of the addresses item"),
    ("addresses.work.primary", "name a part"), ("addresses.fax.locality", "no type of"),
])
def test_problems_say_why_with_a_suggestion(path: str, why: str) -> None:
    problem = ACME_DECL.problem(path)
    assert problem is not None and why in problem, problem
    with pytest.raises(UnknownPathError):
        paths.check_paths(ACME_DECL, ["userName", path])


def test_standard_declaration_takes_other_extensions_on_trust() -> None:
    """Config validation asks no server: RFC 7643's names are checked, other extensions
    wait for `syncd check` / ``validate --online`` / a run."""
    assert USER.problem(f"{ACME}:anything.sub") is None
    assert USER.problem(f"{URN_ENTERPRISE}:department") is None
    assert USER.problem("enterprise.department") is None
    assert "RFC 7643" in str(USER.problem("favouriteColour"))
    assert canonical_spelling(f"{URN_ENTERPRISE.lower()}:manager.value") == (
        "enterprise.manager.value")
    assert canonical_spelling(f"{ACME}:x") == f"{ACME}:x"


def test_declarations_from_discovery_documents() -> None:
    schema = {
        "id": ACME, "name": "Acme", "attributes": [
            {"name": "costCenter", "type": "string", "multiValued": False},
            {"name": "badgeId", "type": "integer", "multiValued": False,
             "mutability": "readOnly"},
            {"name": "phones", "type": "complex", "multiValued": True, "subAttributes": [
                {"name": "value", "type": "string", "multiValued": False},
                {"name": "type", "type": "string", "multiValued": False,
                 "canonicalValues": ["desk", "cell"]}]}]}
    core = declarations.attributes(USER_SCHEMA)
    rts = [{
        "id": "User", "name": "User", "endpoint": "/Users", "schema": USER.core,
        "schemaExtensions": [{"schema": ACME, "required": False}]}]
    found = declarations.declared(rts, [USER_SCHEMA, schema])
    user = found["user"]
    assert not user.standard and list(user.schemas) == [USER.core, ACME]
    assert user.problem(f"{ACME}:costCenter") is None
    assert user.problem(f"{ACME}:phones.cell") is None
    assert "'home' is no type of phones" in str(user.problem(f"{ACME}:phones.home"))
    assert "read-only" in str(user.problem(f"{ACME}:badgeId"))
    assert "offers no extension" in str(user.problem("enterprise.department"))
    assert found["group"].standard  # no Group resource type published: the RFC's
    assert len(core) > 10
    assert paths.unsupported_paths(user, "user") >= {"enterprise.department"}


USER_SCHEMA = {
    "id": "urn:ietf:params:scim:schemas:core:2.0:User", "name": "User", "attributes": [
        {"name": "userName", "type": "string", "multiValued": False},
        {"name": "active", "type": "boolean", "multiValued": False},
        *({"name": n, "type": "string", "multiValued": False}
          for n in ("displayName", "title", "nickName", "locale", "timezone", "userType",
                    "preferredLanguage", "profileUrl")),
        {"name": "emails", "type": "complex", "multiValued": True, "subAttributes": [
            {"name": "value", "type": "string", "multiValued": False},
            {"name": "primary", "type": "boolean", "multiValued": False}]}]}


def _from_scim2_models(attrs: list[Any]) -> tuple[Attr, ...]:
    """What the declaration of RFC 7643 was made of before `rfc7643`: scim2-models' own
    schemas, the typed attributes with the RFC's canonical types (§8.7.1)."""
    rfc = {"emails": ("work", "home", "other"),
           "phoneNumbers": ("work", "home", "mobile", "fax", "pager", "other"),
           "ims": ("aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"),
           "photos": ("photo", "thumbnail"), "addresses": ("work", "home", "other")}

    def attr(a: Any, top: bool) -> Attr:
        subs = [s for s in a.sub_attributes or [] if s.name]
        type_sub = next((s for s in subs if s.name.lower() == "type"), None)
        types = tuple(type_sub.canonical_values or ()) if type_sub is not None else ()
        return Attr(str(a.name), str(getattr(a.type, "value", a.type) or "string"),
                    bool(a.multi_valued), tuple(attr(s, False) for s in subs),
                    rfc.get(a.name, types) if top else types,
                    str(getattr(a.mutability, "value", a.mutability)) != "readOnly")

    return tuple(attr(a, True) for a in attrs if a.name)


def test_the_standard_declaration_is_what_scim2_models_derives() -> None:
    """`rfc7643` is a copy (importing scim2-models costs every start ~0.4 s): it must still
    be what scim2-models' User, EnterpriseUser and Group schemas say."""
    user, group = declarations.standard("user"), declarations.standard("group")
    assert user.schemas[user.core] == _from_scim2_models(User.to_schema().attributes or [])
    assert user.schemas[URN_ENTERPRISE] == _from_scim2_models(
        EnterpriseUser.to_schema().attributes or [])
    assert group.schemas[group.core] == _from_scim2_models(Group.to_schema().attributes or [])


def test_discovery_documents_are_read_with_case_insensitive_keys() -> None:
    """SCIM attribute names are case-insensitive; so are the keys of its own documents."""
    schema = {"ID": ACME, "Attributes": [
        {"NAME": "costCenter", "Type": "integer", "multivalued": True,
         "MUTABILITY": "readOnly"}]}
    rts = [{"Name": "User", "Schema": USER.core, "SchemaExtensions": [{"SCHEMA": ACME}]}]
    user = declarations.declared(rts, [USER_SCHEMA, schema])["user"]
    assert user.schemas[ACME] == (Attr("costCenter", "integer", True, writable=False),)


def test_malformed_discovery_documents_name_where() -> None:
    with pytest.raises(declarations.Malformed, match="schema x: emails"):
        declarations.attributes({"id": "x", "attributes": [
            {"name": "emails", "subAttributes": {"name": "value"}}]})


def test_parts_of_typed_items_patch_the_item_as_it_is() -> None:
    """``addresses.work.locality``: the work address with the changed parts replaces the one
    there (its other parts kept); a missing one is added; one left empty goes."""
    current = {"addresses": [{"type": "home", "locality": "Bonn"},
                             {"type": "work", "locality": "Köln", "streetAddress": "Ring 1",
                              "primary": True}]}
    ops = paths.patch_operations(USER, {"addresses.work.locality": "Berlin",
                                        "addresses.work.postalCode": "10115"}, current)
    assert ops == [{"op": "remove", "path": 'addresses[type eq "work"]'},
                   {"op": "add", "path": "addresses", "value": [
                       {"type": "work", "locality": "Berlin", "streetAddress": "Ring 1",
                        "primary": True, "postalCode": "10115"}]}]
    assert paths.needs_current(USER, {"addresses.work.locality": None})
    assert not paths.needs_current(USER, {"emails.work": None})
    assert paths.patch_operations(USER, {"addresses.home.locality": None}, current) == [
        {"op": "remove", "path": 'addresses[type eq "home"]'}]
    assert paths.patch_operations(USER, {"addresses.other.region": "NRW"}, {}) == [
        {"op": "remove", "path": 'addresses[type eq "other"]'},
        {"op": "add", "path": "addresses", "value": [{"type": "other", "region": "NRW"}]}]
    put = paths.apply_changes(USER, {"schemas": [USER.core], **current},
                              {"addresses.work.locality": "Berlin"})
    assert put["addresses"][1] == {"type": "work", "locality": "Berlin",
                                   "streetAddress": "Ring 1", "primary": True}
    assert paths.from_resource(USER, put) == {
        "addresses.home.locality": "Bonn", "addresses.work.locality": "Berlin",
        "addresses.work.streetAddress": "Ring 1"}
    assert paths.filter_for(USER, "addresses.work.locality", "Berlin") == (
        'addresses.locality eq "Berlin"', "addresses.work.locality")
