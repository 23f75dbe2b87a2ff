"""Any attribute a SCIM server declares: a custom extension schema loaded into a real
scim2-server (`ACME_SCHEMA`), the enterprise extension in both spellings, and
django-scim2-server, which declares neither."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import pytest

from syncd.errors import Rejected
from syncd.model import Value
from syncd_connectors.scim.connector import ScimConnector
from tests.connectors.test_scim import Recording, connect, raw_get
from tests.peers.scim_fixtures import URN_ACME
from tests.peers.scim_servers import _Peer

pytestmark = pytest.mark.peers
__all__ = ["connect"]

ENT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def acme(attr: str) -> str:
    return f"{URN_ACME}:{attr}"


#: Canonical values as a directory hands them over: strings for every type.
MAPPED: dict[str, Value] = {
    "userName": "ext.user",
    acme("costCenter"): "CC-7",
    acme("badgeNumber"): "0042",
    acme("contractor"): "TRUE",
    acme("hourlyRate"): "12.50",
    acme("startDate"): "2024-05-01T08:00:00Z",
    acme("skills"): ("python", "ldap"),
    acme("sponsor.value"): "s-1",
    "enterprise.department": "R&D",
}
#: What reads give back: booleans as booleans, numbers as their canonical text.
READ: dict[str, Value] = {**MAPPED, acme("badgeNumber"): "42", acme("contractor"): True,
                          acme("hourlyRate"): "12.5"}


def test_discovery_declares_the_extension(
    acme_scim2_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    conn = connect(acme_scim2_server)
    assert conn.path_problems("user", list(MAPPED)) == {}
    found = conn.path_problems("user", [acme("costCentre"), acme("badgeId"),
                                        "urn:ietf:params:scim:schemas:extension:other:1.0:User:x",
                                        acme("costcenter"), acme("sponsor")])
    assert f"did you mean {acme('costCenter')!r}" in found[acme("costCentre")]
    assert "read-only" in found[acme("badgeId")]
    assert "offers no extension" in found["urn:ietf:params:scim:schemas:extension:other:1.0:User:x"]
    assert f"spells it {acme('costCenter')!r}" in found[acme("costcenter")]
    assert "complex" in found[acme("sponsor")]
    assert conn.capabilities.unsupported("user", [*MAPPED, acme("costCentre")]) == {
        acme("costCentre")}
    assert URN_ACME in str(conn.probe()["schemas"])


def test_typed_values_land_under_the_urn_and_read_back(
    acme_scim2_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    rec = Recording()
    conn = connect(acme_scim2_server, transport=rec)
    made = conn.create("user", MAPPED)
    assert made.attrs == READ
    doc = raw_get(acme_scim2_server, f"Users/{made.external_id}").json()
    assert URN_ACME in doc["schemas"] and ENT in doc["schemas"]
    assert doc[URN_ACME] == {"costCenter": "CC-7", "badgeNumber": 42, "contractor": True,
                             "hourlyRate": 12.5, "startDate": doc[URN_ACME]["startDate"],
                             "skills": ["python", "ldap"], "sponsor": {"value": "s-1"}}
    assert doc[ENT] == {"department": "R&D"}
    [post] = rec.sent("POST")
    assert json.loads(post.content)[URN_ACME]["badgeNumber"] == 42
    [again] = [e for b in conn.read("user") for e in b.entries]
    assert again.attrs == READ
    # A SCIM source: the URN path lower-cased; the enterprise one in both spellings.
    assert again.raw[acme("badgeNumber").lower()] == ("42",)
    assert again.raw[acme("skills").lower()] == ("python", "ldap")
    assert again.raw[acme("contractor").lower()] == ("true",)
    assert again.raw["enterprise.department"] == again.raw[f"{ENT.lower()}:department"]


def test_update_patches_by_urn_path(
    acme_scim2_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    rec = Recording()
    conn = connect(acme_scim2_server, transport=rec)
    made = conn.create("user", MAPPED)
    conn.update("user", made.external_id, {acme("badgeNumber"): "7", acme("contractor"): None,
                                           acme("skills"): ("go",),
                                           acme("sponsor.value"): "s-2"})
    [patch] = rec.sent("PATCH")
    ops = json.loads(patch.content)["Operations"]
    assert {"op": "replace", "path": acme("badgeNumber"), "value": 7} in ops
    assert {"op": "remove", "path": acme("contractor")} in ops
    assert {"op": "replace", "path": acme("sponsor.value"), "value": "s-2"} in ops
    doc = raw_get(acme_scim2_server, f"Users/{made.external_id}").json()[URN_ACME]
    assert doc["badgeNumber"] == 7 and "contractor" not in doc and doc["skills"] == ["go"]
    assert doc["sponsor"] == {"value": "s-2"}
    [found] = conn.find("user", acme("badgeNumber"), "7")
    assert found.external_id == made.external_id


def test_put_without_patch_keeps_the_extension(
    acme_scim2_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    conn = connect(acme_scim2_server)
    conn._caps = dataclasses.replace(conn._caps, patch=False)
    made = conn.create("user", MAPPED)
    conn.update("user", made.external_id, {acme("costCenter"): "CC-8", acme("contractor"): "no"})
    [again] = [e for b in conn.read("user") for e in b.entries]
    assert again.attrs == {**READ, acme("costCenter"): "CC-8", acme("contractor"): False}


@pytest.mark.parametrize(("path", "value", "wanted"), [
    ("badgeNumber", "12x", "an integer"),
    ("contractor", "maybe", "a boolean"),
    ("hourlyRate", "cheap", "a decimal"),
    ("startDate", "20240501080000Z", "ISO 8601"),
    ("costCenter", ("a", "b"), "single-valued"),
])
def test_a_value_not_of_the_declared_type_rejects_the_entry(
    acme_scim2_server: _Peer, connect: Callable[..., ScimConnector], path: str, value: Value,
    wanted: str,
) -> None:
    rec = Recording()
    conn = connect(acme_scim2_server, transport=rec)
    with pytest.raises(Rejected) as err:
        conn.create("user", {"userName": "bad", acme(path): value})
    assert acme(path) in str(err.value) and wanted in str(err.value)
    assert repr(value)[:20] in str(err.value)
    assert not rec.sent("POST")
    made = conn.create("user", {"userName": "good"})
    with pytest.raises(Rejected, match="an integer"):
        conn.update("user", made.external_id, {acme("badgeNumber"): "12x"})
    assert not rec.sent("PATCH")


def test_enterprise_full_urn_and_short_name_are_one_attribute(
    acme_scim2_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    conn = connect(acme_scim2_server)
    assert ScimConnector.canonical_path("user", f"{ENT}:manager.value") == (
        "enterprise.manager.value")
    made = conn.create("user", {"userName": "m", f"{ENT}:department": "Ops",
                                f"{ENT}:manager.value": "boss-id"})
    assert made.attrs == {"userName": "m", "enterprise.department": "Ops",
                          "enterprise.manager.value": "boss-id"}
    conn.update("user", made.external_id, {"enterprise.department": "Sales"})
    doc = raw_get(acme_scim2_server, f"Users/{made.external_id}").json()
    assert doc[ENT] == {"department": "Sales", "manager": {"value": "boss-id"}}


def test_django_declares_no_extension_paths_are_reported_and_not_sent(
    django_scim_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    rec = Recording()
    conn = connect(django_scim_server, transport=rec)
    found = conn.path_problems("user", list(MAPPED))
    assert set(found) == set(MAPPED) - {"userName"}
    assert "offers no extension" in found[acme("costCenter")]
    made = conn.create("user", MAPPED)
    assert made.attrs["userName"] == "ext.user"
    [post] = rec.sent("POST")
    body = json.loads(post.content)
    assert URN_ACME not in body and ENT not in body and body["schemas"] == [
        "urn:ietf:params:scim:schemas:core:2.0:User"]


def test_parts_of_typed_items_addresses(
    acme_scim2_server: _Peer, connect: Callable[..., ScimConnector]
) -> None:
    """Entra's ``addresses[type eq "work"].locality``: a part changes, the others stay."""
    rec = Recording()
    conn = connect(acme_scim2_server, transport=rec)
    made = conn.create("user", {"userName": "addr", "addresses.work.locality": "Köln",
                                "addresses.work.streetAddress": "Ring 1",
                                "addresses.home.locality": "Bonn"})
    assert made.attrs == {"userName": "addr", "addresses.work.locality": "Köln",
                          "addresses.work.streetAddress": "Ring 1",
                          "addresses.home.locality": "Bonn"}
    conn.update("user", made.external_id, {"addresses.work.locality": "Berlin",
                                           "addresses.home.locality": None})
    [patch] = rec.sent("PATCH")
    assert len(json.loads(patch.content)["Operations"]) == 3  # work: remove + add; home
    [again] = [e for b in conn.read("user") for e in b.entries]
    assert again.attrs == {"userName": "addr", "addresses.work.locality": "Berlin",
                           "addresses.work.streetAddress": "Ring 1"}
    [found] = conn.find("user", "addresses.work.locality", "Berlin")
    assert found.external_id == made.external_id
