"""A refused plan reviewed and approved for two named objects, against real slapd and
scim2-server: `syncd plan --out`, then `syncd apply --approve` (the Day-2 transcript)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from syncd.cli.main import main
from tests.e2e.conftest import Sync
from tests.peers.directory import user_dn, user_uid


def cli(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.stdout + res.stderr


def test_a_refused_plan_approved_for_two_named_objects(sync_scim2: Sync,
                                                        tmp_path: Path) -> None:
    s = sync_scim2
    assert s.run().code == 0
    gone = list(range(1, 11))  # 10 of 30: over the 20 % deprovisioning threshold
    s.ldap.delete(*(user_dn(i) for i in gone))
    plan = tmp_path / "plan.json"
    code, out = cli("plan", "-c", str(s.config), "--out", str(plan))
    assert code == 3 and "REFUSED" in out, out
    code, out = cli("apply", str(plan))
    assert code == 3, out  # as a whole it is still refused
    assert all(s.user(user_uid(i)).get("active", True) for i in gone)
    code, out = cli("apply", str(plan), "--approve", user_uid(1), "--approve", user_uid(2))
    assert code == 0, out
    assert "2 reviewed changes applied as reviewed" in out
    assert s.user(user_uid(1))["active"] is False and s.user(user_uid(2))["active"] is False
    assert all(s.user(user_uid(i)).get("active", True) for i in gone[2:])
    code, out = cli("run", "--dry-run", "-c", str(s.config))  # the rest stays planned
    assert code == 3 and "8 deprovision" in out, out
