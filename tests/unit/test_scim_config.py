"""Config loading of SCIM target paths: RFC 7643 names are checked offline (with a
did-you-mean), extension URNs wait for the server, and the enterprise extension's full URN
spelling becomes its one canonical name ``enterprise.x``."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd import config
from tests.unit.test_config import GOOD, _secrets, error_of, write

__all__ = ["_secrets"]
ENT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
ACME = "urn:ietf:params:scim:schemas:extension:acme:2.0:User"


def _with(extra: str, match: str = '["userName"]') -> str:
    return GOOD.replace('externalId = "entryUUID"\n', f'externalId = "entryUUID"\n{extra}\n'
                        ).replace('match = ["userName"]', f"match = {match}")


def test_full_enterprise_urn_is_respelt_everywhere(tmp_path: Path) -> None:
    text = _with(f'"{ENT}:department" = "ou"\n"{ENT}:manager.value" = "manager"\n'
                 f'"{ACME}:costCenter" = "departmentNumber"',
                 match=f'["{ENT}:department", "userName"]')
    users = config.load(write(tmp_path, text)).flows["corp-to-app"].kind("user")
    assert users is not None
    assert {"enterprise.department", "enterprise.manager.value",
            f"{ACME}:costCenter"} <= set(users.mapping.paths)
    assert not any(p.startswith(ENT) for p in users.mapping.paths)
    assert users.match == ("enterprise.department", "userName")


def test_one_attribute_mapped_twice_is_an_error(tmp_path: Path) -> None:
    msg = error_of(tmp_path, _with(f'"{ENT}:employeeNumber" = "uid"'))
    assert "'enterprise.employeeNumber'" in msg and "name the same attribute" in msg


@pytest.mark.parametrize(("path", "why"), [
    ("enterprise.departmnet", "did you mean 'enterprise.department'?"),
    ("name.givenname", "spells it 'name.givenName'"),
    ("emails.fax", "'fax' is no type of emails"),
    ("favouriteColour", "not declared by RFC 7643"),
])
def test_unknown_standard_paths_are_named_at_load(tmp_path: Path, path: str, why: str) -> None:
    msg = error_of(tmp_path, _with(f'"{path}" = "uid"'))
    assert f"users.mapping.{path}" in msg and why in msg, msg
